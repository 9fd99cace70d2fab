package scripting

import (
	"errors"
	"fmt"
	"testing"
)

func TestStatelessDetection(t *testing.T) {
	for _, tc := range []struct {
		src       string
		stateless bool
	}{
		{`function apply(e, s) return 1, s end`, true},
		{`local LIMIT = 10 local name = "x" .. "y" function apply(e, s) return LIMIT, s end`, true},
		{`local fmt = string.format function apply(e, s) return fmt("%d", 1), s end`, true},
		{`function helper(x) return x * 2 end function apply(e, s) return helper(2), s end function index(s) return {} end`, true},
		{`local n = 0 function apply(e, s) n = n + 1 return n, s end`, false},            // assigns an upvalue
		{`local cache = {} function apply(e, s) cache[e] = true return 1, s end`, false}, // a table at top level
		{`local r = math.random(10) function apply(e, s) return r, s end`, false},        // a call at top level
		{`CONFIG = { size = 3 } function apply(e, s) return CONFIG.size, s end`, false},
		{`local t = setmetatable({}, {}) function apply(e, s) return 1, s end`, false},
		{`function apply(e, s) local n = 0 local function inc() n = n + 1 end inc() return n, s end`, false}, // SETUPVAL inside
	} {
		proto, err := compileLua([]byte(tc.src), chunkName)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if got := stateless(proto); got != tc.stateless {
			t.Errorf("stateless(%s) = %v, want %v", tc.src, got, tc.stateless)
		}
	}
}

// TestStatelessReuseIsInvisible: reusing a stateless chunk's globals
// changes neither results nor what the instruction budget allows.
func TestStatelessReuseIsInvisible(t *testing.T) {
	src := `local base = 40 function apply(e, s) local n = base for i = 1, 20 do n = n + 1 end return n, s end`
	run := func(e *Engine, h *Handler) error {
		_, _, err := e.Apply(h, nil, []byte("x"), Call{ID: "1.a"})
		return err
	}
	// Find the exact budget on a fresh engine (first call runs the chunk).
	budget := int64(0)
	for b := int64(10); b < 10000; b++ {
		l := DefaultLimits()
		l.InstructionBudget = b
		e := NewEngine(l)
		h, err := e.Load([]byte(src))
		if err != nil {
			e.Close()
			continue
		}
		if !h.stateless {
			t.Fatal("the test handler should be stateless")
		}
		// Load ran on a pooled runner but does not fill the cache, so this
		// first Apply runs the chunk.
		if err := run(e, h); err == nil {
			budget = b
			e.Close()
			break
		} else if !errors.Is(err, ErrBudget) {
			t.Fatal(err)
		}
		e.Close()
	}
	if budget == 0 {
		t.Fatal("no budget found")
	}
	for _, b := range []int64{budget - 1, budget} {
		l := DefaultLimits()
		l.InstructionBudget = b
		e := NewEngine(l)
		h, err := e.Load([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		var results []string
		for i := 0; i < 5; i++ { // later calls reuse the runner's cached globals
			results = append(results, fmt.Sprint(run(e, h)))
		}
		e.Close()
		for _, r := range results[1:] {
			if r != results[0] {
				t.Fatalf("budget %d: first call %s, a later call %s", b, results[0], r)
			}
		}
		if ok := results[0] == "<nil>"; ok != (b == budget) {
			t.Fatalf("budget %d: %v", b, results)
		}
	}
}

// TestNothingSurvivesEitherWay: chunks that are not stateless still run
// afresh for every call.
func TestNothingSurvivesEitherWay(t *testing.T) {
	e := NewEngine(DefaultLimits())
	defer e.Close()
	for _, src := range []string{
		`local seen = {} function apply(e, s) seen[#seen + 1] = e return #seen, s end`,
		`local n = 0 function apply(e, s) n = n + 1 return n, s end`,
	} {
		h, err := e.Load([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			_, out, err := e.Apply(h, nil, []byte("x"), Call{ID: "1.a"})
			if err != nil || string(out) != string(encodeOK(t, 1)) {
				t.Fatalf("%s: call %d gave %x, %v", src, i, out, err)
			}
		}
	}
}

func encodeOK(t *testing.T, n int) []byte {
	t.Helper()
	e := NewEngine(DefaultLimits())
	defer e.Close()
	h, _ := e.Load([]byte(fmt.Sprintf(`function apply(e, s) return %d, s end`, n)))
	_, out, err := e.Apply(h, nil, nil, Call{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
