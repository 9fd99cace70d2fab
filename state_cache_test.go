package legion

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// largeHandler keeps a list of items (a few KiB) that events append to,
// shrink and reorder, tags the state by its latest item and answers
// queries from it: every call runs on a state the state cache keeps.
const largeHandler = `
function apply(event, state, ctx)
  state = state or { items = {}, n = 0, seen = {} }
  state.n = state.n + 1
  if event == "pop" then
    table.remove(state.items)
    state.seen[#state.items + 1] = nil
  else
    state.items[#state.items + 1] = string.rep(event, 40)
    state.seen[#state.items] = event
  end
  local order = {}
  for k in pairs(state.seen) do order[#order + 1] = tostring(k) end
  return table.concat(order, ","), state
end
function index(state, key)
  return { "last:" .. (state.items[#state.items] or "none"):sub(1, 1) }
end
function query(request, state, ctx)
  local n = 0
  for _ in pairs(state.seen) do n = n + 1 end
  return n .. "/" .. #state.items .. "/" .. state.n
end`

// TestStateCacheInDB: a DB with the state cache answers exactly as one
// without, and uses it.
func TestStateCacheInDB(t *testing.T) {
	open := func(cacheBytes int64) *DB {
		return openTestDB(t, largeHandler, func(c *Config) { c.StateCacheBytes = cacheBytes })
	}
	cached, plain := open(0), open(-1)
	ctx := context.Background()
	events := []string{"a", "b", "c", "pop", "d"}
	for i := 0; i < 300; i++ {
		key := []byte(fmt.Sprintf("big%d", i%3))
		ev := []byte(events[(i*7)%len(events)])
		o1, err1 := cached.Apply(ctx, key, ev, Consistent)
		o2, err2 := plain.Apply(ctx, key, ev, Consistent)
		if !bytes.Equal(o1, o2) || fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("event %d: with the cache %q (%v), without %q (%v)", i, o1, err1, o2, err2)
		}
		if i%4 == 0 {
			q1, err1 := cached.Query(key, nil)
			q2, err2 := plain.Query(key, nil)
			if !bytes.Equal(q1, q2) || fmt.Sprint(err1) != fmt.Sprint(err2) {
				t.Fatalf("query %d: with the cache %q (%v), without %q (%v)", i, q1, err1, q2, err2)
			}
		}
	}
	for k := 0; k < 3; k++ {
		key := []byte(fmt.Sprintf("big%d", k))
		s1, _, err1 := cached.Get(key)
		s2, _, err2 := plain.Get(key)
		if err1 != nil || err2 != nil || !bytes.Equal(s1, s2) {
			t.Fatalf("%s: with the cache %s (%v), without %s (%v)", key, s1, err1, s2, err2)
		}
	}
	for _, tag := range []string{"last:a", "last:b", "last:c", "last:d", "last:n"} {
		h1, err1 := cached.Search(SearchQuery{Tag: []byte(tag), Exact: true, Count: 10})
		h2, err2 := plain.Search(SearchQuery{Tag: []byte(tag), Exact: true, Count: 10})
		if err1 != nil || err2 != nil || fmt.Sprint(h1) != fmt.Sprint(h2) {
			t.Fatalf("%s: with the cache %v (%v), without %v (%v)", tag, h1, err1, h2, err2)
		}
	}
	c1, u1 := cached.ScriptUsage()
	c2, u2 := plain.ScriptUsage()
	if c1 != c2 || u1 != u2 {
		t.Fatalf("with the cache %d calls used %d units, without %d used %d", c1, u1, c2, u2)
	}
	st := cached.Stats()
	if st.StateCacheHits < 300 || st.StateCacheMisses == 0 || st.StateCacheBytes == 0 {
		t.Fatalf("state cache: %d hits, %d misses, %d bytes; want it used", st.StateCacheHits, st.StateCacheMisses, st.StateCacheBytes)
	}
	if st := plain.Stats(); st.StateCacheHits != 0 || st.StateCacheMisses != 0 {
		t.Fatalf("a disabled state cache counted %d hits and %d misses", st.StateCacheHits, st.StateCacheMisses)
	}
	t.Logf("state cache: %d hits, %d misses, %d bytes", st.StateCacheHits, st.StateCacheMisses, st.StateCacheBytes)
}
