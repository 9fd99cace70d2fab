package scripting

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

func TestIsolationBetweenCalls(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	h, err := e.Load([]byte(`
local cache = {}
config = { n = 0 }
local function helper(x) return x * 2 end
function apply(event, state, ctx)
  cache[#cache + 1] = event
  config.n = config.n + 1
  getmetatable("")  -- reading is fine
  return #cache .. "/" .. config.n .. "/" .. helper(21)
end`))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		_, out, err := e.Apply(h, nil, []byte("x"), Call{ID: "1"})
		if err != nil {
			t.Fatal(err)
		}
		if got := outputText(t, out); got != "1/1/42" {
			t.Fatalf("call %d saw %s: state leaked between calls", i, got)
		}
	}
}

func TestCtxAndTime(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	src := []byte(`function apply(event, state, ctx)
  local keys = 0
  for k in pairs(ctx) do keys = keys + 1 end
  return table.concat({ctx.key, ctx.id, ctx.time, ctx.sha, tostring(ctx.nope), os.time(), event, keys}, "|")
end`)
	h, err := e.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(src)
	if h.SHA() != hex.EncodeToString(sum[:]) {
		t.Fatalf("SHA %s", h.SHA())
	}
	for _, c := range []struct {
		time int64
		secs string
	}{{1_700_000_000_999, "1700000000"}, {-1, "-1"}, {0, "0"}} {
		_, out, err := e.Apply(h, nil, []byte("ev"), Call{Key: []byte("user:1"), ID: "17-3", Time: c.time})
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("user:1|17-3|%d|%s|nil|%s|ev|0", c.time, h.SHA(), c.secs)
		if got := outputText(t, out); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	// ctx.key is made when read, from the caller's key, which the caller
	// may reuse for the next call's.
	key := []byte("user:1")
	for _, k := range []string{"user:2", "user:2", "user:1", "x"} {
		key = append(key[:0], k...)
		_, out, err := e.Apply(h, nil, []byte("ev"), Call{Key: key, ID: "1-1", Time: 0})
		if err != nil {
			t.Fatal(err)
		}
		copy(key, "######")
		if got := outputText(t, out); !strings.HasPrefix(got, k+"|") {
			t.Errorf("key %s: got %s", k, got)
		}
	}
}

func TestHandlerMetadata(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	src := []byte(counterSrc)
	h, err := e.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	if !h.HasIndex() || !h.HasQuery() {
		t.Error("index/query not detected")
	}
	s := h.Source()
	s[0] = 'X'
	if h.Source()[0] == 'X' {
		t.Error("Source is not a copy")
	}
	h2, err := e.Load([]byte("function apply() end"))
	if err != nil {
		t.Fatal(err)
	}
	if h2.HasIndex() || h2.HasQuery() {
		t.Error("index/query detected")
	}
	if tags, err := e.Index(h2, nil, Call{}); tags != nil || err != nil {
		t.Errorf("Index without index: %v %v", tags, err)
	}
	_, err = e.Query(h2, nil, nil, Call{})
	wantKind(t, err, ErrNoQuery, "")
}

func TestIndexTags(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	h, err := e.Load([]byte(`function apply() end
function index(state, key)
  if state == nil then return nil end
  return { "b", "a", state.n, "b", key, 1.5, "" }
end`))
	if err != nil {
		t.Fatal(err)
	}
	st, _, _, _ := encodeLuaHelper(t, `{n=10}`)
	tags, err := e.Index(h, st, Call{Key: []byte("k1")})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tags, ","); got != ",1.5,10,a,b,k1" {
		t.Errorf("tags %q", got)
	}
	if tags, err := e.Index(h, nil, Call{}); err != nil || tags != nil {
		t.Errorf("nil tags: %v %v", tags, err)
	}

	// Tags are the values of the table, wherever it keeps them; a key
	// removed from it is no tag, and the keys themselves are none.
	h2, err := e.Load([]byte(`function apply() end
function index(state, key)
  local t = { "a", x = "h1", y = "h2", [2.5] = "n", [-1] = state.n }
  t.y = nil
  t[5] = "z"
  if state.bad then t.w = true end
  return t
end`))
	if err != nil {
		t.Fatal(err)
	}
	tags, err = e.Index(h2, st, Call{Key: []byte("k1")})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tags, ","); got != "10,a,h1,n,z" {
		t.Errorf("tags %q", got)
	}
	bad, _, _, _ := encodeLuaHelper(t, `{n=10, bad=true}`)
	_, err = e.Index(h2, bad, Call{Key: []byte("k1")})
	wantKind(t, err, ErrTags, "index returned a tag that is a boolean, want a string")
}

func TestErrorShape(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	_, err := runBody(t, e, "local x = 1\n  error('boom')")
	var se *Error
	if !errors.As(err, &se) {
		t.Fatal(err)
	}
	// prelude ends on line 6, "function apply" is line 7.
	if se.Kind != ErrRuntime || se.Func != "apply" || se.Line != 9 || se.Msg != "handler:9: boom" {
		t.Errorf("%#v", se)
	}
	if se.Error() != "scripting: apply: handler:9: boom" {
		t.Errorf("Error() = %q", se.Error())
	}
	if se.RESPError() != "ERR script: apply: handler:9: boom" {
		t.Errorf("RESPError() = %q", se.RESPError())
	}
	if Transient(err) {
		t.Error("runtime error is not transient")
	}

	_, err = runBody(t, e, "while true do end")
	errors.As(err, &se)
	if se.RESPError() != "ERR script: instruction budget exceeded in apply" || se.Error() != "scripting: apply: instruction budget exceeded" {
		t.Errorf("budget: %q / %q", se.RESPError(), se.Error())
	}
	if se.Line == 0 {
		t.Error("budget error has no line")
	}

	_, err = runBody(t, e, "error({err = 'WRONGTYPE bad\\r\\nkey'})")
	errors.As(err, &se)
	if se.Reply != "WRONGTYPE bad  key" || se.RESPError() != "WRONGTYPE bad  key" {
		t.Errorf("reply: %#v", se)
	}

	_, err = runBody(t, e, "error('multi\\nline')")
	errors.As(err, &se)
	if strings.ContainsAny(se.RESPError(), "\r\n") {
		t.Errorf("RESPError has a newline: %q", se.RESPError())
	}

	for _, c := range []struct{ body, msg string }{
		{"error(42)", "42"},
		{"error({})", "(error object is a table value)"},
		{"error()", "(error object is a nil value)"},
		{"error('no position', 0)", "no position"},
		{"local t = nil; return t.x", "attempt to index"},
	} {
		_, err := runBody(t, e, c.body)
		errors.As(err, &se)
		if !strings.Contains(se.Msg, c.msg) {
			t.Errorf("%s: %q", c.body, se.Msg)
		}
	}

	_, err = e.Load([]byte("function apply()\n  local = 1\nend"))
	errors.As(err, &se)
	if se.Kind != ErrCompile || se.Line != 2 || se.Func != "load" || !strings.HasPrefix(se.Msg, "handler:2:") {
		t.Errorf("compile: %#v", se)
	}
	if !Transient(&Error{Kind: ErrTimeout}) || !Transient(fmt.Errorf("wrapped: %w", &Error{Kind: ErrMemory})) {
		t.Error("Transient")
	}
}

func TestPcallAndDeterministicMessages(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	got := mustRun(t, e, `
local ok1, e1 = pcall(error, "x", 0)
local ok2, e2 = pcall(function() local function f() return 1 + f() end return f() end)
local ok3, e3 = pcall(function() local x x[{}] = 1 end)
local ok4, e4 = xpcall(function() error({code = 7}) end, function(err) return err.code end)
local ok5, a, b = pcall(function(...) return ... end, 1, 2)
return show(ok1, e1, ok2, e2:match("stack overflow") ~= nil, ok3, e3:find("0x%x%x%x%x") == nil, ok4, e4, ok5, a, b)`)
	if got != "false,x,false,true,false,true,false,7,true,1,2" {
		t.Errorf("got %s", got)
	}
}

func TestTostringDeterministic(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	got := mustRun(t, e, `
local a, b = {}, {}
local mt = setmetatable({}, {__tostring = function() return "custom" end})
return show(a, b, a, print, mt, cjson.null, 1e15, 0.1, -0, 1/0, 2^63, nil, true)`)
	if got != "table: #1,table: #2,table: #1,function: #3,custom,userdata: NULL,1000000000000000,0.1,0,+Inf,9.223372036854776e+18,nil,true" {
		t.Errorf("got %s", got)
	}
}

func TestStateLayout(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	h, err := e.Load([]byte(`function apply(event, state, ctx)
  if event == "init" then
    return nil, { list = {10, 20, 30}, m = { z = 1, a = 2, [5] = 3, [1.5] = 4 } }
  end
  local keys = {}
  for k in pairs(state.m) do keys[#keys + 1] = tostring(k) end
  local k1 = next(state.m)
  return #state.list .. ";" .. table.concat(keys, ",") .. ";" .. tostring(k1), state
end`))
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := e.Apply(h, nil, []byte("init"), Call{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		var out []byte
		st, out, err = e.Apply(h, st, []byte("look"), Call{})
		if err != nil {
			t.Fatal(err)
		}
		if got := outputText(t, out); got != "3;5,1.5,a,z;5" {
			t.Fatalf("got %s", got)
		}
	}
}

func TestCorruptState(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	h, _ := e.Load([]byte(counterSrc))
	_, _, err := e.Apply(h, []byte{0x07, 0x05}, []byte("incr"), Call{})
	wantKind(t, err, ErrCorrupt, "state")
	// A tiny state whose integer key would make gopher-lua allocate a huge
	// array is refused by the budget before any allocation.
	huge := appendNumber([]byte{tagMap, 1}, 60_000_000)
	huge = appendNumber(huge, 1)
	if err := ValidateValue(huge); err != nil {
		t.Fatal(err)
	}
	_, _, err = e.Apply(h, huge, []byte("incr"), Call{})
	wantKind(t, err, ErrBudget, "decoding")
}

func TestSetLimits(t *testing.T) {
	e := NewEngine(Limits{})
	defer e.Close()
	if e.Limits() != DefaultLimits() {
		t.Fatal("zero Limits is not the defaults")
	}
	checkCounter(t, e)
	l := testLimits()
	l.InstructionBudget = 1000
	if err := e.SetLimits(l); err != nil {
		t.Fatal(err)
	}
	_, err := runBody(t, e, "for i = 1, 10000 do end")
	wantKind(t, err, ErrBudget, "")
	bad := l
	bad.MaxCallDepth = 0
	if err := e.SetLimits(bad); err == nil {
		t.Error("invalid limits accepted")
	}
	if e.Limits().InstructionBudget != 1000 {
		t.Error("invalid SetLimits changed the limits")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("NewEngine accepted invalid limits")
			}
		}()
		NewEngine(bad)
	}()
}

func TestBudgetIsExact(t *testing.T) {
	// The same script stops at the same instruction count every time.
	e := NewEngine(testLimits())
	defer e.Close()
	h, err := e.Load([]byte(`function apply(event, state, ctx)
  local n = 0
  local ok = pcall(function() while true do n = n + 1 end end)
  return n
end`))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		_, _, err := e.Apply(h, nil, nil, Call{})
		wantKind(t, err, ErrBudget, "")
	}
	// Just below / above the budget.
	l := testLimits()
	l.InstructionBudget = 20000
	e2 := NewEngine(l)
	defer e2.Close()
	h2, _ := e2.Load([]byte("function apply(event) for i = 1, tonumber(event) do end return 1 end"))
	lo, hi := 0, 20000
	for lo+1 < hi { // find the largest loop count that fits
		mid := (lo + hi) / 2
		if _, _, err := e2.Apply(h2, nil, []byte(itoa(mid)), Call{}); err == nil {
			lo = mid
		} else {
			hi = mid
		}
	}
	for i := 0; i < 5; i++ {
		if _, _, err := e2.Apply(h2, nil, []byte(itoa(lo)), Call{}); err != nil {
			t.Fatalf("%d iterations failed on repeat: %v", lo, err)
		}
		if _, _, err := e2.Apply(h2, nil, []byte(itoa(lo+1)), Call{}); !errors.Is(err, ErrBudget) {
			t.Fatalf("%d iterations passed on repeat: %v", lo+1, err)
		}
	}
}

func TestConcurrentCalls(t *testing.T) {
	l := testLimits()
	l.InstructionBudget = 200_000
	e := NewEngine(l)
	defer e.Close()
	h, err := e.Load([]byte(counterSrc + `
function apply2() end`))
	if err != nil {
		t.Fatal(err)
	}
	hostile, err := e.Load([]byte("function apply() while true do end end"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var st []byte
			for i := 1; i <= 40; i++ {
				if i%10 == 0 {
					if _, _, err := e.Apply(hostile, nil, nil, Call{}); !errors.Is(err, ErrBudget) {
						errs <- fmt.Errorf("hostile: %v", err)
						return
					}
				}
				ns, out, err := e.Apply(h, st, []byte("incr"), Call{Key: []byte{byte(g)}, ID: itoa(i), Accept: g%2 == 0})
				if err != nil {
					errs <- err
					return
				}
				if got := outputText(t, out); got != itoa(i) {
					errs <- fmt.Errorf("goroutine %d step %d: %s", g, i, got)
					return
				}
				st = ns
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func encodeLuaHelper(t *testing.T, expr string) ([]byte, int64, error, string) {
	t.Helper()
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	return encodeLua(luaValue(t, L, expr), 1<<20, false, ErrStateSize, "state")
}

// TestUsageSurvivesRunners: Usage counts every call and its budget units
// exactly, across runners running concurrently and runners closed when the
// limits change.
func TestUsageSurvivesRunners(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	h, err := e.Load([]byte(`function apply(event) local n = 0 for i = 1, 10 do n = n + i end return n end`))
	if err != nil {
		t.Fatal(err)
	}
	call := func() {
		if _, _, err := e.Apply(h, nil, []byte("x"), Call{Accept: true}); err != nil {
			t.Error(err)
		}
	}
	calls0, units0 := e.Usage() // loading ran the chunk
	call()
	calls, units := e.Usage()
	per := units - units0
	if calls != calls0+1 || per <= 0 {
		t.Fatalf("one call took Usage from %d calls, %d units to %d, %d", calls0, units0, calls, units)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				call()
			}
		}()
	}
	wg.Wait()
	if err := e.SetLimits(testLimits()); err != nil { // closes the idle runners
		t.Fatal(err)
	}
	for range 9 {
		call()
	}
	if calls, units := e.Usage(); calls != calls0+210 || units != units0+210*per {
		t.Fatalf("Usage = %d calls, %d units; want %d calls, %d units", calls, units, calls0+210, units0+210*per)
	}
}
