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
