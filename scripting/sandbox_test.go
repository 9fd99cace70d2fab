package scripting

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

type hostileCase struct {
	name   string
	src    string // full handler source; if empty, body is wrapped into apply
	body   string
	fn     string // "load", "apply" (default), "index", "query"
	event  []byte
	accept bool
	limits func(*Limits)
	kind   error
	msg    string // substring of Error.Msg
}

func (c hostileCase) source() string {
	if c.src != "" {
		return c.src
	}
	return prelude + "function apply(event, state, ctx)\n" + c.body + "\nend\n" +
		"function index(state, key) return {} end\nfunction query(r, s, c) return 1 end\n"
}

func hostileCases() []hostileCase {
	removed := []string{
		"io.write('x')", "os.execute('ls')", "os.getenv('HOME')", "os.exit(1)", "os.clock()", "os.date()",
		"os.remove('x')", "debug.getinfo(1)", "require('os')", "module('x')", "dofile('/etc/passwd')",
		"loadfile('/etc/passwd')", "load(function() end)", "collectgarbage()", "getfenv(1)",
		"setfenv(1, {})", "newproxy(true)", "coroutine.create(print)", "channel.make()",
		"string.dump(print)", "math.randomseed(1)", "gcinfo()", "_printregs()",
		"string.gfind('a', 'a')", "table.foreach({}, print)", "unpack ~= nil and _G.rawlen()",
	}
	var cs []hostileCase
	for _, call := range removed {
		cs = append(cs, hostileCase{name: "removed " + call, body: "return " + call, kind: ErrRuntime})
	}
	deep := "local x = " + strings.Repeat("- ", 5000) + "1"
	cs = append(cs, []hostileCase{
		{name: "load infinite loop", src: "while true do end\nfunction apply() end", fn: "load", kind: ErrBudget},
		{name: "load timeout", src: "while true do end\nfunction apply() end", fn: "load", kind: ErrTimeout,
			limits: func(l *Limits) { l.InstructionBudget = 1 << 50; l.Timeout = 50 * time.Millisecond }},
		{name: "load deep recursion", src: "local function f() return 1 + f() end f()\nfunction apply() end", fn: "load", kind: ErrCallDepth},
		{name: "load error", src: "error('boom')\nfunction apply() end", fn: "load", kind: ErrRuntime, msg: "handler:1: boom"},
		{name: "load syntax error", src: "function apply(\n  x = \nend", fn: "load", kind: ErrCompile, msg: "handler:"},
		{name: "load syntax too deep", src: deep + "\nfunction apply() end", fn: "load", kind: ErrCompile, msg: "too many syntax levels"},
		{name: "load source too large", src: "--" + strings.Repeat("x", 2<<20) + "\nfunction apply() end", fn: "load", kind: ErrCompile},
		{name: "load no apply", src: "function aply() end", fn: "load", kind: ErrNoApply},
		{name: "load apply not function", src: "apply = 5", fn: "load", kind: ErrNoApply},
		{name: "load index not function", src: "function apply() end index = {}", fn: "load", kind: ErrRuntime},
		{name: "apply infinite loop", body: "while true do end", kind: ErrBudget},
		{name: "apply timeout", body: "while true do end", accept: true, kind: ErrTimeout,
			limits: func(l *Limits) { l.InstructionBudget = 1 << 50; l.Timeout = 50 * time.Millisecond }},
		{name: "index infinite loop", src: "function apply() end function index() while true do end end", fn: "index", kind: ErrBudget},
		{name: "query infinite loop", src: "function apply() end function query() repeat until false end", fn: "query", kind: ErrBudget},
		{name: "pcall swallowing the budget", body: "while true do pcall(function() while true do end end) end", kind: ErrBudget},
		{name: "xpcall swallowing the budget", body: "local ok = xpcall(function() while true do end end, function() while true do end end) return ok", kind: ErrBudget},
		{name: "return pcall of a loop", body: "return pcall(function() while true do end end)", kind: ErrBudget},
		{name: "tail-call loop", body: "local function f() return f() end return f()", kind: ErrBudget},
		{name: "deep recursion", body: "local function f(n) return 1 + f(n + 1) end return f(1)", kind: ErrCallDepth},
		{name: "__index recursion", body: "local t = setmetatable({}, {__index = function(t, k) return t[k] end}) return t.x", kind: ErrCallDepth},
		{name: "__tostring recursion", body: "local t = setmetatable({}, {}) getmetatable(t).__tostring = function(x) return tostring(x) end return tostring(t)", kind: ErrCallDepth},
		{name: "string.rep bomb", body: "return string.rep('x', 1e9)", kind: ErrStringSize},
		{name: "string.rep huge count", body: "return ('ab'):rep(2^62)", kind: ErrStringSize},
		{name: "string.rep loop", body: "local t = {} for i = 1, 1e6 do t[i] = string.rep('x', 1e6) end", kind: ErrBudget},
		{name: "gsub bomb", body: "return (string.gsub(string.rep('x', 1e5), 'x', string.rep('y', 100)))", kind: ErrStringSize},
		{name: "gsub %0 bomb", body: "local s = string.rep('x', 1e4) return (s:gsub('.', '%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0%0'))", kind: ErrStringSize},
		{name: "table.concat bomb", body: "local t = {} for i = 1, 200 do t[i] = string.rep('x', 1e4) end return table.concat(t)", kind: ErrStringSize},
		{name: "string.format bomb", body: "local s = string.rep('x', 6e5) return string.format('%s%s', s, s)", kind: ErrStringSize},
		{name: "cjson.encode bomb", body: "local t = {} for i = 1, 200 do t[i] = string.rep('x', 1e4) end return cjson.encode(t)", kind: ErrStringSize},
		{name: "pattern backtracking bomb", body: "return string.find(string.rep('a', 40), string.rep('a*', 40) .. 'b')", kind: ErrBudget},
		{name: "pattern too complex", body: "return string.find(string.rep('a', 300), string.rep('a?', 300))", kind: ErrRuntime, msg: "pattern too complex"},
		{name: "gsub callback loop", body: "return string.gsub('abc', '%w', function() while true do end end)", kind: ErrBudget},
		{name: "sort comparator loop", body: "local t = {3,2,1} table.sort(t, function() while true do end end)", kind: ErrBudget},
		{name: "sort comparator error", body: "local t = {3,2,1} table.sort(t, function() error('cmp') end)", kind: ErrRuntime, msg: "cmp"},
		{name: "sort incomparable", body: "local t = {1, 'x', {}} table.sort(t)", kind: ErrRuntime, msg: "attempt to compare"},
		{name: "table bomb", body: "local t = {} while true do t[#t + 1] = {} end", kind: ErrBudget},
		{name: "table.insert shifting bomb", body: "local t = {1} table.insert(t, -1e15, 0)", kind: ErrBudget},
		{name: "unpack bomb", body: "return unpack({}, 1, 1e7)", kind: ErrRuntime, msg: "too many results to unpack"},
		{name: "string.byte bomb", body: "return string.byte(string.rep('x', 1e5), 1, -1)", kind: ErrRuntime, msg: "string slice too long"},
		{name: "cjson.decode nesting", body: "return cjson.decode(string.rep('[', 2000))", kind: ErrRuntime, msg: "Found too many nested data structures (1001)"},
		{name: "cjson.encode cycle", body: "local t = {} t[1] = t return cjson.encode(t)", kind: ErrRuntime, msg: "excessive nesting"},
		{name: "cjson.decode too large", body: "return cjson.decode('\"' .. string.rep('x', 2^20) .. '\"')", kind: ErrStringSize},
		{name: "global create", body: "x = 1", kind: ErrRuntime, msg: "Script attempted to create global variable 'x'"},
		{name: "global modify", body: "apply = nil", kind: ErrRuntime, msg: "Attempt to modify a readonly table"},
		{name: "builtin modify", body: "tostring = print", kind: ErrRuntime, msg: "Attempt to modify a readonly table"},
		{name: "_G write", body: "_G.y = 1", kind: ErrRuntime, msg: "Script attempted to create global variable 'y'"},
		{name: "rawset _G", body: "rawset(_G, 'y', 1)", kind: ErrRuntime, msg: "readonly"},
		{name: "string library write", body: "string.upper = nil", kind: ErrRuntime, msg: "readonly"},
		{name: "math.pi write", body: "math.pi = 3", kind: ErrRuntime, msg: "readonly"},
		{name: "table library write", body: "table.sort = nil", kind: ErrRuntime, msg: "readonly"},
		{name: "cjson.null write", body: "cjson.null = 0", kind: ErrRuntime, msg: "readonly"},
		{name: "os.time write", body: "os.time = nil", kind: ErrRuntime, msg: "readonly"},
		{name: "rawset library", body: "rawset(string, 'len', nil)", kind: ErrRuntime, msg: "readonly"},
		{name: "table.insert library", body: "table.insert(math, 1)", kind: ErrRuntime, msg: "readonly"},
		{name: "table.remove library", body: "table.remove(string)", kind: ErrRuntime, msg: "readonly"},
		{name: "ctx write", body: "ctx.time = 0", kind: ErrRuntime, msg: "readonly"},
		{name: "ctx rawset", body: "rawset(ctx, 'id', 'x')", kind: ErrRuntime, msg: "readonly"},
		{name: "setmetatable _G", body: "setmetatable(_G, {})", kind: ErrRuntime, msg: "cannot change a protected metatable"},
		{name: "setmetatable library", body: "setmetatable(string, nil)", kind: ErrRuntime, msg: "cannot change a protected metatable"},
		{name: "setmetatable ctx", body: "setmetatable(ctx, {})", kind: ErrRuntime, msg: "cannot change a protected metatable"},
		{name: "string metatable __index", body: "getmetatable('').__index = {}", kind: ErrRuntime},
		{name: "string metatable field", body: "getmetatable('').upper = nil", kind: ErrRuntime},
		{name: "number metatable", body: "setmetatable(1, {__index = {}})", kind: ErrRuntime, msg: "table expected"},
		{name: "function metatable", body: "setmetatable(print, {})", kind: ErrRuntime, msg: "table expected"},
		{name: "loadstring bytecode", body: "return assert(loadstring('\\27LuaQ\\0'))", kind: ErrRuntime, msg: "binary chunks"},
		{name: "loadstring global write", body: "loadstring('z = 1')()", kind: ErrRuntime, msg: "create global variable 'z'"},
		{name: "loadstring loop", body: "loadstring('while true do end')()", kind: ErrBudget},
		{name: "os.time with arguments", body: "return os.time({year = 2020})", kind: ErrRuntime},
		{name: "math.random empty interval", body: "return math.random(0)", kind: ErrRuntime, msg: "interval is empty"},
		{name: "state function", body: "return 1, {f = function() end}", kind: ErrNotData, msg: "state.f: function is not data"},
		{name: "state nested function", body: "return 1, {items = {1, 2, {f = print}}}", kind: ErrNotData, msg: "state.items[3].f: function is not data"},
		{name: "state cjson.null", body: "return 1, {x = cjson.null}", kind: ErrNotData, msg: "state.x: userdata is not data"},
		{name: "state cycle", body: "local t = {} t.t = t return 1, t", kind: ErrNotData, msg: "cyclic"},
		{name: "state boolean key", body: "return 1, {[true] = 1}", kind: ErrNotData, msg: "boolean key is not data"},
		{name: "state too deep", body: "local t = {} for i = 1, 250 do t = {t} end return 1, t", kind: ErrNotData, msg: "nested deeper"},
		{name: "state too large", body: "return 1, string.rep('x', 70000)", kind: ErrStateSize},
		{name: "output too large", body: "return string.rep('x', 70000)", kind: ErrOutputSize},
		{name: "output cycle", body: "local t = {} t.t = t return t", kind: ErrNotData, msg: "output.t: cyclic"},
		{name: "event too large", body: "return 1", event: make([]byte, 70000), kind: ErrEventSize},
		{name: "query request too large", src: "function apply() end function query() return 1 end", fn: "query", event: make([]byte, 70000), kind: ErrEventSize},
		{name: "too many tags", src: "function apply() end function index() local t = {} for i = 1, 2000 do t[i] = 'tag' .. i end return t end", fn: "index", kind: ErrTags},
		{name: "tag too long", src: "function apply() end function index() return {string.rep('x', 2000)} end", fn: "index", kind: ErrTags},
		{name: "tag not a string", src: "function apply() end function index() return {'a', {}} end", fn: "index", kind: ErrTags},
		{name: "tags not a table", src: "function apply() end function index() return 'a' end", fn: "index", kind: ErrTags},
		{name: "query global write", src: "function apply() end function query() q = 1 end", fn: "query", kind: ErrRuntime, msg: "create global"},
		{name: "error table reply", body: "error({err = 'MYERR custom'})", kind: ErrRuntime, msg: "MYERR custom"},
	}...)
	return cs
}

func TestHostileScripts(t *testing.T) {
	for _, c := range hostileCases() {
		t.Run(c.name, func(t *testing.T) {
			l := testLimits()
			if c.limits != nil {
				c.limits(&l)
			}
			e := NewEngine(l)
			defer e.Close()
			start := time.Now()
			err := runHostile(e, c)
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			wantKind(t, err, c.kind, c.msg)
			// The same engine still runs normal handlers.
			checkCounter(t, e)
		})
	}
}

func runHostile(e *Engine, c hostileCase) error {
	h, err := e.Load([]byte(c.source()))
	if c.fn == "load" || err != nil {
		return err
	}
	event := c.event
	if event == nil {
		event = []byte("ev")
	}
	call := Call{Key: []byte("k"), ID: "1-1", Time: 1000, Accept: c.accept}
	switch c.fn {
	case "index":
		_, err = e.Index(h, nil, call)
	case "query":
		_, err = e.Query(h, nil, event, call)
	default:
		_, _, err = e.Apply(h, nil, event, call)
	}
	return err
}

func TestHostileCount(t *testing.T) {
	if n := len(hostileCases()); n < 30 {
		t.Fatalf("only %d hostile cases", n)
	}
}

// TestRemovedGlobals checks the allow-list directly.
func TestRemovedGlobals(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	for _, name := range []string{
		"io", "debug", "require", "module", "dofile", "loadfile", "load", "collectgarbage", "getfenv",
		"setfenv", "newproxy", "coroutine", "channel", "package", "gcinfo", "_GOPHER_LUA_VERSION",
		"string.dump", "math.randomseed", "os.execute", "os.getenv", "os.clock", "os.date", "os.exit",
	} {
		if got := mustRun(t, e, "return type("+name+")"); got != "nil" {
			t.Errorf("%s is %s", name, got)
		}
	}
	for _, name := range []string{
		"assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "rawequal", "rawget", "rawset",
		"select", "setmetatable", "getmetatable", "tonumber", "tostring", "type", "unpack", "print",
		"loadstring", "string.format", "table.concat", "math.floor", "os.time", "cjson.encode",
	} {
		if got := mustRun(t, e, "return type("+name+")"); got != "function" {
			t.Errorf("%s is %s", name, got)
		}
	}
	if got := mustRun(t, e, "return _VERSION"); got != "Lua 5.1" {
		t.Errorf("_VERSION = %s", got)
	}
}

// TestMemoryBound: exponential string growth is stopped by the heap bound
// when accepting (the instruction budget alone cannot see it).
func TestMemoryBound(t *testing.T) {
	cases := map[string]string{
		"concat doubling": "local s = 'x' for i = 1, 40 do s = s .. s end return #s",
		"table bomb":      "local t = {} for i = 1, 1e8 do t[i] = {i, i, i, i, i, i, i, i} end",
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			l := testLimits()
			l.InstructionBudget = 1 << 50
			l.Timeout = time.Minute
			l.MaxMemoryBytes = heapBytes(nil) + 64<<20
			e := NewEngine(l)
			defer e.Close()
			h, err := e.Load([]byte("function apply(event, state, ctx) " + body + " end"))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, _, err = e.Apply(h, nil, nil, Call{Accept: true})
			wantKind(t, err, ErrMemory, "")
			if !Transient(err) {
				t.Error("ErrMemory must be transient")
			}
			t.Logf("stopped after %v", time.Since(start))
			checkCounter(t, e)
		})
	}
}

// TestTimeoutCatchesSlowInstructions: a single VM instruction can be slow
// (#t scans trailing holes of gopher-lua's array part); the watcher notices
// the deadline from outside instead of waiting for the next budget check,
// which comes after 1024 VM instructions, about 400 such ones here. The
// bound is measured on the spot, not assumed: three times the time of the
// same setup and 20 of those instructions, so a loaded machine slows both
// alike. (Three, because the setup's 16 MB array is not always as quick
// to make twice; waiting for the budget check would take some twenty
// times the 20 instructions.)
func TestTimeoutCatchesSlowInstructions(t *testing.T) {
	const src = `function apply(event)
  local t = {} t[1e6] = 1 t[1e6] = nil
  for i = 1, tonumber(event) do local n = #t end
end`
	l := testLimits()
	l.InstructionBudget = 1 << 50
	l.Timeout = time.Hour
	calm := NewEngine(l)
	defer calm.Close()
	h, err := calm.Load([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, _, err := calm.Apply(h, nil, []byte("20"), Call{Accept: true}); err != nil {
		t.Fatal(err)
	}
	bound := time.Since(start)

	l.Timeout = 10 * time.Millisecond
	e := NewEngine(l)
	defer e.Close()
	if h, err = e.Load([]byte(src)); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, _, err = e.Apply(h, nil, []byte("1e9"), Call{Accept: true})
	wantKind(t, err, ErrTimeout, "")
	if d := time.Since(start); d > 3*bound {
		t.Errorf("timeout noticed after %v, longer than three times the setup and 20 slow instructions (%v)", d, bound)
	}
	checkCounter(t, e)
}

// TestWatcherConcurrent: with many calls entering and leaving on several
// goroutines, every runaway accepting call is still stopped by its
// deadline (the watcher starts and stops as calls come and go, and
// runners come and go with the pool), quick calls are never stopped, and
// the watcher ends once no call runs.
func TestWatcherConcurrent(t *testing.T) {
	l := testLimits()
	l.InstructionBudget = 1 << 50
	l.Timeout = 500 * time.Millisecond // quick calls stay far below it
	e := NewEngine(l)
	defer e.Close()
	h, err := e.Load([]byte(`function apply(event)
  if event == "spin" then
    local t = {} t[2e5] = 1 t[2e5] = nil
    for i = 1, 1e9 do local n = #t end
  end
  return 1
end`))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				ev := "quick"
				if (g+i)%10 == 0 {
					ev = "spin"
				}
				_, _, err := e.Apply(h, nil, []byte(ev), Call{Accept: true})
				if ev == "spin" {
					if !errors.Is(err, ErrTimeout) {
						t.Errorf("runaway call: %v", err)
					}
				} else if err != nil {
					t.Errorf("quick call: %v", err)
				}
				if i%7 == 0 {
					time.Sleep(3 * watchInterval) // let the watcher stop
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for e.watch.running.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the watcher still runs with no call")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWatcherNudgesEveryCall: calls past their deadline entering from
// many goroutines, on contexts registered before and after the watcher
// started, as it starts and stops, are each nudged.
func TestWatcherNudgesEveryCall(t *testing.T) {
	var w watcher
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 3))
			for i := range 200 {
				c := &budgetCtx{deadline: time.Now().Add(-time.Millisecond)}
				w.register(c)
				w.enter(c, 0)
				deadline := time.Now().Add(10 * time.Second)
				for !c.attention.Load() {
					if time.Now().After(deadline) {
						t.Errorf("goroutine %d call %d: never nudged", g, i)
						break
					}
					time.Sleep(50 * time.Microsecond)
				}
				w.exit(c)
				w.unregister(c)
				// Often leave the watcher with nothing to do, so that
				// calls enter while it stops.
				time.Sleep(time.Duration(r.IntN(int(2 * watchInterval))))
			}
		}()
	}
	wg.Wait()
	for deadline := time.Now().Add(5 * time.Second); w.running.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watcher still runs with no call")
		}
	}
}
