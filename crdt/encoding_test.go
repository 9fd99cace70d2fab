package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func randNode(rng *rand.Rand) NodeID {
	alphabet := []byte{0x00, 0x01, 0xFF, 'a', 'b'}
	b := make([]byte, 1+rng.IntN(4))
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return NodeID(b)
}

func randID(rng *rand.Rand) ID {
	if rng.IntN(10) == 0 {
		return ID{}
	}
	counters := []uint64{1, 2, 255, 256, 1 << 40, math.MaxUint64 - 1}
	c := counters[rng.IntN(len(counters))]
	if rng.IntN(2) == 0 {
		c = 1 + rng.Uint64N(1000)
	}
	return ID{Counter: c, Node: randNode(rng)}
}

func randSet(rng *rand.Rand) []NodeID {
	var set []NodeID
	for i := rng.IntN(4); i > 0; i-- {
		set = append(set, randNode(rng))
	}
	slices.Sort(set)
	set = slices.Compact(set)
	if len(set) == 0 {
		return nil
	}
	return set
}

func randBytes(rng *rand.Rand) []byte {
	n := rng.IntN(5)
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return b
}

func randPending(rng *rand.Rand, ackOnly bool) Pending {
	p := Pending{ID: randID(rng), Acks: randSet(rng)}
	for p.ID.IsZero() {
		p.ID = randID(rng)
	}
	switch k := rng.IntN(4); {
	case k == 0 && ackOnly:
	case k <= 1:
		p.Delta = Delta{Kind: KindEvent, Payload: randBytes(rng)}
	case k == 2:
		p.Delta = Delta{Kind: KindJoin, Node: randNode(rng)}
	default:
		p.Delta = Delta{Kind: KindUnjoin, Node: randNode(rng)}
	}
	return p
}

func TestEncodingRoundTrip(t *testing.T) {
	forSeeds(t, 20, func(t *testing.T, rng *rand.Rand) {
		for i := 0; i < 200; i++ {
			inf := Infimum{ID: randID(rng), Participants: randSet(rng), Value: randBytes(rng)}
			b := inf.AppendBinary([]byte("prefix"))[len("prefix"):]
			got, err := DecodeInfimum(b)
			if err != nil || !reflect.DeepEqual(got, inf) || !bytes.Equal(got.AppendBinary(nil), b) {
				t.Fatalf("Infimum %+v: got %+v, %v", inf, got, err)
			}

			p := randPending(rng, false)
			b = p.AppendBinary(nil)
			gp, err := DecodePending(b)
			if err != nil || !reflect.DeepEqual(gp, p) || !bytes.Equal(gp.AppendBinary(nil), b) {
				t.Fatalf("Pending %+v: got %+v, %v", p, gp, err)
			}

			patch := Patch{Infimum: randID(rng), Participants: randSet(rng)}
			prev := patch.Infimum
			for j := rng.IntN(4); j > 0; j-- {
				e := randPending(rng, true)
				if e.ID.Compare(prev) <= 0 {
					continue
				}
				patch.Events = append(patch.Events, e)
				prev = e.ID
			}
			b = patch.AppendBinary(nil)
			gpatch, err := DecodePatch(b)
			if err != nil || !reflect.DeepEqual(gpatch, patch) || !bytes.Equal(gpatch.AppendBinary(nil), b) {
				t.Fatalf("Patch %+v: got %+v, %v", patch, gpatch, err)
			}
		}
	})
}

// Whole power states from simulations round-trip, and each piece of a state
// round-trips through Restore the way storage keeps it.
func TestStateRoundTrip(t *testing.T) {
	forSeeds(t, 5, func(t *testing.T, rng *rand.Rand) {
		s := newSim(t, rng, simConfig{nodes: 4, steps: 150, joins: 1, unjoins: true, patches: true, snapshot: true})
		s.run()
		for _, b := range s.snapshots {
			ps, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc(ps), b) {
				t.Fatalf("re-encoding differs")
			}
			inf, err := DecodeInfimum(ps.Infimum().AppendBinary(nil))
			if err != nil {
				t.Fatal(err)
			}
			var pend []Pending
			for _, p := range ps.Pending() {
				q, err := DecodePending(p.AppendBinary(nil))
				if err != nil {
					t.Fatal(err)
				}
				pend = append(pend, q)
			}
			rng.Shuffle(len(pend), func(i, j int) { pend[i], pend[j] = pend[j], pend[i] })
			r, f, err := Restore(inf, pend, hashApply)
			if err != nil || len(f) != 0 || !bytes.Equal(enc(r), b) {
				t.Fatalf("Restore: %v %v", f, err)
			}
		}
	})
}

func TestDecodeRejects(t *testing.T) {
	good := New(nodes("a", "b"), []byte("v"))
	good.Event("a", []byte("x"), appendApply)
	b := enc(good)
	mutate := func(f func([]byte) []byte) []byte { return f(slices.Clone(b)) }
	// Layout: 01 | 00 00 | 02 01 'a' 01 'b' | 01 'v' | 01 | 01 01 'a' | 01 01 'x' | 01 01 'a'
	cases := map[string][]byte{
		"empty":          {},
		"format":         mutate(func(b []byte) []byte { b[0] = 9; return b }),
		"trailing":       append(slices.Clone(b), 0),
		"truncated":      b[:len(b)-1],
		"non-minimal":    append([]byte{formatState, 0x80, 0x00}, b[2:]...),
		"unsorted":       mutate(func(b []byte) []byte { b[5], b[7] = 'b', 'a'; return b }),
		"duplicate":      mutate(func(b []byte) []byte { b[7] = 'a'; return b }),
		"huge count":     mutate(func(b []byte) []byte { b[10] = 0x7F; return b }),
		"bad kind":       mutate(func(b []byte) []byte { b[14] = 7; return b }),
		"ack-only":       append(b[:14:14], 0, 1, 1, 'a'),
		"not normal":     enc(&PowerState{inf: good.inf, pend: []Pending{{ID: ID{1, "a"}, Delta: Delta{Kind: KindEvent}, Acks: nodes("a", "b")}}}),
		"renegade":       enc(&PowerState{inf: good.inf, pend: []Pending{{ID: ID{1, "z"}, Delta: Delta{Kind: KindEvent}, Acks: nodes("z")}}}),
		"below infimum":  enc(&PowerState{inf: Infimum{ID: ID{2, "a"}, Participants: nodes("a", "b")}, pend: good.pend}),
		"bottom w/ node": append([]byte{formatState, 0, 1, 'a'}, b[3:]...),
	}
	if _, err := Decode(b); err != nil {
		t.Fatalf("good input: %v", err)
	}
	for name, in := range cases {
		if _, err := Decode(in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode(%x) error %v, want ErrCorrupt", name, in, err)
		}
	}
	ackOnly := Pending{ID: ID{1, "a"}, Acks: nodes("a")}.AppendBinary(nil)
	if _, err := DecodePending(ackOnly); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DecodePending accepted an ack-only entry: %v", err)
	}
	if _, err := DecodePatch(Patch{Events: []Pending{{ID: ID{1, "a"}}}}.AppendBinary(nil)); err != nil {
		t.Errorf("DecodePatch rejected an ack-only entry: %v", err)
	}
	if _, err := DecodePatch(Patch{Infimum: ID{2, "a"}, Events: []Pending{{ID: ID{1, "a"}}}}.AppendBinary(nil)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DecodePatch accepted an entry below its infimum: %v", err)
	}
	if _, err := DecodeInfimum(Infimum{ID: ID{math.MaxUint64, "a"}}.AppendBinary(nil)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DecodeInfimum accepted an exhausted counter: %v", err)
	}
}

// AppendIDKey preserves ID order, is prefix-free and round-trips.
func TestIDKey(t *testing.T) {
	forSeeds(t, 5, func(t *testing.T, rng *rand.Rand) {
		ids := []ID{{}, {1, "\x00"}, {1, "\x00\x00"}, {1, "\x00\x01"}, {1, "\x00\xFF"}, {1, "\x01"}, {1, "a"}, {1, "a\x00"}}
		for i := 0; i < 300; i++ {
			ids = append(ids, randID(rng))
		}
		keys := make([][]byte, len(ids))
		for i, id := range ids {
			keys[i] = AppendIDKey(nil, id)
			rest := []byte("tail")
			got, r, err := DecodeIDKey(append(slices.Clone(keys[i]), rest...))
			if err != nil || got != id || !bytes.Equal(r, rest) {
				t.Fatalf("DecodeIDKey(%x) = %v, %q, %v; want %v", keys[i], got, r, err, id)
			}
		}
		for i := range ids {
			for j := range ids {
				if got, want := bytes.Compare(keys[i], keys[j]), ids[i].Compare(ids[j]); got != want {
					t.Fatalf("key order %d, id order %d for %v and %v", got, want, ids[i], ids[j])
				}
				if ids[i] != ids[j] && bytes.HasPrefix(keys[j], keys[i]) {
					t.Fatalf("key of %v is a prefix of the key of %v", ids[i], ids[j])
				}
			}
		}
	})
	for _, bad := range [][]byte{
		nil,
		make([]byte, 9),
		append(make([]byte, 8), 'a', 0x00),       // unterminated
		append(make([]byte, 8), 'a', 0x00, 0x02), // bad escape
		append(make([]byte, 8), 'a', 0x00, 0x01), // counter 0 with a node
		{0, 0, 0, 0, 0, 0, 0, 1, 0x00, 0x01},     // counter 1 without a node
		{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 'a', 0x00, 0x01}, // exhausted
	} {
		if _, _, err := DecodeIDKey(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeIDKey(%x) error %v, want ErrCorrupt", bad, err)
		}
	}
}

// TestPendingBinaryLen: BinaryLen is the length of the encoding, for every
// kind of delta, counters across varint sizes, and ack sets.
func TestPendingBinaryLen(t *testing.T) {
	forSeeds(t, 4, func(t *testing.T, rng *rand.Rand) {
		for i := 0; i < 2000; i++ {
			p := Pending{ID: ID{Counter: 1 + rng.Uint64()>>rng.UintN(64), Node: NodeID(strings.Repeat("n", 1+rng.IntN(200)))}}
			switch rng.IntN(3) {
			case 0:
				p.Delta = Delta{Kind: KindEvent, Payload: make([]byte, rng.IntN(300))}
			case 1:
				p.Delta = Delta{Kind: KindJoin, Node: "joiner"}
			default:
				p.Delta = Delta{Kind: KindUnjoin, Node: NodeID(strings.Repeat("u", rng.IntN(140)))}
			}
			for j := rng.IntN(4); j > 0; j-- {
				p.Acks = append(p.Acks, NodeID(fmt.Sprint("node", j)))
			}
			if got, want := p.BinaryLen(), len(p.AppendBinary(nil)); got != want {
				t.Fatalf("BinaryLen of %+v = %d, want %d", p, got, want)
			}
		}
	})
}

// TestDecodeInterned: a power state decoded with known node ids is the
// same state, and its ids equal to a known one share that one's memory.
func TestDecodeInterned(t *testing.T) {
	ps := New(nodes("a", "self"), []byte("v"))
	if _, _, _, err := ps.Event("a", []byte("x"), appendApply); err != nil {
		t.Fatal(err)
	}
	known := []NodeID{NodeID(strings.Clone("self"))}
	b := enc(ps)
	got, err := DecodeInterned(b, known)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc(got), b) {
		t.Fatalf("interned decode = %s, want %s", dump(got), dump(ps))
	}
	if p := got.Infimum().Participants[1]; unsafe.StringData(string(p)) != unsafe.StringData(string(known[0])) {
		t.Error("the known id was allocated again")
	}
	if _, err := DecodeInterned(b[:len(b)-1], known); err == nil {
		t.Error("a truncated state decoded")
	}
}

// TestUnmarshalInternedValue: a value that fits the buffer given is
// decoded into its array, capped so that appending copies; a larger one
// gets its own; a failed decode leaves the zero power state.
func TestUnmarshalInternedValue(t *testing.T) {
	buf := make([]byte, 0, 8)
	for _, v := range []string{"v", "12345678", "123456789"} {
		ps := New(nodes("self"), []byte(v))
		b := enc(ps)
		var got PowerState
		if err := got.UnmarshalInterned(b, nil, buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc(&got), b) {
			t.Fatalf("decode = %s, want %s", dump(&got), dump(ps))
		}
		value := got.Infimum().Value
		if in := unsafe.SliceData(value) == unsafe.SliceData(buf); in != (len(v) <= cap(buf)) || cap(value) != len(value) {
			t.Errorf("value %q: in the buffer %v, cap %d", v, in, cap(value))
		}
		if err := got.UnmarshalInterned(b[:len(b)-1], nil, buf); err == nil || got.Infimum().Value != nil || got.Pending() != nil {
			t.Errorf("a truncated state decoded (%v) or left %s", err, dump(&got))
		}
	}
}

// TestDecodeInternedSet: a node set equal to the known one is the known
// slice itself, capped so that appending to it copies; a set of the same
// size that differs is decoded on its own, and a state's pending acks are
// interned against its participants.
func TestDecodeInternedSet(t *testing.T) {
	known := nodes("a", "self")
	for _, parts := range [][]NodeID{nodes("a", "self"), nodes("b", "self"), nodes("a", "b"), nodes("self")} {
		ps := New(parts, []byte("v"))
		if _, _, _, err := ps.Event(parts[0], []byte("x"), appendApply); err != nil {
			t.Fatal(err)
		}
		b := enc(ps)
		got, err := DecodeInterned(b, known)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc(got), b) {
			t.Fatalf("participants %q: interned decode = %s, want %s", parts, dump(got), dump(ps))
		}
		gp := got.Infimum().Participants
		shared := unsafe.SliceData(gp) == unsafe.SliceData(known)
		if want := slices.Equal(parts, known); shared != want {
			t.Fatalf("participants %q: shares the known set = %v, want %v", parts, shared, want)
		}
		if shared && cap(gp) != len(gp) {
			t.Fatalf("a shared set has room to append in place (cap %d, len %d)", cap(gp), len(gp))
		}
	}
	if !slices.Equal(known, nodes("a", "self")) {
		t.Fatalf("decoding changed the known set: %q", known)
	}
}
