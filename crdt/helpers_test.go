package crdt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var (
	flagSeed  = flag.Uint64("crdt.seed", 0, "replay the randomized tests with this one seed")
	flagSeeds = flag.Int("crdt.seeds", 0, "number of seeds the randomized tests run (0: each test's default)")
	flagTrace = flag.String("crdt.trace", "", "log what this simulated node does (with -crdt.seed and -v)")
)

// seeds returns the seeds a randomized test runs: the one given with
// -crdt.seed, or n (or -crdt.seeds) seeds from a base that changes per run.
func seeds(n int) []uint64 {
	if *flagSeed != 0 {
		return []uint64{*flagSeed}
	}
	if *flagSeeds > 0 {
		n = *flagSeeds
	}
	base := uint64(time.Now().UnixNano())
	out := make([]uint64, n)
	for i := range out {
		out[i] = base + uint64(i)*0x9E3779B97F4A7C15
		if out[i] == 0 {
			out[i] = 1
		}
	}
	return out
}

// forSeeds runs f once per seed, each as a subtest whose failure message
// says how to replay it.
func forSeeds(t *testing.T, n int, f func(t *testing.T, rng *rand.Rand)) {
	t.Helper()
	for _, seed := range seeds(n) {
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			f(t, rand.New(rand.NewPCG(seed, seed^0xA5A5A5A5)))
		})
		if !ok {
			t.Logf("replay with: go test ./crdt -run '%s' -crdt.seed=%d", t.Name(), seed)
			return
		}
	}
}

var errRejected = errors.New("test: event rejected")

// hashApply is a deterministic, non-commutative apply: the state is an 8-byte
// event count followed by a 32-byte hash chain over the ids and payloads, so
// any misordering or missing event changes every later state. The output is
// the count before the event and a hash prefix. A payload starting with 0xFF
// is rejected with an error.
func hashApply(state []byte, id ID, payload []byte) ([]byte, []byte, error) {
	if len(payload) > 0 && payload[0] == 0xFF {
		return nil, nil, errRejected
	}
	var count uint64
	var prev []byte
	if len(state) >= 8 {
		count = binary.BigEndian.Uint64(state)
		prev = state[8:]
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(AppendIDKey(nil, id))
	h.Write(payload)
	ns := binary.BigEndian.AppendUint64(make([]byte, 0, 40), count+1)
	ns = h.Sum(ns)
	out := binary.BigEndian.AppendUint64(make([]byte, 0, 12), count)
	out = append(out, ns[8:12]...)
	return ns, out, nil
}

// countingApply wraps hashApply and counts its calls.
type countingApply struct{ calls int }

func (c *countingApply) apply(state []byte, id ID, payload []byte) ([]byte, []byte, error) {
	c.calls++
	return hashApply(state, id, payload)
}

// appendApply appends the payload to the state (so the result shows the
// order), outputs the new length, and rejects payload "bad".
func appendApply(state []byte, _ ID, payload []byte) ([]byte, []byte, error) {
	if string(payload) == "bad" {
		return nil, nil, errRejected
	}
	ns := append(append([]byte(nil), state...), payload...)
	return ns, []byte(fmt.Sprint(len(ns))), nil
}

func enc(ps *PowerState) []byte { return ps.AppendBinary(nil) }

// checkState verifies the invariants every operation must leave: normal
// form, a canonical encoding that decodes back to the same bytes, and a
// cached projection equal to a fresh one.
func checkState(t testing.TB, ps *PowerState, apply ApplyFunc) {
	t.Helper()
	if !ps.isNormal() {
		t.Fatalf("state not in normal form: %s", dump(ps))
	}
	if ps.proj != nil && len(ps.proj) != len(ps.pend) {
		t.Fatalf("projection cache has %d entries for %d pending", len(ps.proj), len(ps.pend))
	}
	b := enc(ps)
	back, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(AppendBinary) = %v for %s", err, dump(ps))
	}
	if b2 := enc(back); !bytes.Equal(b, b2) {
		t.Fatalf("re-encoding differs")
	}
	if got, want := ps.Projected(apply), back.Projected(apply); !bytes.Equal(got, want) {
		t.Fatalf("cached projection %x, fresh %x", got, want)
	}
}

// dump renders a state for failure messages.
func dump(ps *PowerState) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "inf=%v parts=%v value=%x pending=[", ps.inf.ID, ps.inf.Participants, ps.inf.Value)
	for i, p := range ps.pend {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%v:%v", p.ID, p.Delta.Kind)
		if p.Delta.Node != "" {
			fmt.Fprintf(&b, "(%s)", p.Delta.Node)
		}
		fmt.Fprintf(&b, "%v", p.Acks)
	}
	b.WriteString("]")
	return b.String()
}

func nodes(ns ...string) []NodeID {
	out := make([]NodeID, len(ns))
	for i, n := range ns {
		out[i] = NodeID(n)
	}
	return out
}
