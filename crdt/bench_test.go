package crdt

import (
	"encoding/binary"
	"testing"
)

// counterApply is a minimal handler: the state is an 8-byte counter that
// each event increments; the output is the new state.
func counterApply(state []byte, _ ID, _ []byte) ([]byte, []byte, error) {
	var n uint64
	if len(state) == 8 {
		n = binary.BigEndian.Uint64(state)
	}
	ns := binary.BigEndian.AppendUint64(make([]byte, 0, 8), n+1)
	return ns, ns, nil
}

// BenchmarkEventSingleNode is the hot path: one participant, every event
// folds at once.
func BenchmarkEventSingleNode(b *testing.B) {
	ps := New([]NodeID{"node-a"}, nil)
	payload := []byte("SET key value")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := ps.Event("node-a", payload, counterApply); err != nil {
			b.Fatal(err)
		}
	}
	if got := binary.BigEndian.Uint64(ps.Infimum().Value); got != uint64(b.N) && b.N > 0 && got == 0 {
		b.Fatalf("counter %d", got)
	}
}

// BenchmarkEventSingleNodeEncode adds what storage does after each write:
// encoding the whole state.
func BenchmarkEventSingleNodeEncode(b *testing.B) {
	ps := New([]NodeID{"node-a"}, nil)
	payload := []byte("SET key value")
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := ps.Event("node-a", payload, counterApply); err != nil {
			b.Fatal(err)
		}
		buf = ps.AppendBinary(buf[:0])
	}
}

// BenchmarkEventThreeNodes measures an event that stays pending, then folds
// once two peers' acknowledgements arrive by Merge.
func BenchmarkEventThreeNodes(b *testing.B) {
	a := New([]NodeID{"a", "b", "c"}, nil)
	peer := a.Clone()
	payload := []byte("SET key value")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := a.Event("a", payload, counterApply); err != nil {
			b.Fatal(err)
		}
		peer.Merge(a, counterApply)
		peer.Acknowledge("b", counterApply)
		peer.Acknowledge("c", counterApply)
		a.Merge(peer, counterApply)
	}
}
