package crdt

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// The merge laws, checked on reachable states: snapshots taken during one
// simulated run (states of different replicas at different times).
func TestMergeLaws(t *testing.T) {
	configs := []simConfig{
		{nodes: 3, steps: 150, snapshot: true},
		{nodes: 3, steps: 150, patches: true, snapshot: true},
		{nodes: 4, steps: 200, joins: 2, unjoins: true, snapshot: true},
		{nodes: 5, steps: 200, joins: 1, ejects: true, snapshot: true},
	}
	forSeeds(t, 12, func(t *testing.T, rng *rand.Rand) {
		cfg := configs[rng.IntN(len(configs))]
		s := newSim(t, rng, cfg)
		s.run()
		snaps := s.snapshots
		if len(snaps) < 2 {
			return
		}
		merge := func(a, b []byte) []byte {
			t.Helper()
			x, err := Decode(a)
			if err != nil {
				t.Fatal(err)
			}
			y, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			x.Merge(y, hashApply)
			checkState(t, x, hashApply)
			if !bytes.Equal(enc(y), b) {
				t.Fatalf("Merge modified its argument")
			}
			return enc(x)
		}
		pick := func() []byte { return snaps[rng.IntN(len(snaps))] }
		for i := 0; i < 20; i++ {
			a, b, c := pick(), pick(), pick()
			if got := merge(a, a); !bytes.Equal(got, a) {
				t.Fatalf("not idempotent:\na   %s\na⊔a %s", dumpBytes(a), dumpBytes(got))
			}
			ab, ba := merge(a, b), merge(b, a)
			if !bytes.Equal(ab, ba) {
				t.Fatalf("not commutative:\na   %s\nb   %s\na⊔b %s\nb⊔a %s", dumpBytes(a), dumpBytes(b), dumpBytes(ab), dumpBytes(ba))
			}
			l, r := merge(ab, c), merge(a, merge(b, c))
			if !bytes.Equal(l, r) {
				t.Fatalf("not associative:\na %s\nb %s\nc %s\n(a⊔b)⊔c %s\na⊔(b⊔c) %s",
					dumpBytes(a), dumpBytes(b), dumpBytes(c), dumpBytes(l), dumpBytes(r))
			}
		}
	})
}

func dumpBytes(b []byte) string {
	ps, err := Decode(b)
	if err != nil {
		return err.Error()
	}
	return dump(ps)
}
