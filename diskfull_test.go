package legion

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// logText is a log's text, written by slog's text handler.
type logText struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logText) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logText) has(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.b.String(), `msg="`+msg)
}

// slowIndexHandler tags the state <prefix>:<count> after some work, so
// that re-indexing a few thousand partitions takes a while.
func slowIndexHandler(prefix string) string {
	return fmt.Sprintf(`
function apply(event, state, ctx) state = state or { n = 0 }; state.n = state.n + 1; return state.n, state end
function index(state, key)
  local x = 0
  for i = 1, 3000 do x = x + i end
  return { %q .. state.n }
end`, prefix+":")
}

// While the disk is full, events are refused with ErrNoSpace and change
// nothing, reads and searches go on, and a re-index pauses; once a table
// can be written again, events are taken and the re-index completes.
func TestDiskFullRefusesEvents(t *testing.T) {
	noSpace := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".sst") && (op.Kind == errorfs.OpCreate || op.Kind == errorfs.OpFileWrite) {
			return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
		}
		return nil
	})}
	logs := &logText{}
	db := openTestDB(t, countingHandler("a"), func(c *Config) {
		c.FS, c.DataDir = errorfs.Wrap(vfs.NewMem(), noSpace), "db"
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	waitReindex(t, db, 1)
	ctx := context.Background()
	keys := benchKeys(2000)
	for _, k := range keys {
		if _, err := db.Apply(ctx, k, []byte("e"), Consistent); err != nil {
			t.Fatal(err)
		}
	}
	passes := db.ReindexStatus().Passes
	if _, err := db.LoadScript([]byte(slowIndexHandler("b"))); err != nil {
		t.Fatal(err)
	}
	// The disk fills while the re-index runs.
	noSpace.On()
	if _, err := db.store.Pebble().AsyncFlush(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); db.StorageStats().DiskFull == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the disk-full state was not noticed")
		}
	}
	if _, err := db.Apply(ctx, keys[0], []byte("e"), Consistent); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("event while the disk is full: err = %v, want ErrNoSpace", err)
	}
	results := make([]Result, 3)
	writes := []Write{{Key: keys[1], Event: []byte("e")}, {Key: []byte("new"), Event: []byte("e")}, {Key: keys[1], Event: []byte("e")}}
	if err := db.ApplyBatch(ctx, writes, results)(); err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if !errors.Is(r.Err, ErrNoSpace) {
			t.Fatalf("batched event %d while the disk is full: err = %v, want ErrNoSpace", i, r.Err)
		}
	}
	if got, ok, err := db.Get(keys[1]); err != nil || !ok || string(got) != `{"n":1}` {
		t.Fatalf("read while the disk is full: %s %v %v (a refused event must change nothing)", got, ok, err)
	}
	if _, ok, _ := db.Get([]byte("new")); ok {
		t.Fatal("a refused event created its partition")
	}
	if st := db.StorageStats(); st.WritesRefusedDiskFull == 0 || st.Failed != nil {
		t.Fatalf("storage stats while the disk is full: %+v", st)
	}
	for deadline := time.Now().Add(10 * time.Second); !logs.has("re-index paused"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the re-index did not pause: %+v", db.ReindexStatus())
		}
	}

	if logs.has("re-index of a partition failed") {
		t.Fatal("a partition's re-index refused for want of space was logged as failed")
	}
	noSpace.Off()
	waitReindex(t, db, passes+1)
	if st := db.ReindexStatus(); st.Errors != 0 {
		t.Fatalf("re-index after the disk had room again: %+v", st)
	}
	if _, err := db.Apply(ctx, keys[1], []byte("e"), Consistent); err != nil {
		t.Fatalf("event once there is room: %v", err)
	}
	checkTags(t, db, keys[1], "b:2")
	hits, err := db.Search(SearchQuery{Tag: []byte("b:1"), Exact: true, Count: 5000})
	if err != nil || len(hits) != len(keys)-1 {
		t.Fatalf("search b:1 after the re-index: %d hits, %v; want %d", len(hits), err, len(keys)-1)
	}
}
