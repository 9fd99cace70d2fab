package e2e

import (
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A handler whose state is big next to its events, so events are logged
// after the snapshot instead of rewriting it: replay after a crash then
// has to use each event's own handler version.
const appendV1 = `
function apply(event, state, ctx)
  state = state or { pad = string.rep("p", 4000), log = {} }
  state.log[#state.log + 1] = "v1:" .. event
  return #state.log, state
end
function index(state, key) return { "v1" } end
`

const appendV2 = `
function apply(event, state, ctx)
  state = state or { pad = string.rep("p", 4000), log = {} }
  state.log[#state.log + 1] = "v2:" .. string.upper(event)
  return #state.log, state
end
function index(state, key) return { "v2", "len:" .. #state.log } end
`

func scriptList(t *testing.T, c *redis.Client) map[string]map[string]int64 {
	t.Helper()
	res, err := c.Do(ctx(t), "LEGION.SCRIPT", "LIST").Slice()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]int64{}
	for _, x := range res {
		m := map[string]any{}
		switch e := x.(type) {
		case map[any]any:
			for k, v := range e {
				m[k.(string)] = v
			}
		case []any:
			for i := 0; i+1 < len(e); i += 2 {
				m[e[i].(string)] = e[i+1]
			}
		}
		sha := m["sha"].(string)
		out[sha] = map[string]int64{"active": m["active"].(int64), "references": m["references"].(int64), "loaded_at": m["loaded_at"].(int64)}
	}
	return out
}

// TestReplayUsesEachEventsHandler: events logged under v1 and then v2 are
// replayed after kill -9 each with the version that accepted it.
func TestReplayUsesEachEventsHandler(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.client(t)
	v1 := loadScript(t, c, appendV1)
	for i := 0; i < 3; i++ {
		c.Do(ctx(t), "LEGION.APPLY", "doc", fmt.Sprintf("a%d", i))
	}
	v2 := loadScript(t, c, appendV2)
	for i := 0; i < 3; i++ {
		c.Do(ctx(t), "LEGION.APPLY", "doc", fmt.Sprintf("b%d", i))
	}
	want := `"log":["v1:a0","v1:a1","v1:a2","v2:B0","v2:B1","v2:B2"]`
	if got, _ := c.Do(ctx(t), "LEGION.GET", "doc").Text(); !strings.Contains(got, want) {
		t.Fatalf("before the crash: %s", got)
	}
	list := scriptList(t, c)
	if list[v1]["references"] == 0 || list[v2]["references"] == 0 || list[v2]["active"] != 1 || list[v1]["active"] != 0 {
		t.Fatalf("LEGION.SCRIPT LIST = %v (v1 %s, v2 %s)", list, v1, v2)
	}
	// Referenced versions survive SCRIPT FLUSH.
	if err := c.Do(ctx(t), "SCRIPT", "FLUSH").Err(); err != nil {
		t.Fatal(err)
	}
	if ex, _ := c.Do(ctx(t), "SCRIPT", "EXISTS", v1, v2, strings.Repeat("0", 40)).Slice(); fmt.Sprint(ex) != "[1 1 0]" {
		t.Fatalf("SCRIPT EXISTS after FLUSH = %v", ex)
	}

	s.restart(syscall.SIGKILL)
	c = s.client(t)
	if got, _ := c.Do(ctx(t), "LEGION.GET", "doc").Text(); !strings.Contains(got, want) {
		t.Fatalf("after kill -9 the replay gave %s", got)
	}
	info, _ := c.Info(ctx(t), "legion").Result()
	// The first event wrote the snapshot; the five after it were logged.
	if !strings.Contains(info, "deltas_replayed:5") {
		t.Fatalf("expected the five logged events to be replayed:\n%s", info)
	}
}

func TestHandlerVersionCommands(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.client(t)
	v1 := loadScript(t, c, appendV1)
	time.Sleep(5 * time.Millisecond)
	v2 := loadScript(t, c, appendV2)

	if src, err := c.Do(ctx(t), "LEGION.SCRIPT", "SHOW", v1).Text(); err != nil || src != appendV1 {
		t.Fatalf("SHOW v1: %v", err)
	}
	if err := c.Do(ctx(t), "LEGION.SCRIPT", "SHOW", strings.Repeat("a", 40)).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
		t.Fatalf("SHOW of an unknown sha: %v", err)
	}
	if err := c.Do(ctx(t), "LEGION.SCRIPT", "SHOW", "xyz").Err(); err == nil || !strings.Contains(err.Error(), "40 hex") {
		t.Fatalf("SHOW of a malformed sha: %v", err)
	}
	list := scriptList(t, c)
	if len(list) != 2 || list[v2]["active"] != 1 || list[v1]["loaded_at"] > list[v2]["loaded_at"] {
		t.Fatalf("LIST = %v", list)
	}

	// Roll back to v1 and forward again.
	if err := c.Do(ctx(t), "LEGION.SCRIPT", "USE", v1).Err(); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Do(ctx(t), "LEGION.DRYRUN", "k", "x").Slice(); !strings.Contains(fmt.Sprint(got), "v1:x") {
		t.Fatalf("after USE v1: %v", got)
	}
	if err := c.Do(ctx(t), "LEGION.SCRIPT", "USE", v2).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx(t), "LEGION.SCRIPT", "USE", strings.Repeat("b", 40)).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
		t.Fatalf("USE unknown: %v", err)
	}
	// Nothing references v1 and it is not active: FLUSH drops it, never v2.
	if err := c.Do(ctx(t), "SCRIPT", "FLUSH", "SYNC").Err(); err != nil {
		t.Fatal(err)
	}
	if ex, _ := c.Do(ctx(t), "SCRIPT", "EXISTS", v1, v2).Slice(); fmt.Sprint(ex) != "[0 1]" {
		t.Fatalf("SCRIPT EXISTS after FLUSH = %v", ex)
	}
	if err := c.Do(ctx(t), "SCRIPT", "FLUSH", "LATER").Err(); err == nil {
		t.Fatal("SCRIPT FLUSH LATER accepted")
	}
	// The active handler survives a restart after the flush.
	s.restart(syscall.SIGTERM)
	c = s.client(t)
	if n, err := c.Do(ctx(t), "LEGION.APPLY", "k", "x").Int64(); err != nil || n != 1 {
		t.Fatalf("apply after restart: %d %v", n, err)
	}
}

// TestReindexKeepsSearchesCorrect loads a handler with other tags over
// many partitions; while the background re-index runs, every scan of the
// index shows each partition with all of its old tags or all of its new
// ones, and at the end only the new ones.
func TestReindexKeepsSearchesCorrect(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	loadScript(t, c, `
function apply(event, state, ctx) return 1, { v = tonumber(event) } end
function index(state, key) return { "old:" .. state.v, "old:" .. (state.v % 2 == 0 and "even" or "odd") } end`)
	const keys = 1500
	p := c.Pipeline()
	for i := 0; i < keys; i++ {
		p.Do(ctx(t), "LEGION.APPLY", fmt.Sprintf("p%04d", i), fmt.Sprint(i))
	}
	if _, err := p.Exec(ctx(t)); err != nil {
		t.Fatal(err)
	}
	newSHA := loadScript(t, c, `
function apply(event, state, ctx) return 1, { v = tonumber(event) } end
function index(state, key) return { "new:" .. state.v, "new:" .. (state.v % 2 == 0 and "even" or "odd"), "new:all" } end`)

	check := func(final bool) {
		res, err := c.Do(ctx(t), "LEGION.SEARCH", "", "COUNT", 100000).Slice()
		if err != nil {
			t.Fatal(err)
		}
		tags := map[string][]string{}
		for _, x := range res {
			pr := x.([]any)
			tags[pr[1].(string)] = append(tags[pr[1].(string)], pr[0].(string))
		}
		if len(tags) != keys {
			t.Fatalf("%d partitions in the index, want %d", len(tags), keys)
		}
		for k, ts := range tags {
			sort.Strings(ts)
			var v int
			fmt.Sscanf(k, "p%d", &v)
			parity := map[bool]string{true: "even", false: "odd"}[v%2 == 0]
			old := fmt.Sprint([]string{fmt.Sprintf("old:%d", v), "old:" + parity})
			nw := []string{"new:" + parity, fmt.Sprintf("new:%d", v), "new:all"}
			sort.Strings(nw)
			got := fmt.Sprint(ts)
			if got != fmt.Sprint(nw) && (final || got != old) {
				t.Fatalf("%s is indexed as %v (old %v, new %v)", k, ts, old, nw)
			}
		}
	}
	for {
		check(false)
		info, _ := c.Info(ctx(t), "legion").Result()
		// Pass 1 indexed the (empty) store for the first handler.
		if strings.Contains(info, "reindex_completed:2") && strings.Contains(info, "reindex_target:"+newSHA) {
			break
		}
	}
	check(true)
	info, _ := c.Info(ctx(t), "legion").Result()
	if !strings.Contains(info, fmt.Sprintf("reindex_updated:%d", keys)) || !strings.Contains(info, "reindex_in_progress:0") {
		t.Fatalf("INFO legion after the re-index:\n%s", info)
	}
}

// TestQueryAndDryRunStoreNothing.
func TestQueryAndDryRunStoreNothing(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	loadScript(t, c, `
function apply(event, state, ctx)
  state = state or { n = 0 }
  state.n = state.n + tonumber(event)
  return state.n, state
end
function index(state, key) return { "n:" .. state.n } end
function query(request, state, ctx)
  if request == "mutate" then state.n = 999 return state.n end
  if request == "key" then return ctx.key end
  return state and state.n or -1
end`)
	c.Do(ctx(t), "LEGION.APPLY", "q", "5")
	before, _ := c.Do(ctx(t), "LEGION.INSPECT", "q").Text()
	if n, _ := c.Do(ctx(t), "LEGION.QUERY", "q", "n").Int64(); n != 5 {
		t.Fatalf("QUERY = %d", n)
	}
	if n, _ := c.Do(ctx(t), "LEGION.QUERY", "q", "mutate").Int64(); n != 999 {
		t.Fatalf("QUERY mutate = %d", n)
	}
	if k, _ := c.Do(ctx(t), "LEGION.QUERY", "q", "key").Text(); k != "q" {
		t.Fatalf("QUERY ctx.key = %q", k)
	}
	if n, _ := c.Do(ctx(t), "LEGION.QUERY", "never", "n").Int64(); n != -1 {
		t.Fatalf("QUERY of a missing key = %d", n)
	}
	dry, err := c.Do(ctx(t), "LEGION.DRYRUN", "q", "10").Slice()
	if err != nil || fmt.Sprint(dry) != `[15 {"n":15}]` {
		t.Fatalf("DRYRUN = %v, %v", dry, err)
	}
	if err := c.Do(ctx(t), "LEGION.DRYRUN", "q", "oops").Err(); err == nil || !strings.Contains(err.Error(), "apply") {
		t.Fatalf("DRYRUN of a failing event: %v", err)
	}
	if after, _ := c.Do(ctx(t), "LEGION.INSPECT", "q").Text(); after != before {
		t.Fatalf("QUERY or DRYRUN changed the partition:\n%s\n%s", before, after)
	}
	if hits, _ := c.Do(ctx(t), "LEGION.SEARCH", "n:", "COUNT", 10).Slice(); fmt.Sprint(hits) != "[[n:5 q]]" {
		t.Fatalf("index after QUERY/DRYRUN: %v", hits)
	}
	if n, _ := c.DBSize(ctx(t)).Result(); n != 1 {
		t.Fatalf("DRYRUN of a new key created it: DBSIZE %d", n)
	}
	c.Do(ctx(t), "LEGION.DRYRUN", "brand-new", "1")
	if n, _ := c.DBSize(ctx(t)).Result(); n != 1 {
		t.Fatalf("DRYRUN of a new key created it: DBSIZE %d", n)
	}
	// Without a query function: a clear error.
	loadScript(t, c, `function apply(e, s) return 1, s end`)
	if err := c.Do(ctx(t), "LEGION.QUERY", "q", "n").Err(); err == nil || !strings.Contains(err.Error(), "query") {
		t.Fatalf("QUERY without a query function: %v", err)
	}
}
