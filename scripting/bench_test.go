package scripting

import (
	"testing"

	lua "github.com/yuin/gopher-lua"
)

func BenchmarkApplyCounter(b *testing.B) {
	e := NewEngine(DefaultLimits())
	defer e.Close()
	h, err := e.Load([]byte(counterSrc))
	if err != nil {
		b.Fatal(err)
	}
	st, _, err := e.Apply(h, nil, []byte("incr"), Call{Key: []byte("k"), ID: "0"})
	if err != nil {
		b.Fatal(err)
	}
	c := Call{Key: []byte("k"), ID: "1-0", Time: 1700000000000}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st, _, err = e.Apply(h, st, []byte("incr"), c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyCounterAccept(b *testing.B) {
	l := DefaultLimits()
	l.MaxMemoryBytes = 8 << 30
	e := NewEngine(l)
	defer e.Close()
	h, err := e.Load([]byte(counterSrc))
	if err != nil {
		b.Fatal(err)
	}
	st, _, _ := e.Apply(h, nil, []byte("incr"), Call{Key: []byte("k"), ID: "0"})
	c := Call{Key: []byte("k"), ID: "1-0", Time: 1700000000000, Accept: true}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st, _, err = e.Apply(h, st, []byte("incr"), c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChunkRerun measures what isolation costs per call: a fresh
// environment plus re-running the counter handler's top-level chunk.
func BenchmarkChunkRerun(b *testing.B) {
	e := NewEngine(DefaultLimits())
	defer e.Close()
	h, err := e.Load([]byte(counterSrc))
	if err != nil {
		b.Fatal(err)
	}
	r := e.get()
	defer e.put(r, true)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.begin(&callSpec{fname: "apply", seed: "x"})
		if err := r.runChunk(h.proto, false); err != nil {
			b.Fatal(err)
		}
		r.end()
	}
}

// BenchmarkVMInstructions reports the cost of one VM instruction with the
// budget check in place (ns/op is per loop iteration of ~4 instructions).
func BenchmarkVMInstructions(b *testing.B) {
	l := DefaultLimits()
	l.InstructionBudget = 1 << 50
	e := NewEngine(l)
	defer e.Close()
	h, err := e.Load([]byte(`function apply(event)
  local x = 0
  for i = 1, tonumber(event) do x = x + i end
  return x
end`))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if _, _, err := e.Apply(h, nil, []byte(itoa(b.N)), Call{}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCounterKeys is the counter over 1000 keys, each call on
// another key than the last, with the state cache on: what a server's
// random keys cost in the engine. The second runs the index call that
// follows every apply in a server.
func BenchmarkCounterKeys(b *testing.B) {
	for _, withIndex := range []bool{false, true} {
		name := "apply"
		if withIndex {
			name = "apply+index"
		}
		b.Run(name, func(b *testing.B) {
			e := NewEngine(DefaultLimits())
			defer e.Close()
			e.SetStateCache(32 << 20)
			h, err := e.Load([]byte(counterSrc))
			if err != nil {
				b.Fatal(err)
			}
			keys := make([][]byte, 1000)
			states := make([][]byte, len(keys))
			for i := range keys {
				keys[i] = []byte("key:" + itoa(i))
				if states[i], _, err = e.Apply(h, nil, []byte("incr"), Call{Key: keys[i], ID: "0"}); err != nil {
					b.Fatal(err)
				}
			}
			c := Call{ID: "1-0", Time: 1700000000000}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i * 7 % len(keys)
				c.Key = keys[k]
				if states[k], _, err = e.Apply(h, states[k], []byte("incr"), c); err != nil {
					b.Fatal(err)
				}
				if !withIndex {
					continue
				}
				if _, err := e.Index(h, states[k], Call{Key: keys[k]}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeTable encodes tables of 1000 entries: a map whose key
// order is sorted (as a decode leaves it), the same keys inserted out of
// order, and a map of number keys that are not array indexes.
func BenchmarkEncodeTable(b *testing.B) {
	L := lua.NewState()
	defer L.Close()
	sorted, shuffled, numbers := L.NewTable(), L.NewTable(), L.NewTable()
	for i := range 1000 {
		sorted.RawSetString("k"+itoa(100000+i), lua.LNumber(i))
		shuffled.RawSetString("k"+itoa(100000+i*7919%1000), lua.LNumber(i))
		numbers.RawSetH(lua.LNumber(float64(i)+0.5), lua.LString("v"))
	}
	var bufs encodeBuffers
	var m matcher
	for _, c := range []struct {
		name string
		tb   *lua.LTable
	}{{"sorted", sorted}, {"shuffled", shuffled}, {"numbers", numbers}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, kind, msg := encodeLuaReusing(c.tb, 1<<20, false, ErrStateSize, "state", &bufs, 0, &m); kind != nil {
					b.Fatal(msg)
				}
			}
		})
	}
}
