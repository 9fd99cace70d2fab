package legion

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
)

const benchCounter = `
function apply(event, state, ctx)
  state = state or { count = 0 }
  if event == "incr" then state.count = state.count + 1 end
  return state.count, state
end`

// benchDB opens an in-memory DB without fsync, closed when tb ends, with
// src as its active handler.
func benchDB(tb testing.TB, src string) *DB { return openTestDB(tb, src, nil) }

// openTestDB opens an in-memory DB without fsync, with whatever else
// change sets (if not nil), closed when tb ends (if not before), with src
// as its active handler.
func openTestDB(tb testing.TB, src string, change func(*Config)) *DB {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.InMemory = true
	cfg.Fsync = FsyncNo
	if change != nil {
		change(&cfg)
	}
	db, err := Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if _, err := db.LoadScript([]byte(src)); err != nil {
		tb.Fatal(err)
	}
	return db
}

// benchKeys returns n keys, key:0 to key:<n-1>.
func benchKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key:%d", i))
	}
	return keys
}

// BenchmarkApply measures one event on a small cached partition, the
// single-node hot path without the network.
func BenchmarkApply(b *testing.B) {
	db := benchDB(b, benchCounter)
	keys := benchKeys(1000)
	ctx := context.Background()
	ev := []byte("incr")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := db.Apply(ctx, keys[i%len(keys)], ev, Consistent); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyCounter is the server's counter workload without the
// network: scripts/counter.lua (with its index) over many keys, in a
// random order, so pebble's memtable and the index see what they see
// under redis-benchmark -r.
func BenchmarkApplyCounter(b *testing.B) {
	src, err := os.ReadFile("scripts/counter.lua")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			db := benchDB(b, string(src))
			keys := make([][]byte, n)
			for i := range keys {
				keys[i] = []byte(fmt.Sprintf("key:%012d", i))
			}
			ctx := context.Background()
			ev := []byte("incr")
			r := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := db.Apply(ctx, keys[r.IntN(n)], ev, Consistent); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplyCounterPipelined is the server's pipelined counter
// workload without the network: scripts/counter.lua on 100,000 keys that
// all exist, in pipelines of 16 events on random keys; one op is one
// event.
func BenchmarkApplyCounterPipelined(b *testing.B) {
	src, err := os.ReadFile("scripts/counter.lua")
	if err != nil {
		b.Fatal(err)
	}
	db := benchDB(b, string(src))
	keys := make([][]byte, 100000)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key:%012d", i))
	}
	ctx := context.Background()
	ev := []byte("incr")
	writes := make([]Write, 16)
	results := make([]Result, 16)
	apply := func() {
		if err := db.ApplyBatch(ctx, writes, results)(); err != nil {
			b.Fatal(err)
		}
		for _, res := range results {
			if res.Err != nil {
				b.Fatal(res.Err)
			}
		}
	}
	for i := 0; i < len(keys); i += len(writes) {
		for j := range writes {
			writes[j] = Write{Key: keys[(i+j)%len(keys)], Event: ev, Mode: Consistent}
		}
		apply()
	}
	r := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += len(writes) {
		for i := range writes {
			writes[i] = Write{Key: keys[r.IntN(len(keys))], Event: ev, Mode: Consistent}
		}
		apply()
	}
}

// BenchmarkApplyBatch is a pipeline of 16 events on random keys of 1000,
// as the server applies a client's pipelined LEGION.APPLY; one op is one
// event.
func BenchmarkApplyBatch(b *testing.B) {
	db := benchDB(b, benchCounter)
	keys := benchKeys(1000)
	ctx := context.Background()
	ev := []byte("incr")
	r := rand.New(rand.NewPCG(1, 2))
	writes := make([]Write, 16)
	results := make([]Result, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += len(writes) {
		for i := range writes {
			writes[i] = Write{Key: keys[r.IntN(len(keys))], Event: ev, Mode: Consistent}
		}
		if err := db.ApplyBatch(ctx, writes, results)(); err != nil {
			b.Fatal(err)
		}
		for _, res := range results {
			if res.Err != nil {
				b.Fatal(res.Err)
			}
		}
	}
}

// BenchmarkApplyParallel runs events on different keys from all cores.
func BenchmarkApplyParallel(b *testing.B) {
	db := benchDB(b, benchCounter)
	ctx := context.Background()
	ev := []byte("incr")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := db.Apply(ctx, []byte(fmt.Sprintf("k%d", i%5000)), ev, Consistent); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestCacheMemoryBound checks that the cache's byte count is the heap it
// really holds, and that it stays within its budget, with partitions made by
// the real apply path, more than fit.
func TestCacheMemoryBound(t *testing.T) {
	const limit = 1 << 20
	cfg := DefaultConfig()
	cfg.InMemory = true
	cfg.Fsync = FsyncNo
	cfg.CacheBytes = limit
	db, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.LoadScript([]byte(benchCounter)); err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	ctx := context.Background()
	for i := 0; i < 30000; i++ {
		if _, err := db.Apply(ctx, []byte(fmt.Sprintf("key:%08d", i)), []byte("incr"), Consistent); err != nil {
			t.Fatal(err)
		}
	}
	counted, entries := db.cache.usage()
	t.Logf("%d partitions cached in %d bytes (%.0f per partition)", entries, counted, float64(counted)/float64(entries))
	if counted > limit+limit/10 {
		t.Fatalf("the cache counts %d bytes, over its budget of %d", counted, limit)
	}
	if entries < limit/200 {
		t.Fatalf("only %d partitions fit in %d bytes", entries, limit)
	}
	// Every key written last is there: the most recent writes are never
	// the ones evicted.
	for i := 29990; i < 30000; i++ {
		if db.cache.get([]byte(fmt.Sprintf("key:%08d", i))) == nil {
			t.Fatalf("key:%08d, among the last written, is not cached", i)
		}
	}
	// The rings and tables are outside the Go heap, and counted exactly.
	var outside int64
	for i := range db.cache.shards {
		outside += int64(len(db.cache.shards[i].ring) + 8*len(db.cache.shards[i].table))
	}
	if outside != counted {
		t.Fatalf("the cache counts %d bytes; its rings and tables hold %d", counted, outside)
	}
	// On the Go heap it holds only its fixed part: the heap released by
	// replacing it with an empty one is about nothing (nothing else runs
	// meanwhile).
	full := heap()
	cache := db.cache
	db.cache = newPartitionCache(limit)
	cache.close()
	cache = nil
	held := int64(full) - int64(heap())
	t.Logf("dropping the cache released %d bytes of Go heap", held)
	if held > 128<<10 {
		t.Fatalf("the cache holds %d bytes of Go heap", held)
	}
}

// BenchmarkSearch scrolls 10 records of one of 1000 tags over 100000
// partitions.
func BenchmarkSearch(b *testing.B) {
	db := benchDB(b, `function apply(e, s) return 1, { tag = e } end
function index(s) return { s.tag } end`)
	ctx := context.Background()
	for i := 0; i < 100000; i++ {
		if _, err := db.Apply(ctx, []byte(fmt.Sprintf("p:%d", i)), []byte(fmt.Sprintf("t:%012d", i%1000)), Consistent); err != nil {
			b.Fatal(err)
		}
	}
	tags := make([][]byte, 1000)
	for i := range tags {
		tags[i] = []byte(fmt.Sprintf("t:%012d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		hits, err := db.Search(SearchQuery{Tag: tags[i%len(tags)], Count: 10, Exact: true})
		if err != nil || len(hits) != 10 {
			b.Fatal(len(hits), err)
		}
	}
}
