package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

const password = "s3cret-Pass"

// runExternal runs a client scenario program against a fresh server
// started with --requirepass.
func runExternal(t *testing.T, name string, args ...string) {
	t.Helper()
	s := startServer(t, "", "--requirepass", password)
	handler, err := filepath.Abs("../scripts/counter.lua")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LEGION_ADDR="+s.Addr, "LEGION_PASSWORD="+password, "LEGION_HANDLER="+handler)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s\nserver log:\n%s", name, args, err, out, s.Log())
	}
	t.Logf("%s", bytes.TrimSpace(out))
}

// TestClientRedisPy runs the scenario with redis-py from Debian's
// python3-redis (installed by make deps for /usr/bin/python3).
func TestClientRedisPy(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import redis").Run(); err != nil {
		t.Fatalf("redis-py is not installed for /usr/bin/python3 (run make deps): %v", err)
	}
	runExternal(t, "/usr/bin/python3", "clients/scenario.py")
}

// TestClientIORedis runs the scenario with ioredis from npm.
func TestClientIORedis(t *testing.T) {
	if _, err := os.Stat("clients/node/node_modules/ioredis"); err != nil {
		t.Fatalf("ioredis is not installed in e2e/clients/node (run make deps): %v", err)
	}
	runExternal(t, "node", "clients/node/scenario.js")
}

// TestClientGoRedis runs the scenario with go-redis in RESP2 and RESP3.
func TestClientGoRedis(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			s := startServer(t, "", "--requirepass", password)
			anon := s.client(t, func(o *redis.Options) { o.Protocol = proto })
			if err := anon.Do(ctx(t), "LEGION.GET", "x").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
				t.Fatalf("unauthenticated command: %v", err)
			}
			bad := s.client(t, func(o *redis.Options) { o.Protocol = proto; o.Password = "wrong" })
			if err := bad.Ping(ctx(t)).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
				t.Fatalf("wrong password: %v", err)
			}
			c := s.client(t, func(o *redis.Options) { o.Protocol = proto; o.Password = password; o.ClientName = "go-redis-scenario" })
			goRedisScenario(t, c)

			// The handshake go-redis made is visible in CLIENT LIST.
			list, err := c.ClientList(ctx(t)).Result()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(list, "name=go-redis-scenario") || !strings.Contains(list, fmt.Sprintf("resp=%d", proto)) || !strings.Contains(list, "lib-name=go-redis") {
				t.Fatalf("CLIENT LIST = %q", list)
			}
			// Lua outputs convert by Redis's rules for the chosen protocol.
			loadScript(t, c, `
function apply(event, state, ctx)
  if event == "map" then return { map = { a = 1, b = "two" } }, state end
  if event == "set" then return { set = { x = true, y = true } }, state end
  if event == "double" then return { double = 1.5 }, state end
  if event == "bool" then return true, state end
  if event == "status" then return { ok = "FINE" }, state end
  if event == "nested" then return { 1, "two", { 3 } }, state end
  return nil, state
end`)
			do := func(ev string) any {
				v, err := c.Do(ctx(t), "LEGION.APPLY", "conv", ev).Result()
				if err != nil && err != redis.Nil {
					t.Fatalf("%s: %v", ev, err)
				}
				return v
			}
			want := map[string]string{
				"double": "1.5", "status": "FINE", "nested": "[1 two [3]]", "nil": "<nil>",
			}
			if proto == 3 {
				want["map"], want["set"], want["bool"] = "map[a:1 b:two]", "[x y]", "true"
			} else {
				want["map"], want["set"], want["bool"] = "[a 1 b two]", "[x y]", "1"
			}
			for ev, w := range want {
				got := do(ev)
				if ev == "set" {
					s := got.([]any)
					sort.Slice(s, func(i, j int) bool { return fmt.Sprint(s[i]) < fmt.Sprint(s[j]) })
				}
				if fmt.Sprint(got) != w {
					t.Errorf("RESP%d %s: got %v (%T), want %s", proto, ev, got, got, w)
				}
			}
			if proto == 3 {
				if v, ok := do("double").(float64); !ok || v != 1.5 {
					t.Errorf("RESP3 double is %T %v", do("double"), do("double"))
				}
				if _, ok := do("map").(map[any]any); !ok {
					t.Errorf("RESP3 map is %T", do("map"))
				}
			}
		})
	}
}

func goRedisScenario(t *testing.T, c *redis.Client) {
	loadScript(t, c, counterLua(t))
	for i := 0; i < 20; i++ {
		if n, err := c.Do(ctx(t), "LEGION.APPLY", fmt.Sprintf("go:%d", i), "incr").Int64(); err != nil || n != 1 {
			t.Fatalf("apply = %d, %v", n, err)
		}
	}
	if n, _ := c.Do(ctx(t), "LEGION.APPLY", "go:0", "incr", "FAST").Int64(); n != 2 {
		t.Fatalf("FAST apply = %d", n)
	}
	p := c.Pipeline()
	var cmds []*redis.Cmd
	for i := 0; i < 1000; i++ {
		cmds = append(cmds, p.Do(ctx(t), "LEGION.APPLY", fmt.Sprintf("pipe:%d", i%100), "incr"))
	}
	if _, err := p.Exec(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		if n, err := cmd.Int64(); err != nil || n != int64(i/100+1) {
			t.Fatalf("pipelined reply %d = %d, %v", i, n, err)
		}
	}
	var seen []string
	page, err := c.Do(ctx(t), "LEGION.SEARCH", "count:", "COUNT", 7).Slice()
	for err == nil && len(page) > 0 {
		for _, x := range page {
			seen = append(seen, fmt.Sprint(x))
		}
		last := page[len(page)-1].([]any)
		page, err = c.Do(ctx(t), "LEGION.SEARCH", last[0], "AFTER", last[1], "COUNT", 7).Slice()
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 120 || seen[0] != "[count:1 go:1]" || seen[len(seen)-1] != "[count:2 go:0]" {
		t.Fatalf("paged search: %d records, first %v last %v", len(seen), seen[0], seen[len(seen)-1])
	}
	for _, e := range []struct {
		args []any
		want string
	}{
		{[]any{"NOSUCH", "a"}, "ERR unknown command 'NOSUCH', with args beginning with: 'a' "},
		{[]any{"LEGION.APPLY", "k"}, "ERR wrong number of arguments for 'legion.apply' command"},
		{[]any{"LEGION.SEARCH", "t", "COUNT", "x"}, "ERR value is not an integer or out of range"},
	} {
		if err := c.Do(ctx(t), e.args...).Err(); err == nil || err.Error() != e.want {
			t.Fatalf("%v: %v, want %q", e.args, err, e.want)
		}
	}
	if err := c.Do(ctx(t), "LEGION.APPLY", "go:1", "bogus").Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR script: apply: handler:") {
		t.Fatalf("script error: %v", err)
	}
	if v, err := c.Do(ctx(t), "LEGION.GET", "missing").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("missing key: %v %v", v, err)
	}
	if n, err := c.DBSize(ctx(t)).Result(); err != nil || n != 120 {
		t.Fatalf("DBSIZE = %d, %v", n, err)
	}
	if name, err := c.ClientGetName(ctx(t)).Result(); err != nil || name != "go-redis-scenario" {
		t.Fatalf("CLIENT GETNAME = %q, %v", name, err)
	}
}

// TestClientRedisCli runs the scenario with redis-cli, in RESP2, RESP3 and
// JSON output modes, with --pipe for the pipeline.
func TestClientRedisCli(t *testing.T) {
	s := startServer(t, "", "--requirepass", password)
	if out := s.cli(t, "LEGION.GET", "x"); !strings.Contains(out, "NOAUTH") {
		t.Fatalf("unauthenticated: %q", out)
	}
	if out := s.cli(t, "-a", "wrong", "--no-auth-warning", "PING"); !strings.Contains(out, "WRONGPASS") {
		t.Fatalf("wrong password: %q", out)
	}
	cli := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(s.cli(t, append([]string{"-a", password, "--no-auth-warning"}, args...)...))
	}
	if sha := cli("SCRIPT", "LOAD", counterLua(t)); len(sha) != 40 {
		t.Fatalf("SCRIPT LOAD: %q", sha)
	}
	for i := 0; i < 20; i++ {
		if out := cli("LEGION.APPLY", fmt.Sprintf("cli:%d", i), "incr"); out != "1" {
			t.Fatalf("apply: %q", out)
		}
	}
	// 1000 pipelined commands through --pipe.
	var proto bytes.Buffer
	fmt.Fprintf(&proto, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password)
	for i := 0; i < 1000; i++ {
		key := fmt.Sprintf("pipe:%d", i%100)
		fmt.Fprintf(&proto, "*3\r\n$12\r\nLEGION.APPLY\r\n$%d\r\n%s\r\n$4\r\nincr\r\n", len(key), key)
	}
	host, port := splitAddr(t, s.Addr)
	pipe := exec.Command("redis-cli", "-h", host, "-p", port, "--pipe")
	pipe.Stdin = &proto
	out, err := pipe.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "errors: 0, replies: 1001") {
		t.Fatalf("redis-cli --pipe: %v\n%s", err, out)
	}
	if out := cli("LEGION.GET", "pipe:42"); out != `{"count":10}` {
		t.Fatalf("after the pipeline: %q", out)
	}
	// Paging from the shell.
	page := cli("LEGION.SEARCH", "count:1", "EXACT", "COUNT", "5")
	if strings.Count(page, "\n") != 9 || !strings.HasPrefix(page, "count:1\ncli:0\n") {
		t.Fatalf("first page: %q", page)
	}
	next := cli("LEGION.SEARCH", "count:1", "AFTER", "cli:13", "EXACT", "COUNT", "100")
	if strings.Count(next, "count:1\n") != 14 { // cli:14..cli:19, then cli:2..cli:9 (bytewise order)
		t.Fatalf("page after cli:13: %q", next)
	}
	// Errors.
	if out := cli("NOSUCH", "a"); out != "ERR unknown command 'NOSUCH', with args beginning with: 'a'" {
		t.Fatalf("unknown: %q", out)
	}
	if out := cli("LEGION.APPLY", "cli:1", "bogus"); !strings.HasPrefix(out, "ERR script: apply: handler:") {
		t.Fatalf("script error: %q", out)
	}
	// RESP3 and JSON output.
	if out := cli("-3", "HELLO", "3"); !strings.Contains(out, "proto") || !strings.Contains(out, "3") || !strings.Contains(out, "legion") {
		t.Fatalf("HELLO 3: %q", out)
	}
	if out := cli("-3", "LEGION.GET", "missing"); out != "(nil)" && out != "" {
		t.Fatalf("RESP3 null: %q", out)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(cli("-3", "--json", "HELLO", "3")), &doc); err != nil || doc["server"] != "legion" || doc["proto"] != float64(3) {
		t.Fatalf("HELLO 3 as JSON: %v %v", doc, err)
	}
	var hits [][]string
	if err := json.Unmarshal([]byte(cli("--json", "LEGION.SEARCH", "count:10", "EXACT", "COUNT", "3")), &hits); err != nil || len(hits) != 3 || hits[0][1] != "pipe:0" {
		t.Fatalf("search as JSON: %v %v", hits, err)
	}
	if out := cli("DBSIZE"); out != "120" {
		t.Fatalf("DBSIZE = %q", out)
	}
}
