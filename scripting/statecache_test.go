package scripting

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// The cache reads two private fields of gopher-lua's tables; a release
// that renames them must fail here rather than turn the cache off quietly.
func TestTableFieldsFound(t *testing.T) {
	if !ltableFields.ok {
		t.Fatal("lua.LTable has no array and keys fields of []LValue: the state cache is off")
	}
}

// checkBoth runs both checks of v against its own encoding: the one made
// while encoding, and verifyLua's against the bytes. They must agree; it
// returns their verdict and the charge they computed.
func checkBoth(t *testing.T, v lua.LValue) (enc []byte, ok bool, charge int64) {
	t.Helper()
	var m matcher
	enc, _, kind, msg := encodeLuaReusing(v, 1<<30, false, ErrStateSize, "state", nil, 0, &m)
	if kind != nil {
		t.Fatalf("encode: %s", msg)
	}
	encOK, encCharge := !m.bad, m.charge
	var m2 matcher
	var bufs encodeBuffers
	ok = verifyLua(v, enc, &bufs, &m2)
	if ok != encOK {
		t.Fatalf("%x: the encoder's check says %v, verifyLua %v", enc, encOK, ok)
	}
	if ok && m2.charge != encCharge {
		t.Fatalf("%x: the encoder's check charges %d, verifyLua %d", enc, encCharge, m2.charge)
	}
	if len(enc) > 1 && verifyLua(v, enc[:len(enc)-1], &bufs, &m2) {
		t.Fatalf("%x: verified against its encoding less a byte", enc)
	}
	other := bytes.Clone(enc)
	other[len(other)-1] ^= 1
	if verifyLua(v, other, &bufs, &m2) {
		t.Fatalf("%x: verified against %x", enc, other)
	}
	return enc, ok, m2.charge
}

// A freshly decoded value always matches its encoding, and both checks
// compute exactly what the decode charged.
func TestMatchDecoded(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	exprs := []string{
		"{}", "{1}", "{1,{2,{3,{}}}}", `{a={b={c="d"}},[1]=1,[1.5]=2,[-3]=4}`,
		`{[2^53]=1,[2^53+2]=2,["2"]=3,[2]=4}`, `{1,2,nil,4}`, `{x=true,y=false}`,
		`{[0]=0,[-0.5]=1,[1e300]=2,[3]=3,[100]=4,z={0/0,1/0,-1/0}}`,
		`{"` + strings.Repeat("long string ", 20) + `", {` + strings.Repeat(`"s",`, 300) + `}}`,
	}
	for _, expr := range exprs {
		b := encodeExpr(t, L, expr)
		v, charge, err := decodeLua(L, b, 1<<30)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		_, ok, got := checkBoth(t, v)
		if !ok {
			t.Errorf("%s: a fresh decode does not match its encoding", expr)
		}
		if got != charge {
			t.Errorf("%s: checks charge %d, the decode charged %d", expr, got, charge)
		}
	}
}

// Tables whose history or extras a decode would not reproduce must be
// refused; tables built in the decode's own order are accepted.
func TestMatchRefusesWhatDecodeWouldNotBuild(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	cases := []struct {
		name, code string
		ok         bool
	}{
		{"constructor in order", `return {a = 1, b = 2, c = {1, 2, 3}}`, true},
		{"removed key", `local t = {a = 1, b = 2, c = 3}; t.b = nil; return t`, false},
		{"removed and set again in place", `local t = {a = 1, b = 2, c = 3}; t.b = nil; t.b = 5; return t`, true},
		{"keys out of order", `local t = {}; t.b = 1; t.a = 2; return t`, false},
		{"number keys out of order", `return {[2.5] = 1, [-1] = 2}`, false},
		{"number keys in order", `return {[-1] = 2, [2.5] = 1}`, true},
		{"list and fields", `return {1, 2, x = 1}`, true},
		{"sparse list", `return {[1] = 1, [3] = 3}`, true},
		{"list shrunk at the end", `local t = {1, 2, 3}; t[3] = nil; return t`, false},
		{"list emptied, then a field", `local t = {1}; t[1] = nil; t.x = 1; return t`, false},
		{"metatable", `return setmetatable({a = 1}, {})`, false},
		{"nested metatable", `return {a = setmetatable({}, {})}`, false},
		{"shared table", `local s = {1}; return {x = s, y = s}`, false},
		{"negative zero value", `local z = 0; z = -z; return {x = z}`, false},
		{"negative zero key", `local z = 0; z = -z; return {[z] = 1}`, false},
		{"removed number key", `local t = {[0.5] = 1, [1.5] = 2}; t[0.5] = nil; return t`, false},
		{"removed nested key", `local t = {a = {x = 1, y = 2}}; t.a.x = nil; return t`, false},
	}
	for _, c := range cases {
		if err := L.DoString(c.code); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		v := L.Get(-1)
		L.Pop(1)
		enc, ok, _ := checkBoth(t, v)
		if ok != c.ok {
			t.Errorf("%s: accepted %v, want %v", c.name, ok, c.ok)
		}
		if ok {
			// An accepted table iterates exactly as its decode does.
			d, _, err := decodeLua(L, enc, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := walk(v), walk(d); a != b {
				t.Errorf("%s: accepted, but iterates %s where the decode iterates %s", c.name, a, b)
			}
		}
	}
}

// Go code can put an array index in a table's hash part (RawSetH), where
// no Lua code can: a decode would put it in the array part.
func TestMatchRefusesArrayIndexInHashPart(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	tb := L.NewTable()
	tb.RawSetInt(1, lua.LString("a"))
	tb.RawSetInt(3, lua.LString("c"))
	tb.RawSetInt(3, lua.LNil) // the array part keeps its length, 3
	tb.RawSetH(lua.LNumber(3), lua.LString("c"))
	tb.RawSetString("x", lua.LTrue)
	if _, ok, _ := checkBoth(t, tb); ok {
		t.Fatal("accepted a table with an array index in its hash part")
	}
}

// walk renders next's order through v's tables.
func walk(v lua.LValue) string {
	tb, ok := v.(*lua.LTable)
	if !ok {
		return lua.LVAsString(v)
	}
	var sb strings.Builder
	sb.WriteString("{")
	for k, x := tb.Next(lua.LNil); k != lua.LNil; k, x = tb.Next(k) {
		fmt.Fprintf(&sb, "%v=%s,", k, walk(x))
	}
	fmt.Fprintf(&sb, "#%d}", tb.Len())
	return sb.String()
}

func TestStateCacheBound(t *testing.T) {
	c := newStateCache(1000)
	put := func(key string, cost int64) {
		c.put(&cachedState{key: key, enc: []byte(key), cost: cost})
	}
	put("a", 400)
	put("b", 400)
	if c.take([]byte("a"), []byte("a")) == nil {
		t.Fatal("a is not cached")
	}
	put("a", 400) // a is now the most recent
	put("c", 400) // evicts b
	if b, n := c.usage(); b != 800 || n != 2 {
		t.Fatalf("holds %d bytes in %d entries, want 800 in 2", b, n)
	}
	if c.take([]byte("b"), []byte("b")) != nil {
		t.Fatal("b survived eviction")
	}
	if c.take([]byte("a"), []byte("other bytes")) != nil {
		t.Fatal("an entry answered for other bytes")
	}
	if c.take([]byte("a"), []byte("a")) != nil {
		t.Fatal("an entry taken for other bytes stayed cached")
	}
	put("huge", 2000)
	if c.take([]byte("huge"), []byte("huge")) != nil {
		t.Fatal("an entry larger than the limit was kept")
	}
}

// shuffleSrc mutates its state at random in every way that leaves a trace
// in gopher-lua's tables (removed keys, keys set out of order, lists
// shrunk, metatables, shared tables, -0) and reports everything a handler
// can see of the state it was given: next's order, #t, the bits of
// numbers, before and after its changes. index and query do the same, and
// mutate the state too.
const shuffleSrc = `
local keys = {"a", "b", "c", "d", "e", "f"}

local function show(t, out, depth)
  if type(t) ~= "table" then
    if t == 0 then out[#out+1] = tostring(1/t) else out[#out+1] = tostring(t) end
    return
  end
  out[#out+1] = "{#" .. #t .. (getmetatable(t) and "mt" or "") .. ":"
  -- next from a key just past the list: gopher-lua answers from where
  -- the array part ends, which only its length shows.
  local ok, k = pcall(next, t, #t + 1)
  out[#out+1] = tostring(ok) .. "/" .. tostring(k) .. ":"
  for k, v in pairs(t) do
    if type(k) == "number" and k == 0 then out[#out+1] = tostring(1/k) else out[#out+1] = tostring(k) end
    out[#out+1] = "="
    if k ~= "pad" and depth < 4 then show(v, out, depth + 1) else out[#out+1] = "..." end
    out[#out+1] = ","
  end
  out[#out+1] = "}"
end

local function value(depth)
  local r = math.random(10)
  if r <= 3 then return math.random(100) end
  if r == 4 then local z = 0; return -z end
  if r <= 6 then return keys[math.random(#keys)] end
  if depth > 2 then return true end
  local t = {}
  for i = 1, math.random(0, 4) do t[keys[math.random(#keys)]] = value(depth + 1) end
  for i = 1, math.random(0, 3) do t[#t + 1] = value(depth + 1) end
  return t
end

local function mutate(t, n)
  for i = 1, n do
    local r = math.random(12)
    local k = keys[math.random(#keys)]
    if r <= 3 then t[k] = value(1)
    elseif r <= 5 then t[k] = nil
    elseif r == 6 then t[math.random(6)] = value(1)
    elseif r == 7 then t[math.random(6)] = nil
    elseif r == 8 then table.insert(t, value(1))
    elseif r == 9 then if #t > 0 then table.remove(t) end
    elseif r == 10 then if type(t[k]) == "table" then t[keys[math.random(#keys)]] = t[k] end
    elseif r == 11 then if type(t[k]) == "table" then mutate(t[k], 2) end
    elseif math.random(4) == 1 then setmetatable(t, {})
    end
  end
end

function apply(event, state, ctx)
  local out = {}
  show(state, out, 0)
  if state == nil or event == "reset" then state = {} end
  mutate(state, math.random(0, 3))
  state.pad = string.rep("p", PAD)
  out[#out+1] = " after: "
  show(state, out, 0)
  local n = 0
  for i = 1, math.random(20) do n = n + i end -- varies the budget used
  return table.concat(out), state
end

function index(state, key)
  local out = {}
  show(state, out, 0)
  if math.random(3) == 1 then mutate(state, 2) end
  local tags = {}
  for k in pairs(state) do
    if #tags < 3 and type(k) == "string" then tags[#tags + 1] = k end
  end
  tags[#tags + 1] = string.sub(table.concat(out), 1, 200)
  return tags
end

function query(request, state, ctx)
  local out = {}
  show(state, out, 0)
  if request == "mutate" then mutate(state, 3) end
  return table.concat(out)
end
`

// Pads of shuffleSrc: states above the shared cache's threshold, or
// mostly below it (handed from an apply to the next call).
const (
	largePad = 600
	smallPad = 0
)

// refillSrc is shuffleSrc with an apply that mostly keeps the shape of its
// state (the keys a, b, c and pad, in that order) and changes the values,
// so that a call on a small state usually finds the table another key's
// state was built into, of the same shape, to decode into (see
// refillLua); now and then it changes the shape as shuffleSrc does.
const refillSrc = shuffleSrc + `
function apply(event, state, ctx)
  local out = {}
  show(state, out, 0)
  if state == nil or event == "reset" or math.random(12) == 1 then state = {} end
  if math.random(10) == 1 then
    mutate(state, math.random(1, 3))
  else
    for _, k in ipairs({"a", "b", "c"}) do
      if math.random(3) > 1 then state[k] = value(1) end
    end
  end
  state.pad = string.rep("p", PAD)
  out[#out+1] = " after: "
  show(state, out, 0)
  return table.concat(out), state
end
`

// cachedAndPlain returns an engine with the state cache and one without,
// both having loaded src (shuffleSrc or refillSrc) with states padded by
// pad bytes (so that they count the same calls).
func cachedAndPlain(t *testing.T, lim Limits, src string, pad int) (cached, plain *Engine, h *Handler) {
	cached, plain = NewEngine(lim), NewEngine(lim)
	t.Cleanup(cached.Close)
	t.Cleanup(plain.Close)
	cached.SetStateCache(1 << 20)
	src = strings.ReplaceAll(src, "PAD", strconv.Itoa(pad))
	h, err := cached.Load([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Load([]byte(src)); err != nil {
		t.Fatal(err)
	}
	return cached, plain, h
}

// The same calls on an engine with the state cache and on one without must
// give the same bytes, errors and budget, while the cache is used.
func TestStateCacheChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		budget, pad int64
		refill      bool // refillSrc rather than shuffleSrc
	}{{2_000_000, largePad, false}, {4_000, largePad, false}, {2_000_000, smallPad, false}, {3_000, smallPad, false}, {2_000_000, smallPad, true}, {3_000, smallPad, true}} {
		t.Run(fmt.Sprintf("budget %d pad %d refill %v", tc.budget, tc.pad, tc.refill), func(t *testing.T) {
			lim := testLimits()
			lim.InstructionBudget = tc.budget
			src := shuffleSrc
			if tc.refill {
				src = refillSrc
			}
			cached, plain, h := cachedAndPlain(t, lim, src, int(tc.pad))
			failed := 0
			keys := [][]byte{[]byte("k1"), []byte("k2"), []byte("k3")}
			states, older := map[string][]byte{}, map[string][]byte{}
			same := func(what string, a, b []byte, ea, eb error) {
				t.Helper()
				if !bytes.Equal(a, b) || fmt.Sprint(ea) != fmt.Sprint(eb) {
					t.Fatalf("%s: with the cache %q (%v), without %q (%v)", what, a, ea, b, eb)
				}
			}
			for i := 0; i < 3000; i++ {
				key := keys[i%len(keys)]
				state := states[string(key)]
				ev := "e"
				if i%97 == 0 {
					ev = "reset"
				}
				call := Call{Key: key, ID: fmt.Sprintf("id-%d", i), Time: int64(i)}
				ns1, out1, err1 := cached.Apply(h, state, []byte(ev), call)
				ns2, out2, err2 := plain.Apply(h, state, []byte(ev), call)
				same(fmt.Sprintf("apply %d output", i), out1, out2, err1, err2)
				same(fmt.Sprintf("apply %d state", i), ns1, ns2, err1, err2)
				var budgetErr *Error
				if err1 != nil && !(errors.As(err1, &budgetErr) && budgetErr.Kind == ErrBudget) {
					t.Fatalf("apply %d: %v", i, err1)
				}
				if err1 != nil {
					failed++
				} else {
					older[string(key)] = state
					state = ns1
					states[string(key)] = ns1
				}
				if i%11 == 5 {
					// As a replay after a rollback does: the key's older
					// state right after the call that returned a newer one.
					call.ID += "r"
					ns1, out1, err1 := cached.Apply(h, older[string(key)], []byte(ev), call)
					ns2, out2, err2 := plain.Apply(h, older[string(key)], []byte(ev), call)
					same(fmt.Sprintf("apply %d again output", i), out1, out2, err1, err2)
					same(fmt.Sprintf("apply %d again state", i), ns1, ns2, err1, err2)
				}
				switch i % 5 {
				case 1:
					t1, err1 := cached.Index(h, state, Call{Key: key})
					t2, err2 := plain.Index(h, state, Call{Key: key})
					same(fmt.Sprintf("index %d", i), []byte(strings.Join(t1, "|")), []byte(strings.Join(t2, "|")), err1, err2)
				case 3:
					req := []byte("look")
					if i%3 == 0 {
						req = []byte("mutate")
					}
					o1, err1 := cached.Query(h, state, req, Call{Key: key})
					o2, err2 := plain.Query(h, state, req, Call{Key: key})
					same(fmt.Sprintf("query %d", i), o1, o2, err1, err2)
				}
			}
			c1, u1 := cached.Usage()
			c2, u2 := plain.Usage()
			if c1 != c2 || u1 != u2 {
				t.Fatalf("with the cache %d calls used %d units, without %d used %d", c1, u1, c2, u2)
			}
			st := cached.StateCacheStats()
			t.Logf("hits %d, misses %d, %d entries, %d bytes, %d handoffs, %d refills; %d events over budget", st.Hits, st.Misses, st.Entries, st.Bytes, st.Handoffs, st.Refills, failed)
			if tc.pad == largePad && (st.Hits < 300 || st.Misses < 300) {
				t.Fatalf("hits %d and misses %d: the test does not exercise both paths", st.Hits, st.Misses)
			}
			if tc.pad == smallPad && st.Handoffs < 300 {
				t.Fatalf("%d handoffs: the test does not exercise them", st.Handoffs)
			}
			if tc.refill && st.Refills < 200 {
				t.Fatalf("%d refills: the test does not exercise them", st.Refills)
			}
		})
	}
}

// Calls from many goroutines, two of them on each key with states of their
// own, give what each chain of calls gives alone without the cache.
func TestStateCacheConcurrent(t *testing.T) {
	cached, plain, h := cachedAndPlain(t, testLimits(), shuffleSrc, largePad)
	const chains, steps = 4, 150
	run := func(e *Engine, chain int) [][]byte {
		key := []byte(fmt.Sprintf("k%d", chain%2))
		var state []byte
		var outs [][]byte
		for i := 0; i < steps; i++ {
			call := Call{Key: key, ID: fmt.Sprintf("%d-%d", chain, i)}
			ns, out, err := e.Apply(h, state, []byte("e"), call)
			if err != nil {
				t.Errorf("chain %d step %d: %v", chain, i, err)
				return nil
			}
			q, err := e.Query(h, ns, []byte("mutate"), Call{Key: key})
			if err != nil {
				t.Errorf("chain %d step %d: query: %v", chain, i, err)
				return nil
			}
			outs = append(outs, out, ns, q)
			state = ns
		}
		return outs
	}
	got := make([][][]byte, chains)
	var wg sync.WaitGroup
	for c := 0; c < chains; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[c] = run(cached, c)
		}()
	}
	wg.Wait()
	for c := 0; c < chains; c++ {
		want := run(plain, c)
		if len(got[c]) != len(want) {
			t.Fatalf("chain %d: %d results, want %d", c, len(got[c]), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[c][i], want[i]) {
				t.Fatalf("chain %d result %d: with the cache %q, without %q", c, i, got[c][i], want[i])
			}
		}
	}
	if st := cached.StateCacheStats(); st.Hits == 0 {
		t.Fatal("the state cache was never used")
	}
}

// A query or index that changes a value in place (the same layout, the
// same length) must not leave its change in the cache, or in the runner's
// handoff of a small state, for the next call.
func TestStateCacheInPlaceChanges(t *testing.T) {
	for _, pad := range []int{largePad, smallPad} {
		t.Run(fmt.Sprintf("pad %d", pad), func(t *testing.T) {
			e := NewEngine(testLimits())
			defer e.Close()
			e.SetStateCache(1 << 20)
			h, err := e.Load([]byte(`
function apply(event, state, ctx)
  state = state or { x = 1, pad = string.rep("p", ` + strconv.Itoa(pad) + `) }
  return state.x, state
end
function index(state, key) state.x = state.x + 1; return { "t" } end
function query(request, state, ctx) state.x = state.x + 2; return state.x end`))
			if err != nil {
				t.Fatal(err)
			}
			key := []byte("k")
			state, _, err := e.Apply(h, nil, []byte("e"), Call{Key: key})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if _, err := e.Index(h, state, Call{Key: key}); err != nil {
					t.Fatal(err)
				}
				if _, err := e.Query(h, state, nil, Call{Key: key}); err != nil {
					t.Fatal(err)
				}
				_, out, err := e.Apply(h, state, []byte("e"), Call{Key: key})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out, encodeValue(t, lua.LNumber(1))) {
					t.Fatalf("round %d: apply saw x = %x, want 1: a change made by index or query survived", i, out)
				}
			}
			if st := e.StateCacheStats(); st.Hits+st.Handoffs < 2 {
				t.Fatalf("%d hits, %d misses, %d handoffs: the calls did not use the cache", st.Hits, st.Misses, st.Handoffs)
			}
		})
	}
}

func encodeValue(t *testing.T, v lua.LValue) []byte {
	t.Helper()
	b, _, kind, msg := encodeLua(v, 1<<20, false, ErrStateSize, "state")
	if kind != nil {
		t.Fatal(msg)
	}
	return b
}

// shapesSrc builds, on event "make N", the Nth of a set of small states
// whose shapes (keys, their order, array parts, nesting) differ in every
// way refillLua looks at, each built in its canonical key order so that
// the apply hands it on; on "show", it shows the state it was given.
const shapesSrc = shuffleSrc + `
local shapes = {
  function() return {a = 1, b = 2, c = 3} end,
  function() return {a = 4, b = 5} end,
  function() return {a = 6, b = 7, c = 8, d = 9} end,
  function() return {b = 1, c = 2, d = 3} end,
  function() local t = {10, 20}; t.a = 1; t.b = 2; return t end,
  function() return {a = {x = 1, y = {2}}, b = "s"} end,
  function() return {a = "t", b = {z = true}} end,
  function() return {["1"] = 1, a = 2} end,
  function() local t = {}; t[2] = 1; t.a = 3; return t end,
  function() return {a = 1, b = 2, c = "three"} end,
}

function apply(event, state, ctx)
  local n = string.match(event, "^make (%d+)$")
  if n then return #shapes, shapes[tonumber(n)]() end
  local out = {}
  show(state, out, 0)
  return table.concat(out), state
end
`

// A call on a small state finding the stale table of another key's state
// (see refillLua) must see exactly what decoding its state builds, for
// every pair of shapes, the same or not.
func TestStateCacheRefillShapes(t *testing.T) {
	const shapes = 10 // as in shapesSrc
	cached, plain, h := cachedAndPlain(t, testLimits(), shapesSrc, 0)
	states := make([][]byte, shapes+1)
	for i := 1; i <= shapes; i++ {
		var err error
		if states[i], _, err = plain.Apply(h, nil, []byte(fmt.Sprintf("make %d", i)), Call{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= shapes; i++ {
		for j := 1; j <= shapes; j++ {
			// The stale table: shape i, returned for key x.
			if _, _, err := cached.Apply(h, nil, []byte(fmt.Sprintf("make %d", i)), Call{Key: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			// Then shape j, for key y.
			call := Call{Key: []byte("y")}
			ns1, out1, err1 := cached.Apply(h, states[j], []byte("show"), call)
			ns2, out2, err2 := plain.Apply(h, states[j], []byte("show"), call)
			if !bytes.Equal(out1, out2) || !bytes.Equal(ns1, ns2) || fmt.Sprint(err1) != fmt.Sprint(err2) {
				t.Fatalf("shape %d after shape %d: with the cache %q %q (%v), without %q %q (%v)", j, i, out1, ns1, err1, out2, ns2, err2)
			}
		}
	}
	// Each shape after itself, at least.
	if st := cached.StateCacheStats(); st.Refills < shapes {
		t.Fatalf("%d refills over %d pairs of shapes: the test does not exercise them", st.Refills, shapes*shapes)
	}
}

// spareSrc's query changes its state as its request says, in each of the
// ways a table's history can show; apply shows the state it is given.
const spareSrc = shuffleSrc + `
function apply(event, state, ctx)
  local out = {}
  show(state, out, 0)
  state = state or { a = 0, b = {} }
  state.a = state.a + 1
  return table.concat(out), state
end

function query(request, state, ctx)
  if request == "mt" then setmetatable(state, { __index = function() return 1 end })
  elseif request == "del" then state.a = nil
  elseif request == "delall" then state.a = nil; state.b = nil
  elseif request == "add" then state.z = 1
  elseif request == "addel" then state.z = 1; state.z = nil
  elseif request == "arr" then state[1] = 1
  elseif request == "arrdel" then state[1] = 1; state[1] = nil
  elseif request == "other" then state[true] = 1; state[true] = nil
  elseif request == "share" then state.b = { 1 }; state.a = state.b
  elseif request == "nested" then state.b.q = 1; setmetatable(state.b, {})
  end
  return 0
end
`

// A table an index or query call was given is kept as a spare to decode
// the next small state into (see refillLua): whatever the call did to it,
// the next call must see exactly what decoding its state builds.
func TestStateCacheSpare(t *testing.T) {
	cached, plain, h := cachedAndPlain(t, testLimits(), spareSrc, 0)
	x, y := []byte("x"), []byte("y")
	for _, req := range []string{"none", "mt", "del", "delall", "add", "addel", "arr", "arrdel", "other", "share", "nested"} {
		var outs [2][]byte
		for i, e := range []*Engine{cached, plain} {
			sy, _, err := e.Apply(h, nil, []byte("e"), Call{Key: y})
			if err != nil {
				t.Fatal(err)
			}
			sx, _, err := e.Apply(h, nil, []byte("e"), Call{Key: x})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Query(h, sx, []byte(req), Call{Key: x}); err != nil {
				t.Fatal(err)
			}
			// On another key, a state of the shape x's had.
			_, out, err := e.Apply(h, sy, []byte("e"), Call{Key: y})
			if err != nil {
				t.Fatal(err)
			}
			outs[i] = out
		}
		if !bytes.Equal(outs[0], outs[1]) {
			t.Errorf("after a query that did %q: with the cache %q, without %q", req, outs[0], outs[1])
		}
	}
	c1, u1 := cached.Usage()
	c2, u2 := plain.Usage()
	if c1 != c2 || u1 != u2 {
		t.Fatalf("with the cache %d calls used %d units, without %d used %d", c1, u1, c2, u2)
	}
	// none, share and nested leave a table to decode into; the others
	// change its key order (a removed key is skipped by next), metatable
	// or array part.
	if st := cached.StateCacheStats(); st.Refills < 3 {
		t.Fatalf("%d refills: the test does not exercise them", st.Refills)
	}
}
