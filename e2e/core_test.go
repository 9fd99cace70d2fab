package e2e

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func loadScript(t testing.TB, c *redis.Client, src string) string {
	t.Helper()
	sha, err := c.Do(ctx(t), "SCRIPT", "LOAD", src).Text()
	if err != nil {
		t.Fatalf("SCRIPT LOAD: %v", err)
	}
	sum := sha1.Sum([]byte(src))
	if want := hex.EncodeToString(sum[:]); sha != want {
		t.Fatalf("SCRIPT LOAD returned %s, want the source's SHA1 %s", sha, want)
	}
	return sha
}

// TestConcurrentCounters: 20 clients × 50 events over 100 keys at once.
// Every key's outputs are exactly 1..n (no lost or doubled increment), each
// client sees its outputs per key strictly increasing, and the final state
// and tags agree with the number of events.
func TestConcurrentCounters(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	loadScript(t, c, counterLua(t))

	const clients, perClient, keys = 20, 50, 100
	seed := time.Now().UnixNano()
	type result struct {
		key string
		out int64
	}
	results := make([][]result, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed + int64(g)))
			for i := 0; i < perClient; i++ {
				key := fmt.Sprintf("counter:%d", r.Intn(keys))
				out, err := c.Do(ctx(t), "LEGION.APPLY", key, "incr").Int64()
				if err != nil {
					errs <- fmt.Errorf("client %d: %v", g, err)
					return
				}
				results[g] = append(results[g], result{key, out})
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	seen := map[string][]int64{}
	for g, rs := range results {
		last := map[string]int64{}
		for _, r := range rs {
			if r.out <= last[r.key] {
				t.Fatalf("seed %d: client %d saw %s go from %d to %d", seed, g, r.key, last[r.key], r.out)
			}
			last[r.key] = r.out
			seen[r.key] = append(seen[r.key], r.out)
		}
	}
	total := 0
	for key, outs := range seen {
		sort.Slice(outs, func(i, j int) bool { return outs[i] < outs[j] })
		for i, o := range outs {
			if o != int64(i+1) {
				t.Fatalf("seed %d: %s outputs %v are not 1..%d", seed, key, outs, len(outs))
			}
		}
		total += len(outs)
		state, err := c.Do(ctx(t), "LEGION.GET", key).Text()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"count":%d}`, len(outs)); state != want {
			t.Fatalf("LEGION.GET %s = %s, want %s", key, state, want)
		}
		hits, err := c.Do(ctx(t), "LEGION.SEARCH", fmt.Sprintf("count:%d", len(outs)), "EXACT", "COUNT", "1000").Slice()
		if err != nil {
			t.Fatal(err)
		}
		if !containsHit(hits, fmt.Sprintf("count:%d", len(outs)), key) {
			t.Fatalf("search for count:%d misses %s: %v", len(outs), key, hits)
		}
	}
	if total != clients*perClient {
		t.Fatalf("%d events answered, want %d", total, clients*perClient)
	}
}

func containsHit(hits []any, tag, key string) bool {
	for _, h := range hits {
		pair := h.([]any)
		if pair[0] == tag && pair[1] == key {
			return true
		}
	}
	return false
}

// tagHandlers are handlers whose tags are a function of the event: the
// event "a,b,c" sets the state to those words and each index variant maps
// them to tags differently.
var tagHandlers = []struct {
	name  string
	index string
	tags  func(words []string, key string) []string
}{
	{"words", `return state.words`, func(w []string, _ string) []string { return w }},
	{"prefixed", `local t = {} for i, w in ipairs(state.words) do t[i] = "p:" .. w end return t`,
		func(w []string, _ string) []string {
			var t []string
			for _, x := range w {
				t = append(t, "p:"+x)
			}
			return t
		}},
	{"with-key-and-dups", `local t = {key, key} for _, w in ipairs(state.words) do t[#t+1] = w t[#t+1] = w end return t`,
		func(w []string, key string) []string { return append([]string{key}, w...) }},
	{"none", `return {}`, func([]string, string) []string { return nil }},
	{"count", `return { "n:" .. #state.words }`, func(w []string, _ string) []string { return []string{fmt.Sprintf("n:%d", len(w))} }},
}

const tagApply = `
function apply(event, state, ctx)
  local words = {}
  for w in string.gmatch(event, "[^,]+") do words[#words + 1] = w end
  return #words, { words = words }
end
`

type rec struct{ tag, key string }

func sortRecs(r []rec) {
	sort.Slice(r, func(i, j int) bool {
		if r[i].tag != r[j].tag {
			return r[i].tag < r[j].tag
		}
		return r[i].key < r[j].key
	})
}

// TestSearchMatchesModel checks LEGION.SEARCH, in every option form and
// with paging across tag boundaries, against a sorted model of the
// (tag, key) records each handler's tags imply.
func TestSearchMatchesModel(t *testing.T) {
	seed := time.Now().UnixNano()
	r := rand.New(rand.NewSource(seed))
	vocab := []string{"a", "ab", "b", "color:blue", "color:red", "z", "é", "x y"}
	for _, h := range tagHandlers {
		t.Run(h.name, func(t *testing.T) {
			s := startServer(t, "")
			c := s.client(t)
			loadScript(t, c, tagApply+"\nfunction index(state, key)\n"+h.index+"\nend\n")
			current := map[string][]string{}
			for i := 0; i < 300; i++ {
				key := fmt.Sprintf("k%02d", r.Intn(60))
				var words []string
				for _, v := range vocab {
					if r.Intn(3) == 0 {
						words = append(words, v)
					}
				}
				if len(words) == 0 {
					words = []string{"a"}
				}
				if _, err := c.Do(ctx(t), "LEGION.APPLY", key, strings.Join(words, ",")).Result(); err != nil {
					t.Fatal(err)
				}
				current[key] = h.tags(words, key)
			}
			var model []rec
			for k, tags := range current {
				uniq := map[string]bool{}
				for _, tag := range tags {
					if !uniq[tag] {
						uniq[tag] = true
						model = append(model, rec{tag, k})
					}
				}
			}
			sortRecs(model)

			search := func(args ...any) []rec {
				t.Helper()
				res, err := c.Do(ctx(t), append([]any{"LEGION.SEARCH"}, args...)...).Slice()
				if err != nil {
					t.Fatalf("seed %d: LEGION.SEARCH %v: %v", seed, args, err)
				}
				var out []rec
				for _, x := range res {
					p := x.([]any)
					out = append(out, rec{p[0].(string), p[1].(string)})
				}
				return out
			}
			expect := func(tag string, after *string, count int, exact bool) []rec {
				var want []rec
				for _, m := range model {
					if len(want) == count {
						break
					}
					if m.tag < tag || m.tag == tag && after != nil && m.key <= *after {
						continue
					}
					if exact && m.tag != tag {
						break
					}
					want = append(want, m)
				}
				return want
			}
			type query struct {
				args []any
				want []rec
			}
			var queries []query
			for q := 0; q < 200; q++ {
				tag := vocab[r.Intn(len(vocab))]
				switch r.Intn(4) {
				case 0:
					tag = "p:" + tag
				case 1:
					tag = tag[:r.Intn(len(tag)+1)]
				}
				count := []int{1, 2, 5, 10, 1000}[r.Intn(5)]
				exact := r.Intn(2) == 0
				var after *string
				args := []any{tag}
				opts := [][]any{{"COUNT", count}}
				if r.Intn(2) == 0 {
					k := fmt.Sprintf("k%02d", r.Intn(70))
					after = &k
					opts = append(opts, []any{"after", k})
				}
				if exact {
					opts = append(opts, []any{"Exact"})
				}
				r.Shuffle(len(opts), func(i, j int) { opts[i], opts[j] = opts[j], opts[i] })
				for _, o := range opts {
					args = append(args, o...)
				}
				got, want := search(args...), expect(tag, after, count, exact)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("seed %d: LEGION.SEARCH %q\n got  %q\n want %q", seed, args, got, want)
				}
				queries = append(queries, query{args, want})
			}
			// The same searches pipelined (answered from one view of the
			// store) give the same answers.
			pipe := c.Pipeline()
			cmds := make([]*redis.Cmd, len(queries))
			for i, q := range queries {
				cmds[i] = pipe.Do(ctx(t), append([]any{"LEGION.SEARCH"}, q.args...)...)
			}
			if _, err := pipe.Exec(ctx(t)); err != nil {
				t.Fatalf("seed %d: pipelined searches: %v", seed, err)
			}
			for i, q := range queries {
				res, _ := cmds[i].Slice()
				var got []rec
				for _, x := range res {
					p := x.([]any)
					got = append(got, rec{p[0].(string), p[1].(string)})
				}
				if fmt.Sprint(got) != fmt.Sprint(q.want) {
					t.Fatalf("seed %d: pipelined LEGION.SEARCH %q\n got  %q\n want %q", seed, q.args, got, q.want)
				}
			}
			// Default COUNT is 10.
			if got, want := search(""), expect("", nil, 10, false); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("seed %d: default count: got %q want %q", seed, got, want)
			}
			// Paging with AFTER from the start visits the whole index in order.
			var paged []rec
			page := search("", "COUNT", 7)
			for len(page) > 0 {
				paged = append(paged, page...)
				last := page[len(page)-1]
				page = search(last.tag, "AFTER", last.key, "COUNT", 7)
			}
			if fmt.Sprint(paged) != fmt.Sprint(model) {
				t.Fatalf("seed %d: paging\n got  %q\n want %q", seed, paged, model)
			}
		})
	}
}

// TestRestartKeepsEverything: states, tags and the active handler survive
// a clean restart, and the counters go on from where they were.
func TestRestartKeepsEverything(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.client(t)
	sha := loadScript(t, c, counterLua(t))
	for i := 0; i < 30; i++ {
		for j := 0; j <= i%5; j++ {
			c.Do(ctx(t), "LEGION.APPLY", fmt.Sprintf("k%d", i), "incr")
		}
	}
	before := snapshotAll(t, c, 30)
	inspect, err := c.Do(ctx(t), "LEGION.INSPECT", "k4").Text()
	if err != nil {
		t.Fatal(err)
	}

	s.restart(syscall.SIGTERM)
	if code := s.cmd.ProcessState; code != nil && !code.Success() {
		t.Fatalf("previous server exited with %v", code)
	}
	c = s.client(t)
	waitPartitionFilter(t, c) // the reads below go through it
	if after := snapshotAll(t, c, 30); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("after restart:\n%v\nbefore:\n%v", after, before)
	}
	if got, _ := c.Do(ctx(t), "LEGION.INSPECT", "k4").Text(); got != inspect {
		t.Fatalf("INSPECT after restart = %s, before %s", got, inspect)
	}
	// The active handler is still there: no SCRIPT LOAD needed.
	out, err := c.Do(ctx(t), "LEGION.APPLY", "k4", "incr").Int64()
	if err != nil || out != 6 {
		t.Fatalf("apply after restart = %d, %v; want 6", out, err)
	}
	var doc struct {
		Pending []any `json:"pending"`
	}
	if err := json.Unmarshal([]byte(inspect), &doc); err != nil || doc.Pending == nil {
		t.Fatalf("INSPECT is not the documented JSON: %s (%v)", inspect, err)
	}
	_ = sha
}

// snapshotAll returns the states of keys k0..k<n-1> and the whole index.
func snapshotAll(t testing.TB, c *redis.Client, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		v, err := c.Do(ctx(t), "LEGION.GET", fmt.Sprintf("k%d", i)).Text()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("k%d=%s", i, v))
	}
	res, err := c.Do(ctx(t), "LEGION.SEARCH", "", "COUNT", 100000).Slice()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range res {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// TestPipelinedSearchSeesEarlierWrites: the searches of a pipeline share a
// view of the store only while nothing else runs between them, so each one
// sees every write that came before it in the pipeline.
func TestPipelinedSearchSeesEarlierWrites(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	loadScript(t, c, tagApply+"\nfunction index(state, key) return state.words end\n")
	keys := func(cmd *redis.Cmd) string {
		res, err := cmd.Slice()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range res {
			out = append(out, x.([]any)[1].(string))
		}
		return strings.Join(out, ",")
	}
	pipe := c.Pipeline()
	var searches []*redis.Cmd
	search := func() { searches = append(searches, pipe.Do(ctx(t), "LEGION.SEARCH", "red", "EXACT")) }
	search()
	search()
	pipe.Do(ctx(t), "LEGION.APPLY", "k1", "red")
	search()
	search()
	pipe.Do(ctx(t), "LEGION.APPLY", "k2", "red")
	pipe.Do(ctx(t), "PING")
	search()
	pipe.Do(ctx(t), "LEGION.APPLY", "k1", "blue")
	search()
	if _, err := pipe.Exec(ctx(t)); err != nil {
		t.Fatal(err)
	}
	want := []string{"", "", "k1", "k1", "k1,k2", "k2"}
	for i, cmd := range searches {
		if got := keys(cmd); got != want[i] {
			t.Errorf("search %d of the pipeline = %q, want %q", i, got, want[i])
		}
	}
}

// TestPipelinedWritesBatched: the writes of a pipeline are applied as
// batches of consecutive LEGION.APPLY commands; every command still gets
// its own reply, in order: a later write sees the earlier ones, a refused
// or malformed write answers its error alone, and a read between writes
// sees exactly the writes before it.
func TestPipelinedWritesBatched(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	loadScript(t, c, counterLua(t))
	conn := c.Conn() // one connection: the count below is its commands
	defer conn.Close()
	processed := func() int64 {
		info, err := conn.Info(ctx(t), "stats").Result()
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(info, "total_commands_processed:")
		n, _ := strconv.ParseInt(strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0]), 10, 64)
		return n
	}
	before := processed()
	pipe := conn.Pipeline()
	cmds := []*redis.Cmd{
		pipe.Do(ctx(t), "LEGION.APPLY", "k", "incr"),
		pipe.Do(ctx(t), "LEGION.APPLY", "k", "incr"),
		pipe.Do(ctx(t), "LEGION.APPLY", "k", "incr", "SOON"),
		pipe.Do(ctx(t), "LEGION.APPLY", "k", "bogus"),
		pipe.Do(ctx(t), "LEGION.APPLY", "k", "incr", "FAST"),
		pipe.Do(ctx(t), "LEGION.GET", "k"),
		pipe.Do(ctx(t), "LEGION.APPLY", "k", "incr"),
		pipe.Do(ctx(t), "LEGION.APPLY", "other", "incr"),
		pipe.Do(ctx(t), "LEGION.APPLY"),
		pipe.Do(ctx(t), "LEGION.APPLY", "k", "incr"),
	}
	pipe.Exec(ctx(t))
	want := []string{"1", "2", "ERR syntax error", "unknown event", "3", `{"count":3}`, "4", "1",
		"ERR wrong number of arguments for 'legion.apply' command", "5"}
	for i, cmd := range cmds {
		got := fmt.Sprint(cmd.Val())
		if cmd.Err() != nil {
			got = cmd.Err().Error()
		}
		if !strings.Contains(got, want[i]) {
			t.Errorf("reply %d = %q, want %q", i, got, want[i])
		}
	}
	if n := processed() - before; n != int64(len(cmds))+1 {
		t.Errorf("the server counted %d commands, want the pipeline's %d and INFO", n, len(cmds))
	}
	if v, err := c.Do(ctx(t), "LEGION.QUERY", "k", "").Int64(); err != nil || v != 5 {
		t.Fatalf("stored count = %v (%v), want 5", v, err)
	}
}

// TestLongPipelineAnsweredInOrder: a pipeline far longer than the writes
// the server holds open at once (it answers in parts) gets every reply, in
// order, and every write is stored.
func TestLongPipelineAnsweredInOrder(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	loadScript(t, c, counterLua(t))
	const n = 5000
	pipe := c.Pipeline()
	cmds := make([]*redis.Cmd, n)
	for i := range cmds {
		if i%7 == 3 {
			cmds[i] = pipe.Do(ctx(t), "PING")
			continue
		}
		cmds[i] = pipe.Do(ctx(t), "LEGION.APPLY", "long", "incr")
	}
	if _, err := pipe.Exec(ctx(t)); err != nil {
		t.Fatal(err)
	}
	count := int64(0)
	for i, cmd := range cmds {
		if i%7 == 3 {
			if v, _ := cmd.Text(); v != "PONG" {
				t.Fatalf("reply %d = %v, want PONG", i, cmd)
			}
			continue
		}
		count++
		if v, err := cmd.Int64(); err != nil || v != count {
			t.Fatalf("reply %d = %v, want %d", i, cmd, count)
		}
	}
	if v, err := c.Do(ctx(t), "LEGION.QUERY", "long", "").Int64(); err != nil || v != count {
		t.Fatalf("stored count = %v (%v), want %d", v, err, count)
	}
}
