package e2e

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func errText(t testing.TB, c *redis.Client, args ...any) string {
	t.Helper()
	err := c.Do(ctx(t), args...).Err()
	if err == nil || err == redis.Nil {
		t.Fatalf("%v: no error (%v)", args, err)
	}
	return err.Error()
}

// TestErrorsChangeNothing provokes every error of the core commands and
// checks the wording and that no state or handler changed.
func TestErrorsChangeNothing(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)

	// Before any handler: a clear error naming SCRIPT LOAD.
	if got := errText(t, c, "LEGION.APPLY", "k", "incr"); !strings.Contains(got, "SCRIPT LOAD") {
		t.Fatalf("apply without handler: %q", got)
	}
	if got, err := c.Do(ctx(t), "LEGION.GET", "k").Result(); err != redis.Nil {
		t.Fatalf("GET of a never-written key = %v, %v; want nil", got, err)
	}

	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"GET", "foo", "bar"}, "ERR unknown command 'GET', with args beginning with: 'foo' 'bar' "},
		{[]any{"FLUSHALL"}, "ERR unknown command 'FLUSHALL', with args beginning with: "},
		{[]any{"LEGION.APPLY", "k"}, "ERR wrong number of arguments for 'legion.apply' command"},
		{[]any{"legion.get"}, "ERR wrong number of arguments for 'legion.get' command"},
		{[]any{"LEGION.GET", "a", "b"}, "ERR wrong number of arguments for 'legion.get' command"},
		{[]any{"LEGION.SEARCH"}, "ERR wrong number of arguments for 'legion.search' command"},
		{[]any{"LEGION.INSPECT"}, "ERR wrong number of arguments for 'legion.inspect' command"},
		{[]any{"SCRIPT", "LOAD"}, "ERR wrong number of arguments for 'script|load' command"},
		{[]any{"SCRIPT", "NOPE"}, "ERR unknown subcommand 'NOPE'. Try SCRIPT HELP."},
		{[]any{"ECHO"}, "ERR wrong number of arguments for 'echo' command"},
		{[]any{"LEGION.SEARCH", "t", "COUNT"}, "ERR syntax error"},
		{[]any{"LEGION.SEARCH", "t", "AFTER"}, "ERR syntax error"},
		{[]any{"LEGION.SEARCH", "t", "SIDEWAYS"}, "ERR syntax error"},
		{[]any{"LEGION.SEARCH", "t", "COUNT", "ten"}, "ERR value is not an integer or out of range"},
		{[]any{"LEGION.SEARCH", "t", "COUNT", "0"}, "ERR COUNT must be between 1 and 100000"},
		{[]any{"LEGION.SEARCH", "t", "COUNT", "100001"}, "ERR COUNT must be between 1 and 100000"},
	} {
		if got := errText(t, c, tc.args...); got != tc.want {
			t.Errorf("%q:\n got  %q\n want %q", tc.args, got, tc.want)
		}
	}

	sha := loadScript(t, c, counterLua(t))
	if out, err := c.Do(ctx(t), "LEGION.APPLY", "k", "incr").Int64(); err != nil || out != 1 {
		t.Fatalf("apply = %d, %v", out, err)
	}
	if got := errText(t, c, "LEGION.APPLY", "k", "incr", "SLOWLY"); got != "ERR syntax error" {
		t.Fatalf("bad mode: %q", got)
	}
	inspect := func() string {
		v, err := c.Do(ctx(t), "LEGION.INSPECT", "k").Text()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := inspect()

	// Scripts that do not compile or lack apply: refused with the Lua
	// message and line; the active handler stays.
	for _, tc := range []struct{ src, want string }{
		{"function apply(e, s)\n  return 1,\nend", "handler:3"},
		{"function apply(e, s) return 1, s end\nfunction index(s) return {} end\nx = = 1", "handler:3"},
		{"function notapply() end", "apply"},
		{"apply = 42", "apply"},
		{"error('top-level failure')", "top-level failure"},
	} {
		got := errText(t, c, "SCRIPT", "LOAD", tc.src)
		if !strings.HasPrefix(got, "ERR ") || !strings.Contains(got, tc.want) {
			t.Errorf("SCRIPT LOAD %q: %q, want an ERR mentioning %q", tc.src, got, tc.want)
		}
	}
	if out, err := c.Do(ctx(t), "LEGION.APPLY", "k2", "incr").Int64(); err != nil || out != 1 {
		t.Fatalf("the active handler changed after refused loads: %d, %v", out, err)
	}

	// An error raised by apply stores nothing.
	got := errText(t, c, "LEGION.APPLY", "k", "explode")
	if !strings.Contains(got, "unknown event 'explode'") || !strings.Contains(got, "handler:") {
		t.Fatalf("apply error: %q", got)
	}
	if after := inspect(); after != before {
		t.Fatalf("a failed apply changed the power state:\n%s\n%s", before, after)
	}
	if out, err := c.Do(ctx(t), "LEGION.APPLY", "k", "incr").Int64(); err != nil || out != 2 {
		t.Fatalf("apply after a failed one = %d, %v; want 2", out, err)
	}

	// An index function that fails refuses the event too.
	bad := "function apply(e, s) return e, { v = e } end\nfunction index(s) if s.v == 'bad' then error('no tags for bad') end return { s.v } end"
	loadScript(t, c, bad)
	if _, err := c.Do(ctx(t), "LEGION.APPLY", "j", "good").Result(); err != nil {
		t.Fatal(err)
	}
	if got := errText(t, c, "LEGION.APPLY", "j", "bad"); !strings.Contains(got, "no tags for bad") {
		t.Fatalf("index error: %q", got)
	}
	if v, _ := c.Do(ctx(t), "LEGION.GET", "j").Text(); v != `{"v":"good"}` {
		t.Fatalf("state after failed index = %s", v)
	}
	_ = sha

	// The connection survived all of it.
	if pong, err := c.Ping(ctx(t)).Result(); err != nil || pong != "PONG" {
		t.Fatalf("PING = %q, %v", pong, err)
	}
}
