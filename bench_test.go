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

func benchDB(b *testing.B, src string) *DB {
	b.Helper()
	cfg := DefaultConfig()
	cfg.InMemory = true
	cfg.Fsync = FsyncNo
	db, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := db.LoadScript([]byte(src)); err != nil {
		b.Fatal(err)
	}
	return db
}

// BenchmarkApply measures one event on a small cached partition, the
// single-node hot path without the network.
func BenchmarkApply(b *testing.B) {
	db := benchDB(b, benchCounter)
	keys := make([][]byte, 1000)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key:%d", i))
	}
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

// TestCachedPartitionSize checks the cache's size estimate against the
// heap a cached small partition really holds, so the cache bound means what
// it says. The partitions are made by the real apply path; what they hold
// is the heap released by evicting them all (pebble does nothing meanwhile).
func TestCachedPartitionSize(t *testing.T) {
	cfg := DefaultConfig()
	cfg.InMemory = true
	cfg.Fsync = FsyncNo
	db, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.LoadScript([]byte(benchCounter)); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	ctx := context.Background()
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key:%08d", i))
		if _, err := db.Apply(ctx, keys[i], []byte("incr"), Consistent); err != nil {
			t.Fatal(err)
		}
	}
	est, entries := db.cache.usage()
	if entries != n {
		t.Fatalf("%d cached, want %d", entries, n)
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	full := heap()
	for _, k := range keys {
		db.cache.remove(k)
	}
	empty := heap()
	perPartition := float64(int64(full)-int64(empty)) / n
	perEstimate := float64(est) / float64(entries)
	t.Logf("heap per cached partition %.0f bytes, estimate %.0f", perPartition, perEstimate)
	if perEstimate < 0.7*perPartition || perEstimate > 1.5*perPartition {
		t.Fatalf("the cache estimates %.0f bytes per small partition; they hold about %.0f", perEstimate, perPartition)
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
