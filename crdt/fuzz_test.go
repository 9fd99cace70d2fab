package crdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// fuzzCorpus returns real encodings from a small fixed simulation: states,
// patches, infimums and pending deltas.
func fuzzCorpus(t testing.TB) (states, patches, infs, pends [][]byte) {
	t.Helper()
	s := newSim(t, rand.New(rand.NewPCG(1, 2)), simConfig{nodes: 3, steps: 120, joins: 1, unjoins: true, patches: true, snapshot: true})
	s.run()
	for i, b := range s.snapshots {
		if i%3 != 0 {
			continue
		}
		states = append(states, b)
		ps, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		patches = append(patches, ps.PatchFor("n1").AppendBinary(nil))
		infs = append(infs, ps.Infimum().AppendBinary(nil))
		for _, p := range ps.Pending() {
			pends = append(pends, p.AppendBinary(nil))
		}
	}
	return
}

func FuzzDecode(f *testing.F) {
	states, _, _, _ := fuzzCorpus(f)
	for _, b := range states {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if got := enc(ps); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, got)
		}
		// Whatever decodes must survive the operations.
		ps.Projected(hashApply)
		c := ps.Clone()
		c.Merge(ps, hashApply)
		c.Acknowledge("n0", hashApply)
		c.Event("n0", []byte("x"), hashApply)
		if !c.isNormal() {
			t.Fatalf("not normal after operations: %s", dump(c))
		}
		if !bytes.Equal(enc(ps), b) {
			t.Fatalf("operations on a clone changed the original")
		}
	})
}

// FuzzMerge merges two decoded states both ways, and as a patch: no panics,
// normal form afterwards.
func FuzzMerge(f *testing.F) {
	states, _, _, _ := fuzzCorpus(f)
	for i := range states {
		f.Add(states[i], states[(i+1)%len(states)])
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		x, err := Decode(a)
		if err != nil {
			return
		}
		y, err := Decode(b)
		if err != nil {
			return
		}
		xy := x.Clone()
		xy.Merge(y, hashApply)
		if !xy.isNormal() {
			t.Fatalf("not normal after Merge: %s", dump(xy))
		}
		for _, self := range []NodeID{"n0", "n1"} {
			xp := x.Clone()
			if _, err := xp.MergePatch(self, y.PatchFor(self), hashApply); err != nil && !errors.Is(err, ErrNeedState) {
				t.Fatalf("MergePatch: %v", err)
			}
			if !xp.isNormal() {
				t.Fatalf("not normal after MergePatch: %s", dump(xp))
			}
		}
	})
}

func FuzzDecodePatch(f *testing.F) {
	_, patches, _, _ := fuzzCorpus(f)
	for _, b := range patches {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePatch(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if got := p.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, got)
		}
		if err := p.validate(); err != nil {
			t.Fatalf("decoded an invalid patch: %v", err)
		}
	})
}

func FuzzDecodeInfimum(f *testing.F) {
	_, _, infs, _ := fuzzCorpus(f)
	for _, b := range infs {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		inf, err := DecodeInfimum(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if got := inf.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, got)
		}
		if _, _, err := Restore(inf, nil, hashApply); err != nil {
			t.Fatalf("Restore rejects a decoded infimum: %v", err)
		}
	})
}

func FuzzDecodePending(f *testing.F) {
	_, _, _, pends := fuzzCorpus(f)
	for _, b := range pends {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePending(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if got := p.AppendBinary(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, got)
		}
		if !p.valid(false) {
			t.Fatalf("decoded an invalid pending delta")
		}
	})
}

func FuzzDecodeIDKey(f *testing.F) {
	f.Add(AppendIDKey(nil, ID{}))
	f.Add(AppendIDKey([]byte{}, ID{Counter: 42, Node: "a\x00b"}))
	f.Add(append(AppendIDKey(nil, ID{Counter: 1 << 40, Node: "\x00\xFF"}), "rest"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, rest, err := DecodeIDKey(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if got := append(AppendIDKey(nil, id), rest...); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, got)
		}
	})
}

// byteSource feeds a simulation's choices from fuzz input, so the fuzzer
// steers schedules: which replica acts, what is sent, and the order of
// deliveries. Once the input runs out it continues with splitmix64 (a source
// stuck at zero would make rand's rejection sampling loop forever).
type byteSource struct {
	b     []byte
	state uint64
}

func (s *byteSource) Uint64() uint64 {
	if len(s.b) >= 8 {
		x := binary.BigEndian.Uint64(s.b)
		s.b = s.b[8:]
		return x
	}
	s.state += 0x9E3779B97F4A7C15
	z := s.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// FuzzSimulation runs a whole simulation (membership changes, patches,
// duplicates, reordering) on a schedule chosen by the fuzzer, with every
// check of the randomized simulations.
func FuzzSimulation(f *testing.F) {
	f.Add([]byte("seed"), uint8(0))
	f.Add(bytes.Repeat([]byte{0x13, 0x80, 0xFE, 0x01}, 64), uint8(3))
	f.Fuzz(func(t *testing.T, schedule []byte, variant uint8) {
		cfg := simConfig{nodes: 3 + int(variant%3), steps: 80, patches: variant&4 != 0, joins: int(variant>>3) % 3,
			unjoins: variant&32 != 0, ejects: variant&64 != 0}
		newSim(t, rand.New(&byteSource{b: schedule}), cfg).run()
	})
}
