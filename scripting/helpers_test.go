package scripting

import (
	"errors"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

const counterSrc = `
function apply(event, state, ctx)
  state = state or { count = 0 }
  if event == "incr" then state.count = state.count + 1 end
  return state.count, state
end
function index(state, key)
  return { "count:" .. state.count }
end
function query(request, state, ctx)
  return state and state.count or 0
end
`

// prelude gives test handlers show(...), which renders any values as text.
const prelude = `
local function show(...)
  local t = {}
  for i = 1, select('#', ...) do t[i] = tostring((select(i, ...))) end
  return table.concat(t, ",")
end
`

// testLimits are small enough that hostile scripts fail fast under -race.
func testLimits() Limits {
	l := DefaultLimits()
	l.InstructionBudget = 2_000_000
	l.MaxStringBytes = 1 << 20
	l.MaxStateBytes = 64 << 10
	l.MaxOutputBytes = 64 << 10
	l.MaxEventBytes = 64 << 10
	l.Timeout = 5 * 1e9
	return l
}

// luaValue evaluates a Lua expression (no libraries) in a scratch state.
func luaValue(t testing.TB, L *lua.LState, expr string) lua.LValue {
	t.Helper()
	if err := L.DoString("return " + expr); err != nil {
		t.Fatalf("eval %q: %v", expr, err)
	}
	v := L.Get(-1)
	L.Pop(1)
	return v
}

// runBody loads a handler whose apply runs body and returns its output as
// text: strings as themselves, anything else as JSON.
func runBody(t testing.TB, e *Engine, body string) (string, error) {
	t.Helper()
	h, err := e.Load([]byte(prelude + "function apply(event, state, ctx)\n" + body + "\nend\n"))
	if err != nil {
		return "", err
	}
	_, out, err := e.Apply(h, nil, []byte("ev"), Call{Key: []byte("k"), ID: "1-1", Time: 1_700_000_000_123})
	if err != nil {
		return "", err
	}
	return outputText(t, out), nil
}

func outputText(t testing.TB, out []byte) string {
	t.Helper()
	if len(out) > 0 && out[0] == tagStr {
		d := decoder{b: out}
		tok, err := d.next()
		if err != nil {
			t.Fatal(err)
		}
		return string(tok.s)
	}
	j, err := AppendJSON(nil, out)
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

func mustRun(t testing.TB, e *Engine, body string) string {
	t.Helper()
	s, err := runBody(t, e, body)
	if err != nil {
		t.Fatalf("%s\n=> %v", body, err)
	}
	return s
}

func wantKind(t testing.TB, err error, kind error, msgPart string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("got %v, want %v", err, kind)
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("%v is not *Error", err)
	}
	if msgPart != "" && !strings.Contains(se.Msg, msgPart) {
		t.Fatalf("message %q does not contain %q", se.Msg, msgPart)
	}
}

// checkCounter verifies that e still runs a normal handler correctly.
func checkCounter(t testing.TB, e *Engine) {
	t.Helper()
	h, err := e.Load([]byte(counterSrc))
	if err != nil {
		t.Fatalf("counter load: %v", err)
	}
	var st []byte
	for i := 1; i <= 3; i++ {
		ns, out, err := e.Apply(h, st, []byte("incr"), Call{Key: []byte("k"), ID: "x"})
		if err != nil {
			t.Fatalf("counter apply: %v", err)
		}
		if got := outputText(t, out); got != strings.Repeat("", 0)+itoa(i) {
			t.Fatalf("counter output %s, want %d", got, i)
		}
		st = ns
	}
}

func itoa(i int) string { return numberToString(float64(i)) }
