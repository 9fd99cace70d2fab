package legion

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/legiondb/legion/index"
	"github.com/legiondb/legion/store"
)

// paddedHandler's state is about 1 KB, so that a few events of 100 bytes
// go to the log before a snapshot replaces it, and its tag changes with
// every event.
const paddedHandler = `
function apply(event, state, ctx)
  state = state or { n = 0, pad = string.rep("p", 1000) }
  state.n = state.n + 1
  return state.n, state
end
function index(state, key) return { "n:" .. state.n } end`

// countingHandler counts events and tags the state <prefix>:<count>.
func countingHandler(prefix string) string {
	return fmt.Sprintf(`
function apply(event, state, ctx) state = state or { n = 0 }; state.n = state.n + 1; return state.n, state end
function index(state, key) return { %q .. state.n } end`, prefix+":")
}

// openTagsTest opens a DB on fs (in its dir "db") with src loaded.
func openTagsTest(t *testing.T, fs vfs.FS, src string) *DB {
	t.Helper()
	return openTestDB(t, src, func(c *Config) { c.FS, c.DataDir = fs, "db" })
}

// checkTags requires key's stored tags, the index and LEGION.CHECK to
// agree that key has exactly tag.
func checkTags(t *testing.T, db *DB, key []byte, tag string) {
	t.Helper()
	rec, ok, err := db.store.PartitionTags(store.Slot(key), key)
	if err != nil || !ok {
		t.Fatalf("tags of %q: %v %v", key, ok, err)
	}
	if !bytes.HasSuffix(rec, []byte(tag)) {
		t.Fatalf("tags record of %q is %q, want the tag %q", key, rec, tag)
	}
	hits, err := db.Search(SearchQuery{Tag: []byte(tag), Exact: true, Count: 1000})
	if err != nil || !slices.ContainsFunc(hits, func(h Hit) bool { return bytes.Equal(h.Key, key) }) {
		t.Fatalf("search %q lacks %q: %v %v", tag, key, hits, err)
	}
	rep, err := db.Check(false)
	// Loading the handler starts a re-index of whatever is stored.
	for deadline := time.Now().Add(10 * time.Second); errors.Is(err, ErrReindexing) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		rep, err = db.Check(false)
	}
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("check: %v %v", rep.Problems, err)
	}
}

// Tags that change while the snapshot stays get a record of their own,
// which a reload prefers to the older tags in the snapshot; the next
// snapshot takes them in and drops the record.
func TestTagsRecordAndSnapshot(t *testing.T) {
	db := openTagsTest(t, vfs.NewMem(), paddedHandler)
	key := []byte("k")
	sawRecord, sawDropped := 0, 0
	for i := 1; i <= 120; i++ {
		if _, err := db.Apply(context.Background(), key, bytes.Repeat([]byte("e"), 100), Consistent); err != nil {
			t.Fatal(err)
		}
		if i <= 60 {
			// The next event reloads the partition from its records;
			// later ones find it in the cache.
			db.cache.remove(key)
		}
		checkTags(t, db, key, fmt.Sprintf("n:%d", i))
		recs, ok, err := db.store.ReadPartition(store.Slot(key), key)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if _, _, tagged, _ := store.SplitSnapshot(recs.Snapshot); !tagged {
			t.Fatalf("event %d: the snapshot carries no tags", i)
		}
		switch {
		case recs.Tags != nil:
			sawRecord++
		case sawRecord > 0:
			sawDropped++
		}
	}
	if sawRecord < 10 || sawDropped < 10 {
		t.Fatalf("%d events left a tags record and %d dropped it: the test does not cover both", sawRecord, sawDropped)
	}
}

// A data dir of format 1 (snapshots without tags, every partition's tags
// in a record of their own) is read as it is and moves to the new records
// as partitions are written.
func TestFormat1Partitions(t *testing.T) {
	fs := vfs.NewMem()
	src := countingHandler("n")
	db := openTagsTest(t, fs, src)
	keys := benchKeys(20)
	for _, k := range keys {
		if _, err := db.Apply(context.Background(), k, []byte("e"), Consistent); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Rewrite the records as format 1 wrote them.
	st, err := store.Open(store.Options{Dir: "db", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	b := st.NewBatch()
	for _, k := range keys {
		recs, ok, err := st.ReadPartition(store.Slot(k), k)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		tags, inf, tagged, err := store.SplitSnapshot(recs.Snapshot)
		if err != nil || !tagged || recs.Tags != nil {
			t.Fatalf("%q: %v %v %q", k, tagged, err, recs.Tags)
		}
		b.PutSnapshot(store.Slot(k), k, inf)
		b.PutTags(store.Slot(k), k, tags)
	}
	b.SetMeta("format", binary.BigEndian.AppendUint32(nil, 1))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	st.Close()

	db = openTagsTest(t, fs, src)
	if v, ok, err := db.store.GetMeta("format"); err != nil || !ok || binary.BigEndian.Uint32(v) != store.FormatVersion {
		t.Fatalf("format after opening: %x %v %v", v, ok, err)
	}
	for _, k := range keys {
		checkTags(t, db, k, "n:1")
	}
	for _, k := range keys[:10] {
		if _, err := db.Apply(context.Background(), k, []byte("e"), Consistent); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range keys {
		want, record := "n:2", false
		if i >= 10 {
			want, record = "n:1", true
		}
		checkTags(t, db, k, want)
		recs, _, err := db.store.ReadPartition(store.Slot(k), k)
		if err != nil {
			t.Fatal(err)
		}
		_, _, tagged, _ := store.SplitSnapshot(recs.Snapshot)
		if (recs.Tags != nil) != record || tagged == record {
			t.Fatalf("%q: tags record %q, snapshot with tags %v; want the record only if not written since", k, recs.Tags, tagged)
		}
	}
}

// waitReindex waits for the re-index that loading a handler started.
func waitReindex(t *testing.T, db *DB, passes int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if st := db.ReindexStatus(); st.Passes >= passes && !st.Running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the re-index did not end: %+v", db.ReindexStatus())
		}
	}
}

// A re-index writes new tags as records of their own, and the next event
// that writes a partition's snapshot takes them in.
func TestTagsRecordOfReindex(t *testing.T) {
	db := openTagsTest(t, vfs.NewMem(), countingHandler("a"))
	waitReindex(t, db, 1)
	keys := benchKeys(10)
	for _, k := range keys {
		if _, err := db.Apply(context.Background(), k, []byte("e"), Consistent); err != nil {
			t.Fatal(err)
		}
	}
	passes := db.ReindexStatus().Passes
	if _, err := db.LoadScript([]byte(countingHandler("b"))); err != nil {
		t.Fatal(err)
	}
	waitReindex(t, db, passes+1)
	for _, k := range keys {
		checkTags(t, db, k, "b:1")
		if recs, _, err := db.store.ReadPartition(store.Slot(k), k); err != nil || recs.Tags == nil {
			t.Fatalf("%q after the re-index: tags record %q, %v", k, recs.Tags, err)
		}
		if _, err := db.Apply(context.Background(), k, []byte("e"), Consistent); err != nil {
			t.Fatal(err)
		}
		checkTags(t, db, k, "b:2")
		if recs, _, err := db.store.ReadPartition(store.Slot(k), k); err != nil || recs.Tags != nil {
			t.Fatalf("%q after an event: tags record %q, %v; want it taken into the snapshot", k, recs.Tags, err)
		}
	}
}

// A repair that rewrites a cached partition's tags gives them a record of
// their own, which the next snapshot takes in.
func TestTagsRecordOfRepair(t *testing.T) {
	db := openTagsTest(t, vfs.NewMem(), countingHandler("n"))
	waitReindex(t, db, 1)
	key := []byte("k")
	if _, err := db.Apply(context.Background(), key, []byte("e"), Consistent); err != nil {
		t.Fatal(err)
	}
	// Damage the stored tags under the cached partition: a record naming
	// another tag, which the index follows.
	rec, _, err := db.store.PartitionTags(store.Slot(key), key)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := index.DecodeTags(rec)
	if err != nil {
		t.Fatal(err)
	}
	wrong := index.Tags{SHA: tags.SHA, Tags: []string{"n:99"}}
	b := db.store.NewBatch()
	b.PutTags(store.Slot(key), key, wrong.AppendBinary(nil))
	index.Update(b, key, tags.Tags, wrong.Tags)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	rep, err := db.Check(true)
	if err != nil || rep.TagMismatches != 1 || rep.Repaired == 0 {
		t.Fatalf("repair: %+v, %v", rep, err)
	}
	checkTags(t, db, key, "n:1")
	if _, err := db.Apply(context.Background(), key, []byte("e"), Consistent); err != nil {
		t.Fatal(err)
	}
	checkTags(t, db, key, "n:2")
	if recs, _, err := db.store.ReadPartition(store.Slot(key), key); err != nil || recs.Tags != nil {
		t.Fatalf("after an event: tags record %q, %v; want it taken into the snapshot", recs.Tags, err)
	}
}
