package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// hostileApply wraps an attack in a handler that otherwise counts; the
// attack runs when the event is "attack".
func hostileApply(attack, index string) string {
	if index == "" {
		index = `return { "n:" .. state.n }`
	}
	return fmt.Sprintf(`
function apply(event, state, ctx)
  state = state or { n = 0 }
  if event == "attack" then
    %s
  end
  state.n = state.n + 1
  return state.n, state
end

function index(state, key)
  %s
end
`, attack, index)
}

// TestHostileHandlers: each handler below tries to hang, crash, exhaust or
// escape the server, at load or when applying. Each is answered with an
// error, the server answers PING at once afterwards, and the victim
// partition's power state is byte-identical before and after.
func TestHostileHandlers(t *testing.T) {
	s := startServer(t, "", "--script-max-event-bytes", "1mb")
	c := s.client(t, func(o *redis.Options) { o.ReadTimeout = 30 * time.Second })
	pinger := s.client(t, func(o *redis.Options) { o.PoolSize = 1 })

	loadCases := []struct {
		name, src, want string
	}{
		{"endless loop at load", `while true do end`, `instruction budget exceeded|timeout`},
		{"endless recursion at load", `local function f(n) return f(n + 1) end f(1)`, `instruction budget exceeded|timeout`},
		{"deep recursion at load", `local function r() return 1 + r() end r()`, `call depth exceeded`},
		{"huge string at load", `local s = string.rep("x", 2^40)`, `string too large`},
		{"syntax error", "function apply(e, s)\n  return 1,\nend", `handler:3:`},
		{"no apply", `function index(s) return {} end`, `apply`},
		{"apply is not a function", `apply = "yes"`, `apply`},
		{"error at load", `error("refusing to load")`, `refusing to load`},
		{"io at load", `io.write("x")`, `attempt to index`},
		{"bytecode through loadstring", `local f = assert(loadstring("\27LuaQ\0\1\4")) function apply(e, s) return 1, s end`, `binary|bytecode|string|handler`},
	}
	for _, lc := range loadCases {
		err := c.Do(ctx(t), "SCRIPT", "LOAD", lc.src).Err()
		if err == nil || !regexp.MustCompile(lc.want).MatchString(err.Error()) {
			t.Errorf("load %s: %v, want an error matching %q", lc.name, err, lc.want)
		}
		if err := pinger.Ping(ctx(t)).Err(); err != nil {
			t.Fatalf("after load %s: PING: %v", lc.name, err)
		}
	}

	applyCases := []struct {
		name, attack, index, want string
		event                     string
	}{
		{name: "endless loop", attack: `while true do end`, want: `instruction budget exceeded|timeout`},
		{name: "endless repeat", attack: `repeat until false`, want: `instruction budget exceeded|timeout`},
		{name: "budget swallowed by pcall", attack: `pcall(function() while true do end end)`, want: `instruction budget exceeded|timeout`},
		{name: "deep recursion", attack: `local function r() return 1 + r() end r()`, want: `call depth exceeded`},
		{name: "recursion through __index", attack: `local t = setmetatable({}, {__index = function(t, k) return t[k] end}) local x = t.x`, want: `call depth exceeded`},
		{name: "string.rep bomb", attack: `local s = string.rep("x", 2^31)`, want: `string too large`},
		{name: "concatenation doubling", attack: `local s = "x" for i = 1, 40 do s = s .. s end`, want: `timeout|memory|string too large|instruction budget`},
		{name: "table bomb", attack: `local t = {} for i = 1, 1e9 do t[i] = i end`, want: `timeout|memory|instruction budget`},
		{name: "nested table bomb", attack: `local t = {} for i = 1, 1e8 do t = { t, t } end`, want: `timeout|memory|instruction budget`},
		{name: "table.concat bomb", attack: `local t = {} for i = 1, 100 do t[i] = string.rep("y", 2^20) end local s = table.concat({table.concat(t), table.concat(t)})`, want: `string too large|instruction budget|timeout|memory`},
		{name: "gsub bomb", attack: `local s = string.gsub(string.rep("a", 2^20), "a", string.rep("b", 1000))`, want: `string too large|instruction budget|timeout`},
		{name: "format width bomb", attack: `local s = string.format("%999999999d", 1)`, want: `invalid|string too large|format`},
		{name: "pattern backtracking", attack: `local x = string.find(string.rep("a", 100000), ".-.-.-.-.-b")`, want: `instruction budget exceeded|timeout`},
		{name: "io", attack: `io.open("/etc/passwd")`, want: `attempt to index`},
		{name: "os.execute", attack: `os.execute("true")`, want: `attempt to call`},
		{name: "os.exit", attack: `os.exit(1)`, want: `attempt to call`},
		{name: "os.getenv", attack: `local h = os.getenv("HOME")`, want: `attempt to call`},
		{name: "require", attack: `require("os")`, want: `attempt to call`},
		{name: "dofile", attack: `dofile("/etc/passwd")`, want: `attempt to call`},
		{name: "loadfile", attack: `loadfile("/etc/passwd")`, want: `attempt to call`},
		{name: "load", attack: `load(function() return nil end)`, want: `attempt to call`},
		{name: "debug", attack: `debug.getinfo(1)`, want: `attempt to index`},
		{name: "collectgarbage", attack: `collectgarbage()`, want: `attempt to call`},
		{name: "setfenv", attack: `setfenv(1, {})`, want: `attempt to call`},
		{name: "getfenv", attack: `getfenv(1)`, want: `attempt to call`},
		{name: "coroutine", attack: `coroutine.create(function() end)`, want: `attempt to index`},
		{name: "math.randomseed", attack: `math.randomseed(42)`, want: `attempt to call`},
		{name: "string.dump", attack: `string.dump(apply)`, want: `attempt to call`},
		{name: "global write", attack: `leaked = 1`, want: `Script attempted to create global variable 'leaked'`},
		{name: "overwrite a global function", attack: `index = nil`, want: `readonly|global`},
		{name: "library write", attack: `string.upper = nil`, want: `readonly table`},
		{name: "rawset on the globals", attack: `rawset(_G, "x", 1)`, want: `readonly|protected|attempt`},
		{name: "ctx write", attack: `ctx.key = "someone else"`, want: `readonly table`},
		{name: "string metatable", attack: `getmetatable("").__index = {}`, want: `attempt to index|readonly`},
		{name: "setmetatable on a library", attack: `setmetatable(string, {})`, want: `protected|readonly|cannot`},
		{name: "bytecode in apply", attack: `local f = loadstring("\27LuaQ") if f then f() else error("no bytecode") end`, want: `no bytecode`},
		{name: "function in state", attack: `state.f = function() end`, want: `state.f: function is not data`},
		{name: "cyclic state", attack: `state.me = state`, want: `state.me: cyclic table is not data`},
		{name: "userdata in state", attack: `state.null = cjson.null`, want: `state.null: userdata is not data`},
		{name: "boolean key in state", attack: `state[true] = 1`, want: `boolean key is not data`},
		{name: "state too large", attack: `state.blob = string.rep("z", 17 * 2^20)`, want: `state too large`},
		{name: "too many tags", attack: `state.attack = true`, index: `if state.attack then local t = {} for i = 1, 5000 do t[i] = "t" .. i end return t end return { "n:" .. state.n }`, want: `tags`},
		{name: "tag too long", attack: `state.attack = true`, index: `if state.attack then return { string.rep("t", 5000) } end return { "n:" .. state.n }`, want: `tag`},
		{name: "tag of the wrong type", attack: `state.attack = true`, index: `if state.attack then return { {} } end return { "n:" .. state.n }`, want: `tag`},
		{name: "index loops", attack: `state.attack = true`, index: `if state.attack then while true do end end return { "n:" .. state.n }`, want: `instruction budget exceeded|timeout`},
		{name: "user error reply", attack: `error({ err = "CUSTOM refused by the handler" })`, want: `^CUSTOM refused by the handler$`},
		{name: "runtime error names function and line", attack: `local x = nil + 1`, want: `^ERR script: apply: handler:5: cannot perform add operation`},
		{name: "oversized event", event: strings.Repeat("e", 2<<20), want: `event too large|Protocol|too large`},
	}
	if len(loadCases)+len(applyCases) < 30 {
		t.Fatalf("only %d hostile cases", len(loadCases)+len(applyCases))
	}
	for i, ac := range applyCases {
		if err := c.Do(ctx(t), "SCRIPT", "LOAD", hostileApply(ac.attack, ac.index)).Err(); err != nil {
			t.Fatalf("%s: loading the handler: %v", ac.name, err)
		}
		victim := fmt.Sprintf("victim:%d", i)
		for j := 0; j < 2; j++ {
			if err := c.Do(ctx(t), "LEGION.APPLY", victim, "normal").Err(); err != nil {
				t.Fatalf("%s: normal event: %v", ac.name, err)
			}
		}
		before, _ := c.Do(ctx(t), "LEGION.INSPECT", victim).Text()
		ev := ac.event
		if ev == "" {
			ev = "attack"
		}
		err := c.Do(ctx(t), "LEGION.APPLY", victim, ev).Err()
		if err == nil || !regexp.MustCompile(ac.want).MatchString(err.Error()) {
			t.Errorf("%s: %v, want an error matching %q", ac.name, err, ac.want)
		}
		if err := pinger.Ping(ctx(t)).Err(); err != nil {
			t.Fatalf("%s: PING afterwards: %v", ac.name, err)
		}
		after, _ := c.Do(ctx(t), "LEGION.INSPECT", victim).Text()
		if before != after {
			t.Errorf("%s: the victim changed:\n%s\n%s", ac.name, before, after)
		}
		if n, err := c.Do(ctx(t), "LEGION.APPLY", victim, "normal").Int64(); err != nil || n != 3 {
			t.Errorf("%s: the next normal event: %d, %v", ac.name, n, err)
		}
	}
	// After all of it the server is healthy and the victims are intact.
	if n, err := c.DBSize(ctx(t)).Result(); err != nil || n != int64(len(applyCases)) {
		t.Fatalf("DBSIZE = %d, %v", n, err)
	}
	if info, err := c.Info(ctx(t), "legion").Result(); err != nil || !strings.Contains(info, "script_errors:") {
		t.Fatalf("INFO: %v", err)
	}
}
