package legion

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// TestSearchCacheNeverStale: while writers move keys from tag to tag,
// searches of a page of a tag (the cached kind) never show a key under a
// tag it left before the search began, and always show it under the tag
// it had throughout the search. Pages are filled and invalidated all the
// time: every search below is of a first page, or of the page after a
// cursor just below the key.
func TestSearchCacheNeverStale(t *testing.T) {
	db := benchDB(t, batchCounter)
	const (
		keys    = 16
		writers = 2
		readers = 2
		reads   = 3000
	)
	// Per key: the count its last acknowledged write returned, and a
	// sequence that is odd while a write of the key is in flight.
	var (
		latest [keys]atomic.Int64
		seq    [keys]atomic.Int64
	)
	key := func(k int) []byte { return []byte("key" + strconv.Itoa(k)) }
	has := func(hits []Hit, k []byte) bool {
		for _, h := range hits {
			if bytes.Equal(h.Key, k) {
				return true
			}
		}
		return false
	}
	// cursor is a key just below key k: "key1" for "key12", "key" for "key5".
	cursor := func(k int) []byte { kb := key(k); return kb[:len(kb)-1] }
	search := func(n int64, after []byte) []Hit {
		hits, err := db.Search(SearchQuery{Tag: fmt.Appendf(nil, "count:%d", n), Exact: true, Count: 100, After: after != nil, AfterKey: after})
		if err != nil {
			t.Error(err)
		}
		return hits
	}
	for k := range keys {
		if _, err := db.Apply(context.Background(), key(k), []byte("incr"), Consistent); err != nil {
			t.Fatal(err)
		}
		latest[k].Store(1)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := w + writers*r.IntN(keys/writers) // each key has one writer
				seq[k].Add(1)
				out, err := db.Apply(context.Background(), key(k), []byte("incr"), Consistent)
				if err != nil {
					t.Error(err)
					return
				}
				j, err := out.JSON()
				if err != nil {
					t.Error(err)
					return
				}
				n, err := strconv.ParseInt(string(j), 10, 64)
				if err != nil {
					t.Error(err)
					return
				}
				latest[k].Store(n)
				seq[k].Add(1)
			}
		}()
	}
	var rg sync.WaitGroup
	var checked atomic.Int64
	for g := range readers {
		rg.Add(1)
		go func() {
			defer rg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 2))
			for range reads {
				k := r.IntN(keys)
				var after []byte
				if r.IntN(2) == 0 {
					after = cursor(k)
				}
				s1 := seq[k].Load()
				n := latest[k].Load()
				if n == 0 {
					continue
				}
				// The key left count:n-1 before this search began.
				if has(search(n-1, after), key(k)) {
					t.Errorf("%s found under count:%d (after %q) after it reached %d", key(k), n-1, after, n)
				}
				found := has(search(n, after), key(k))
				if s1%2 == 0 && seq[k].Load() == s1 {
					// No write of the key began or was in flight.
					checked.Add(1)
					if !found {
						t.Errorf("%s missing from count:%d (after %q)", key(k), n, after)
					}
				}
			}
		}()
	}
	rg.Wait()
	close(stop)
	wg.Wait()
	if checked.Load() < 100 {
		t.Fatalf("only %d searches ran with their key at rest", checked.Load())
	}
	before := db.StorageStats()
	// With the writers stopped, a second search of a tag is answered by
	// the cache, and is still right.
	for k := range keys {
		n := latest[k].Load()
		for _, after := range [][]byte{nil, cursor(k)} {
			for range 3 {
				if now, before := search(n, after), search(n-1, after); !has(now, key(k)) || has(before, key(k)) {
					st, _, _ := db.Get(key(k))
					t.Fatalf("%s (%s) at rest: count:%d = %s, count:%d = %s (after %q)", key(k), st, n, hitKeys(now), n-1, hitKeys(before), after)
				}
			}
		}
	}
	after := db.StorageStats()
	if after.SearchCacheHits-before.SearchCacheHits < 2*keys || after.SearchCacheBytes == 0 {
		t.Fatalf("searches at rest were not answered by the cache: %+v then %+v", before, after)
	}
	t.Logf("cache hits %d, misses %d", after.SearchCacheHits, after.SearchCacheMisses)
}

func hitKeys(hits []Hit) string {
	var b bytes.Buffer
	for _, h := range hits {
		fmt.Fprintf(&b, "%s ", h.Key)
	}
	return b.String()
}
