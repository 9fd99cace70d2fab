// Package scripts_test runs the example handlers in scripts/ on a real
// in-memory Legion database.
package scripts_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/legiondb/legion"
)

// clock is the time the DB stamps on accepted events (ctx.time).
type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) advance(d time.Duration) { c.now = c.now.Add(d) }

// open returns an in-memory DB with the handler file loaded.
func open(t *testing.T, file string) *legion.DB {
	t.Helper()
	return openWithClock(t, file, nil)
}

func openWithClock(t *testing.T, file string, clk *clock) *legion.DB {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg := legion.DefaultConfig()
	cfg.InMemory = true
	if clk != nil {
		cfg.Now = clk.Now
	}
	db, err := legion.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.LoadScript(src); err != nil {
		t.Fatalf("loading %s: %v", file, err)
	}
	return db
}

func apply(t *testing.T, db *legion.DB, key, event string) (string, error) {
	t.Helper()
	out, err := db.Apply(context.Background(), []byte(key), []byte(event), legion.Consistent)
	if err != nil {
		return "", err
	}
	j, err := out.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(j), nil
}

func mustApply(t *testing.T, db *legion.DB, key, event string) string {
	t.Helper()
	out, err := apply(t, db, key, event)
	if err != nil {
		t.Fatalf("apply %s %q: %v", key, event, err)
	}
	return out
}

func state(t *testing.T, db *legion.DB, key string) string {
	t.Helper()
	s, ok, err := db.Get([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return ""
	}
	return string(s)
}

// keysTagged returns the keys carrying tag exactly.
func keysTagged(t *testing.T, db *legion.DB, tag string) []string {
	t.Helper()
	hits, err := db.Search(legion.SearchQuery{Tag: []byte(tag), Exact: true, Count: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, h := range hits {
		keys = append(keys, string(h.Key))
	}
	return keys
}

func query(t *testing.T, db *legion.DB, key, req string) string {
	t.Helper()
	out, err := db.Query([]byte(key), []byte(req))
	if err != nil {
		t.Fatalf("query %s %q: %v", key, req, err)
	}
	j, _ := out.JSON()
	return string(j)
}

func TestCounter(t *testing.T) {
	db := open(t, "counter.lua")
	for i, want := range []string{"1", "2", "3"} {
		if got := mustApply(t, db, "a", "incr"); got != want {
			t.Fatalf("incr %d = %s, want %s", i, got, want)
		}
	}
	steps := []struct{ event, want string }{
		{"decr", "2"}, {"incrby 40", "42"}, {"incrby -50", "-8"}, {"reset", "0"}, {"incrby 7", "7"},
	}
	for _, s := range steps {
		if got := mustApply(t, db, "a", s.event); got != s.want {
			t.Fatalf("%q = %s, want %s", s.event, got, s.want)
		}
	}
	mustApply(t, db, "b", "incrby 7")
	mustApply(t, db, "c", "incr")
	if got := fmt.Sprint(keysTagged(t, db, "count:7")); got != "[a b]" {
		t.Fatalf("count:7 = %s", got)
	}
	if got := fmt.Sprint(keysTagged(t, db, "count:1")); got != "[c]" {
		t.Fatalf("count:1 = %s", got)
	}
	if got := query(t, db, "a", "anything"); got != "7" {
		t.Fatalf("query = %s", got)
	}
	if got := query(t, db, "never", "x"); got != "0" {
		t.Fatalf("query of a missing key = %s", got)
	}
	// Bad events are refused and change nothing.
	for _, bad := range []string{"", "inc", "incrby", "incrby x", "incrby 1 2"} {
		if _, err := apply(t, db, "a", bad); err == nil || !strings.Contains(err.Error(), "unknown event") {
			t.Fatalf("%q: err = %v", bad, err)
		}
	}
	if got := state(t, db, "a"); got != `{"count":7}` {
		t.Fatalf("state after bad events = %s", got)
	}
}

func TestCart(t *testing.T) {
	db := open(t, "cart.lua")
	add := func(key, sku string, qty, price int) string {
		t.Helper()
		return mustApply(t, db, key, fmt.Sprintf(`{"op":"add","sku":%q,"qty":%d,"price":%d}`, sku, qty, price))
	}
	if got := add("alice", "A1", 2, 350); got != "700" {
		t.Fatalf("total = %s", got)
	}
	if got := add("alice", "B2", 1, 1200); got != "1900" {
		t.Fatalf("total = %s", got)
	}
	if got := add("alice", "A1", 1, 350); got != "2250" {
		t.Fatalf("total = %s", got)
	}
	add("bob", "B2", 3, 1200)
	mustApply(t, db, "carol", `{"op":"clear"}`)

	var st struct {
		Items map[string]struct{ Qty, Price int }
		Total int
		Units int
	}
	if err := json.Unmarshal([]byte(state(t, db, "alice")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Total != 2250 || st.Units != 4 || st.Items["A1"].Qty != 3 || st.Items["B2"].Price != 1200 {
		t.Fatalf("alice's cart = %+v", st)
	}
	if got := fmt.Sprint(keysTagged(t, db, "sku:B2")); got != "[alice bob]" {
		t.Fatalf("sku:B2 = %s", got)
	}
	if got := fmt.Sprint(keysTagged(t, db, "sku:A1")); got != "[alice]" {
		t.Fatalf("sku:A1 = %s", got)
	}
	if got := fmt.Sprint(keysTagged(t, db, "cart:nonempty")); got != "[alice bob]" {
		t.Fatalf("cart:nonempty = %s", got)
	}
	if got := fmt.Sprint(keysTagged(t, db, "cart:empty")); got != "[carol]" {
		t.Fatalf("cart:empty = %s", got)
	}
	if got := query(t, db, "alice", "lines"); got != `["A1",3,350,"B2",1,1200]` {
		t.Fatalf("lines = %s", got)
	}
	if got := query(t, db, "alice", "units"); got != "4" {
		t.Fatalf("units = %s", got)
	}

	// Removing lines moves the tags.
	if got := mustApply(t, db, "alice", `{"op":"remove","sku":"A1","qty":1}`); got != "1900" {
		t.Fatalf("after removing one A1: %s", got)
	}
	if got := mustApply(t, db, "alice", `{"op":"remove","sku":"A1"}`); got != "1200" {
		t.Fatalf("after removing the A1 line: %s", got)
	}
	if got := fmt.Sprint(keysTagged(t, db, "sku:A1")); got != "[]" {
		t.Fatalf("sku:A1 after removal = %s", got)
	}
	mustApply(t, db, "bob", `{"op":"remove","sku":"B2","qty":5}`)
	if got := fmt.Sprint(keysTagged(t, db, "cart:empty")); got != "[bob carol]" {
		t.Fatalf("cart:empty = %s", got)
	}

	// Bad events are refused with a reason and change nothing.
	before := state(t, db, "alice")
	for bad, reason := range map[string]string{
		`not json`: "JSON object",
		`[1,2]`:    "op must be",
		`{"op":"add","sku":"","qty":1,"price":1}`:    "sku",
		`{"op":"add","sku":"X","qty":0,"price":1}`:   "qty",
		`{"op":"add","sku":"X","qty":1.5,"price":1}`: "qty",
		`{"op":"add","sku":"X","qty":1,"price":-1}`:  "price",
		`{"op":"remove","sku":"nope"}`:               "no line",
		`{"op":"explode"}`:                           "op must be",
	} {
		if _, err := apply(t, db, "alice", bad); err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: err = %v, want it to mention %q", bad, err, reason)
		}
	}
	if after := state(t, db, "alice"); after != before {
		t.Fatalf("refused events changed the cart: %s -> %s", before, after)
	}
	if _, err := db.Query([]byte("alice"), []byte("bogus")); err != nil {
		t.Fatalf("query returning {err=...} is an output, not a failure: %v", err)
	}
}

// TestCartSearchModel fills many carts at random and checks the SKU and
// emptiness tags against the carts' contents.
func TestCartSearchModel(t *testing.T) {
	db := open(t, "cart.lua")
	model := map[string]map[string]int{}
	skus := []string{"A1", "B2", "C3", "D4"}
	for i := 0; i < 400; i++ {
		key := fmt.Sprintf("cart%02d", i*7%37)
		sku := skus[i*13%len(skus)]
		if model[key] == nil {
			model[key] = map[string]int{}
		}
		if i%5 == 4 && model[key][sku] > 0 {
			mustApply(t, db, key, fmt.Sprintf(`{"op":"remove","sku":%q}`, sku))
			delete(model[key], sku)
		} else {
			mustApply(t, db, key, fmt.Sprintf(`{"op":"add","sku":%q,"qty":1,"price":100}`, sku))
			model[key][sku]++
		}
	}
	for _, sku := range skus {
		var want []string
		for key, items := range model {
			if items[sku] > 0 {
				want = append(want, key)
			}
		}
		sort.Strings(want)
		if got := keysTagged(t, db, "sku:"+sku); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("sku:%s = %v, want %v", sku, got, want)
		}
	}
}

func TestCache(t *testing.T) {
	clk := &clock{now: time.UnixMilli(1_700_000_000_000)}
	db := openWithClock(t, "cache.lua", clk)
	if got := mustApply(t, db, "user:1", "set 5000 alice"); got != `{"ok":"OK"}` {
		t.Fatalf("set = %s", got)
	}
	mustApply(t, db, "user:2", "set 0 bob")
	mustApply(t, db, "user:3", "set 2000 carol with spaces")
	if got := query(t, db, "user:1", "get"); got != `"alice"` {
		t.Fatalf("get = %s", got)
	}
	if got := query(t, db, "user:3", "get"); got != `"carol with spaces"` {
		t.Fatalf("get = %s", got)
	}
	if got := query(t, db, "user:1", "pttl"); got != "5000" {
		t.Fatalf("pttl = %s", got)
	}
	if got := query(t, db, "user:2", "pttl"); got != "-1" {
		t.Fatalf("pttl of a permanent entry = %s", got)
	}
	// The index lists entries by expiry, soonest first.
	hits, _ := db.Search(legion.SearchQuery{Tag: []byte("expires:"), Count: 10})
	if len(hits) != 2 || string(hits[0].Key) != "user:3" || string(hits[1].Key) != "user:1" {
		t.Fatalf("expires: %v", hits)
	}
	clk.advance(3 * time.Second)
	if got := query(t, db, "user:3", "get"); got != "null" {
		t.Fatalf("expired entry still readable: %s", got)
	}
	if got := query(t, db, "user:3", "pttl"); got != "-2" {
		t.Fatalf("pttl of an expired entry = %s", got)
	}
	if got := mustApply(t, db, "user:1", "touch 10000"); got != "1" {
		t.Fatalf("touch = %s", got)
	}
	if got := mustApply(t, db, "user:3", "touch 10000"); got != "0" {
		t.Fatalf("touch of an expired entry = %s", got)
	}
	// A sweeper removes what has expired, and only that.
	if got := mustApply(t, db, "user:3", "expire"); got != "1" {
		t.Fatalf("expire of an expired entry = %s", got)
	}
	if got := mustApply(t, db, "user:1", "expire"); got != "0" {
		t.Fatalf("expire of a live entry = %s", got)
	}
	if got := fmt.Sprint(keysTagged(t, db, "cache:permanent")); got != "[user:2]" {
		t.Fatalf("cache:permanent = %s", got)
	}
	hits, _ = db.Search(legion.SearchQuery{Tag: []byte("expires:"), Count: 10})
	if len(hits) != 1 || string(hits[0].Key) != "user:1" {
		t.Fatalf("expires: after the sweep = %v", hits)
	}
	if got := mustApply(t, db, "user:2", "del"); got != "1" {
		t.Fatalf("del = %s", got)
	}
	if got := query(t, db, "user:2", "get"); got != "null" {
		t.Fatalf("get after del = %s", got)
	}
	for _, bad := range []string{"set", "set x y", "set -5 v", "touch soon", "flush"} {
		if _, err := apply(t, db, "user:1", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRegistry(t *testing.T) {
	clk := &clock{now: time.UnixMilli(1_700_000_000_000)}
	db := openWithClock(t, "registry.lua", clk)
	mustApply(t, db, "web-1", "register web 10.0.0.1:80 3000")
	mustApply(t, db, "web-2", "register web 10.0.0.2:80 3000")
	mustApply(t, db, "db-1", "register db 10.0.0.9:5432 10000")
	if got := fmt.Sprint(keysTagged(t, db, "service:web")); got != "[web-1 web-2]" {
		t.Fatalf("service:web = %s", got)
	}
	if got := query(t, db, "web-1", "address"); got != `"10.0.0.1:80"` {
		t.Fatalf("address = %s", got)
	}
	clk.advance(2 * time.Second)
	if got := mustApply(t, db, "web-1", "heartbeat"); got != "1" {
		t.Fatalf("heartbeat = %s", got)
	}
	clk.advance(2 * time.Second) // web-2 missed its deadline; web-1 did not
	if got := query(t, db, "web-2", "alive"); got != "0" {
		t.Fatalf("web-2 alive = %s", got)
	}
	if got := query(t, db, "web-1", "alive"); got != "1" {
		t.Fatalf("web-1 alive = %s", got)
	}
	if got := mustApply(t, db, "web-2", "heartbeat"); got != "0" {
		t.Fatalf("late heartbeat = %s", got)
	}
	// The sweeper finds the dead instance through the expires: tags.
	hits, _ := db.Search(legion.SearchQuery{Tag: []byte("expires:"), Count: 1})
	if len(hits) != 1 || string(hits[0].Key) != "web-2" {
		t.Fatalf("first to expire = %v", hits)
	}
	if got := mustApply(t, db, "web-2", "expire"); got != "0" {
		t.Fatalf("expire = %s", got)
	}
	if got := fmt.Sprint(keysTagged(t, db, "service:web")); got != "[web-1]" {
		t.Fatalf("service:web after the sweep = %s", got)
	}
	mustApply(t, db, "db-1", "deregister")
	if got := fmt.Sprint(keysTagged(t, db, "service:db")); got != "[]" {
		t.Fatalf("service:db after deregister = %s", got)
	}
	if _, err := apply(t, db, "x", "register onlyname"); err == nil {
		t.Fatal("bad register accepted")
	}
}

func TestRateLimit(t *testing.T) {
	clk := &clock{now: time.UnixMilli(1_700_000_000_000)}
	db := openWithClock(t, "ratelimit.lua", clk)
	// A full bucket of 10 allows 10 requests at once, then refuses.
	for i := 9; i >= 0; i-- {
		if got := mustApply(t, db, "api:alice", "take"); got != fmt.Sprintf("[1,%d,0]", i) {
			t.Fatalf("take %d = %s", 10-i, got)
		}
	}
	if got := mustApply(t, db, "api:alice", "take"); got != "[0,0,200]" {
		t.Fatalf("over the limit = %s", got)
	}
	if got := fmt.Sprint(keysTagged(t, db, "ratelimit:throttled")); got != "[api:alice]" {
		t.Fatalf("throttled = %s", got)
	}
	// 5 tokens per second: after 1s, five more.
	clk.advance(time.Second)
	if got := query(t, db, "api:alice", "tokens"); got != "5" {
		t.Fatalf("tokens after 1s = %s", got)
	}
	if got := mustApply(t, db, "api:alice", "take 5"); got != "[1,0,0]" {
		t.Fatalf("take 5 = %s", got)
	}
	if got := fmt.Sprint(keysTagged(t, db, "ratelimit:throttled")); got != "[]" {
		t.Fatalf("throttled after a success = %s", got)
	}
	if got := mustApply(t, db, "api:alice", "take 3"); got != "[0,0,600]" {
		t.Fatalf("take 3 on empty = %s", got)
	}
	// The bucket never holds more than its capacity.
	clk.advance(time.Hour)
	if got := query(t, db, "api:alice", "tokens"); got != "10" {
		t.Fatalf("tokens after an hour = %s", got)
	}
	// Buckets are per key.
	if got := mustApply(t, db, "api:bob", "take 10"); got != "[1,0,0]" {
		t.Fatalf("bob = %s", got)
	}
	for _, bad := range []string{"give", "take 0", "take 11", "take -1"} {
		if _, err := apply(t, db, "api:bob", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
