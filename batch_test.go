package legion

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/legiondb/legion/scripting"
)

// batchCounter counts, tags each key with its count, and refuses "boom".
const batchCounter = `
function apply(event, state, ctx)
  if event == "boom" then error("boom") end
  state = state or { count = 0 }
  state.count = state.count + 1
  return state.count, state
end
function index(state, key) return { "count:" .. state.count } end`

func openBatchDB(t *testing.T, dir string) *DB {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Fsync = FsyncAlways
	db, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func outputJSON(t *testing.T, o Output) string {
	t.Helper()
	j, err := o.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

// TestApplyBatch: the writes of a batch run in order (a later write on a
// key sees the earlier ones), a refused write changes nothing and leaves
// the others alone, and everything stored survives a restart, with its
// tags and the partition count.
func TestApplyBatch(t *testing.T) {
	dir := t.TempDir()
	db := openBatchDB(t, dir)
	if _, err := db.LoadScript([]byte(batchCounter)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := func(key, ev string) Write { return Write{Key: []byte(key), Event: []byte(ev), Mode: Consistent} }
	huge := strings.Repeat("k", MaxKeyBytes+1)
	writes := []Write{
		w("a", "incr"), w("b", "incr"), w("a", "incr"), w("a", "boom"),
		w(huge, "incr"), w("b", "incr"), w("a", "incr"), w("c", "boom"),
	}
	results := make([]Result, len(writes))
	wait := db.ApplyBatch(ctx, writes, results)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	want := []string{"1", "1", "2", "boom", "key too large", "2", "3", "boom"}
	for i, r := range results {
		if i == 3 || i == 4 || i == 7 {
			if r.Err == nil || !strings.Contains(r.Err.Error(), want[i]) {
				t.Errorf("write %d: err = %v, want one saying %q", i, r.Err, want[i])
			}
			continue
		}
		if r.Err != nil {
			t.Fatalf("write %d: %v", i, r.Err)
		}
		if got := outputJSON(t, r.Out); got != want[i] {
			t.Errorf("write %d: output %s, want %s", i, got, want[i])
		}
	}
	var se *scripting.Error
	if !errors.As(results[3].Err, &se) || !errors.Is(results[4].Err, ErrKeySize) {
		t.Errorf("errors: %T %v, %v", results[3].Err, results[3].Err, results[4].Err)
	}
	if st := db.Stats(); st.EventsApplied != 5 || st.ScriptErrors != 2 {
		t.Errorf("stats: %d events applied, %d script errors; want 5 and 2", st.EventsApplied, st.ScriptErrors)
	}

	check := func(db *DB) {
		t.Helper()
		for key, want := range map[string]string{"a": `{"count":3}`, "b": `{"count":2}`} {
			got, ok, err := db.Get([]byte(key))
			if err != nil || !ok || string(got) != want {
				t.Errorf("Get %s = %s %v %v, want %s", key, got, ok, err, want)
			}
		}
		if _, ok, err := db.Get([]byte("c")); ok || err != nil {
			t.Errorf("c, whose only write was refused, exists (%v)", err)
		}
		hits, err := db.Search(SearchQuery{Tag: []byte("count:"), Count: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range hits {
			got = append(got, string(h.Tag)+"="+string(h.Key))
		}
		if s := strings.Join(got, " "); s != "count:2=b count:3=a" {
			t.Errorf("index: %s, want count:2=b count:3=a", s)
		}
		if n, err := db.PartitionCount(); err != nil || n != 2 {
			t.Errorf("partitions = %d (%v), want 2", n, err)
		}
	}
	check(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openBatchDB(t, dir)
	defer db.Close()
	check(db)
}

// TestApplyBatchManyKeys: a batch finds the partitions it has loaded,
// by their stripes while it holds few and by a map past 64: every key of
// a long batch written twice counts 2.
func TestApplyBatchManyKeys(t *testing.T) {
	db := openTestDB(t, batchCounter, nil)
	const keys = 150
	var writes []Write
	for round := range 2 {
		for i := range keys {
			// The second round goes backwards, so it finds partitions
			// loaded both before and after the map took over.
			k := i
			if round == 1 {
				k = keys - 1 - i
			}
			writes = append(writes, Write{Key: []byte(fmt.Sprintf("key:%d", k)), Event: []byte("incr"), Mode: Consistent})
		}
	}
	results := make([]Result, len(writes))
	if err := db.ApplyBatch(context.Background(), writes, results)(); err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		want := "1"
		if i >= keys {
			want = "2"
		}
		if r.Err != nil || outputJSON(t, r.Out) != want {
			t.Fatalf("write %d (%s): %v %v, want %s", i, writes[i].Key, r.Out, r.Err, want)
		}
	}
	for i := range keys {
		got, ok, err := db.Get([]byte(fmt.Sprintf("key:%d", i)))
		if err != nil || !ok || string(got) != `{"count":2}` {
			t.Fatalf("key:%d = %s %v %v, want {\"count\":2}", i, got, ok, err)
		}
	}
}

// TestApplyBatchNothingStored: a batch whose every write is refused
// stores nothing and its wait returns at once.
func TestApplyBatchNothingStored(t *testing.T) {
	db := openBatchDB(t, t.TempDir())
	defer db.Close()
	if _, err := db.LoadScript([]byte(batchCounter)); err != nil {
		t.Fatal(err)
	}
	writes := []Write{{Key: []byte("a"), Event: []byte("boom")}, {Key: []byte("a"), Event: []byte("boom")}}
	results := make([]Result, 2)
	if err := db.ApplyBatch(context.Background(), writes, results)(); err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r.Err == nil {
			t.Errorf("write %d: no error", i)
		}
	}
	if n, err := db.PartitionCount(); err != nil || n != 0 {
		t.Errorf("partitions = %d (%v), want 0", n, err)
	}
}

// TestApplyBatchConcurrent: batches over overlapping keys, in every order,
// from many goroutines, neither deadlock (each locks its keys in one
// global order) nor lose a write.
func TestApplyBatchConcurrent(t *testing.T) {
	db := openBatchDB(t, t.TempDir())
	defer db.Close()
	if _, err := db.LoadScript([]byte(batchCounter)); err != nil {
		t.Fatal(err)
	}
	const (
		workers = 8
		batches = 200
		keys    = 12
	)
	var (
		mu    sync.Mutex
		total = map[string]int{}
		wg    sync.WaitGroup
	)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range batches {
				writes := make([]Write, 1+r.IntN(20))
				for i := range writes {
					writes[i] = Write{Key: fmt.Appendf(nil, "k%d", r.IntN(keys)), Event: []byte("incr"), Mode: Fast}
				}
				results := make([]Result, len(writes))
				if err := db.ApplyBatch(context.Background(), writes, results)(); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for i, res := range results {
					if res.Err != nil {
						t.Error(res.Err)
					}
					total[string(writes[i].Key)]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for key, n := range total {
		got, _, err := db.Get([]byte(key))
		if want := fmt.Sprintf(`{"count":%d}`, n); err != nil || !bytes.Equal(got, []byte(want)) {
			t.Errorf("%s = %s (%v), want %s", key, got, err, want)
		}
	}
}

// TestApplyBatchSplitsAtHeldKey: a batch that meets a key another writer
// holds commits the writes before it and releases their keys before it
// waits, so a waiting batch blocks nobody; then it finishes, in order.
func TestApplyBatchSplitsAtHeldKey(t *testing.T) {
	dir := t.TempDir()
	db := openBatchDB(t, dir)
	if _, err := db.LoadScript([]byte(batchCounter)); err != nil {
		t.Fatal(err)
	}
	// Four keys in four different stripes.
	var keys []string
	seen := map[uint32]bool{}
	for i := 0; len(keys) < 4; i++ {
		k := fmt.Sprintf("k%d", i)
		if s := db.stripe([]byte(k)); !seen[s] {
			seen[s] = true
			keys = append(keys, k)
		}
	}
	a, b, held, c := keys[0], keys[1], keys[2], keys[3]
	w := func(key, ev string) Write { return Write{Key: []byte(key), Event: []byte(ev), Mode: Consistent} }
	writes := []Write{w(a, "incr"), w(b, "incr"), w(a, "boom"), w(a, "incr"), w(held, "incr"), w(a, "incr"), w(c, "incr")}
	results := make([]Result, len(writes))

	// Another writer holds the stripe of held.
	heldMu := &db.locks[db.stripe([]byte(held))]
	heldMu.Lock()
	done := make(chan error, 1)
	go func() { done <- db.ApplyBatch(context.Background(), writes, results)() }()

	// While the batch waits for held, the writes before it are committed
	// and the stripes of a and b are free.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu := &db.locks[db.stripe([]byte(a))]
		if mu.TryLock() {
			mu.Unlock()
			got, _, err := db.Get([]byte(a))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) == `{"count":2}` {
				break
			}
		}
		if time.Now().After(deadline) {
			heldMu.Unlock()
			t.Fatal("the batch kept the keys before the held one locked while it waited")
		}
		time.Sleep(time.Millisecond)
	}
	if !db.locks[db.stripe([]byte(b))].TryLock() {
		t.Fatal("the stripe of b is still held by the waiting batch")
	}
	db.locks[db.stripe([]byte(b))].Unlock()
	select {
	case err := <-done:
		t.Fatalf("the batch finished (%v) while held was locked", err)
	case <-time.After(20 * time.Millisecond):
	}
	// Another writer can write a meanwhile; the batch's later write on a
	// sees it.
	if _, err := db.Apply(context.Background(), []byte(a), []byte("incr"), Consistent); err != nil {
		t.Fatal(err)
	}
	heldMu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []string{"1", "1", "boom", "2", "1", "4", "1"}
	for i, res := range results {
		got := ""
		if res.Err != nil {
			if !strings.Contains(res.Err.Error(), "boom") {
				t.Errorf("write %d: %v", i, res.Err)
			}
			got = "boom"
		} else {
			got = outputJSON(t, res.Out)
		}
		if got != want[i] {
			t.Errorf("write %d (%s %s) = %s, want %s", i, writes[i].Key, writes[i].Event, got, want[i])
		}
	}
	if st := db.Stats(); st.EventsApplied != 7 {
		t.Errorf("applied = %d, want 7 (6 of the batch, 1 between)", st.EventsApplied)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openBatchDB(t, dir)
	defer db.Close()
	for k, want := range map[string]string{a: `{"count":4}`, b: `{"count":1}`, held: `{"count":1}`, c: `{"count":1}`} {
		if got, _, err := db.Get([]byte(k)); err != nil || string(got) != want {
			t.Errorf("after a restart %s = %s (%v), want %s", k, got, err, want)
		}
	}
}
