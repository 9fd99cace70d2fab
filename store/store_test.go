package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func openMem(t *testing.T) *Store {
	t.Helper()
	s, err := Open(Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSlotMatchesRedisCluster(t *testing.T) {
	// Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
	for key, want := range map[string]uint16{
		"":                      0,
		"foo":                   12182,
		"bar":                   5061,
		"somekey":               11058,
		"foo{hash_tag}":         2515,
		"{hash_tag}":            2515,
		"123456789":             0x31C3 & (Slots - 1),
		"{}foo":                 crc16([]byte("{}foo")) & (Slots - 1), // empty tag: whole key hashed
		"foo{}{bar}":            crc16([]byte("foo{}{bar}")) & (Slots - 1),
		"foo{{bar}}zap":         crc16([]byte("{bar")) & (Slots - 1),
		"foo{bar}{zap}":         crc16([]byte("bar")) & (Slots - 1),
		"{user1000}.following":  crc16([]byte("user1000")) & (Slots - 1),
		"{user1000}.followers":  crc16([]byte("user1000")) & (Slots - 1),
		"no closing { brace at": crc16([]byte("no closing { brace at")) & (Slots - 1),
	} {
		if got := Slot([]byte(key)); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if crc16([]byte("123456789")) != 0x31C3 {
		t.Fatalf("crc16 check value = %#x, want 0x31c3", crc16([]byte("123456789")))
	}
	// The table-driven crc16 agrees with the bit-at-a-time definition:
	// slots are part of every stored key.
	bitwise := func(b []byte) uint16 {
		var crc uint16
		for _, c := range b {
			crc ^= uint16(c) << 8
			for i := 0; i < 8; i++ {
				if crc&0x8000 != 0 {
					crc = crc<<1 ^ 0x1021
				} else {
					crc <<= 1
				}
			}
		}
		return crc
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 10000; i++ {
		b := make([]byte, rng.Intn(40))
		rng.Read(b)
		if got, want := crc16(b), bitwise(b); got != want {
			t.Fatalf("crc16(%x) = %#x, want %#x", b, got, want)
		}
	}
}

func TestEscapedOrderAndPrefixFree(t *testing.T) {
	seed := rand.Int63()
	r := rand.New(rand.NewSource(seed))
	alphabet := []byte{0, 1, 0xFF, 'a', 'b'}
	gen := func() []byte {
		b := make([]byte, r.Intn(5))
		for i := range b {
			b[i] = alphabet[r.Intn(len(alphabet))]
		}
		return b
	}
	for i := 0; i < 20000; i++ {
		a, b := gen(), gen()
		ea, eb := AppendEscaped(nil, a), AppendEscaped(nil, b)
		if got, want := bytes.Compare(ea, eb), bytes.Compare(a, b); got != want {
			t.Fatalf("seed %d: order of %q,%q: escaped %d, raw %d", seed, a, b, got, want)
		}
		if !bytes.Equal(a, b) && (bytes.HasPrefix(eb, ea) || bytes.HasPrefix(ea, eb)) {
			t.Fatalf("seed %d: %q and %q escape to prefixes of each other", seed, a, b)
		}
		dec, rest, err := DecodeEscaped(nil, append(ea, 'z'))
		if err != nil || !bytes.Equal(dec, a) || string(rest) != "z" {
			t.Fatalf("seed %d: decode %q: %q %q %v", seed, a, dec, rest, err)
		}
	}
	for _, bad := range [][]byte{{}, {'a'}, {0}, {0, 2}, {'a', 0, 0x10}} {
		if _, _, err := DecodeEscaped(nil, bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeEscaped(%q) = %v, want ErrCorrupt", bad, err)
		}
	}
}

func TestPartitionRecords(t *testing.T) {
	s := openMem(t)
	key := []byte("k\x00ey")
	other := []byte("k") // a prefix of key: must not leak into its records
	b := s.NewBatch()
	b.PutSnapshot(7, key, []byte("snap"))
	b.PutTags(7, key, []byte("tags"))
	b.PutDelta(7, key, []byte{2}, []byte("d2"))
	b.PutDelta(7, key, []byte{1}, []byte("d1"))
	b.PutSnapshot(7, other, []byte("other"))
	b.AddPartitions(2)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()

	recs, ok, err := s.ReadPartition(7, key)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if string(recs.Snapshot) != "snap" || string(recs.Tags) != "tags" || len(recs.Deltas) != 2 ||
		string(recs.Deltas[0].Value) != "d1" || string(recs.Deltas[1].Value) != "d2" {
		t.Fatalf("records = %+v", recs)
	}
	if _, ok, _ := s.ReadPartition(8, key); ok {
		t.Fatal("partition found in the wrong slot")
	}
	if n, err := s.PartitionCount(); err != nil || n != 2 {
		t.Fatalf("PartitionCount = %d, %v", n, err)
	}

	b = s.NewBatch()
	b.DeleteDelta(7, key, []byte{1})
	b.DeletePartition(7, other)
	b.AddPartitions(-1)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	recs, _, _ = s.ReadPartition(7, key)
	if len(recs.Deltas) != 1 || string(recs.Deltas[0].Value) != "d2" {
		t.Fatalf("after delete: %+v", recs)
	}
	if _, ok, _ := s.ReadPartition(7, other); ok {
		t.Fatal("deleted partition still there")
	}
	if n, _ := s.PartitionCount(); n != 1 {
		t.Fatalf("PartitionCount = %d, want 1", n)
	}
}

func TestPartitionIter(t *testing.T) {
	s := openMem(t)
	type pk struct {
		slot uint16
		key  string
	}
	var want []pk
	b := s.NewBatch()
	for _, p := range []pk{{0, "a"}, {0, "a\x00"}, {0, "ab"}, {5, ""}, {16383, "z"}, {16383, "zz"}} {
		b.PutSnapshot(p.slot, []byte(p.key), []byte(p.key))
		b.PutDelta(p.slot, []byte(p.key), []byte{1}, []byte("d"))
		want = append(want, p)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	it, err := s.Partitions(0, nil, Slots-1)
	if err != nil {
		t.Fatal(err)
	}
	var got []pk
	for it.Next() {
		r := it.Records()
		if string(r.Snapshot) != string(it.Key()) || len(r.Deltas) != 1 {
			t.Fatalf("records of %q: %+v", it.Key(), r)
		}
		got = append(got, pk{it.Slot(), string(it.Key())})
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	// A range that starts mid-slot and ends before the last slot.
	it, _ = s.Partitions(0, []byte("a\x00"), 5)
	got = got[:0]
	for it.Next() {
		got = append(got, pk{it.Slot(), string(it.Key())})
	}
	it.Close()
	if len(got) != 3 || got[0].key != "a\x00" || got[2].slot != 5 {
		t.Fatalf("partial range = %v", got)
	}
}

func TestTagIterOrderAndBounds(t *testing.T) {
	s := openMem(t)
	type rec struct{ tag, key string }
	seed := rand.Int63()
	r := rand.New(rand.NewSource(seed))
	words := []string{"", "a", "a\x00", "a\x00b", "ab", "b", "\xff"}
	model := map[rec]bool{}
	b := s.NewBatch()
	for i := 0; i < 200; i++ {
		x := rec{words[r.Intn(len(words))], words[r.Intn(len(words))] + string(rune('a'+r.Intn(3)))}
		model[x] = true
		b.PutTag([]byte(x.tag), []byte(x.key))
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	var sorted []rec
	for x := range model {
		sorted = append(sorted, x)
	}
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].tag != sorted[j].tag {
			return sorted[i].tag < sorted[j].tag
		}
		return sorted[i].key < sorted[j].key
	})
	// One iterator reused for every seek (as a pipeline's searches share
	// one) must answer as a fresh one does. It was created before a later
	// write, which it must not see: it keeps its view of the store.
	reused, err := s.SeekTags(nil, nil, false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer reused.Close()
	b = s.NewBatch()
	b.PutTag([]byte("a"), []byte("late"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	for _, from := range append(sorted, rec{"a", ""}, rec{"zz", ""}) {
		for _, mode := range []struct{ after, only bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
			after := mode.after
			var want []rec
			for _, x := range sorted {
				c := x.tag > from.tag || x.tag == from.tag && (x.key > from.key || !after && x.key == from.key)
				if c && (!mode.only || x.tag == from.tag) {
					want = append(want, x)
				}
			}
			reused.Seek([]byte(from.tag), []byte(from.key), after, mode.only)
			check := func(name string, it *TagIter, want []rec) {
				t.Helper()
				var got []rec
				for it.Next() {
					got = append(got, rec{string(it.Tag()), string(it.Key())})
				}
				if len(got) != len(want) {
					t.Fatalf("seed %d: %s from %q %+v: got %d records, want %d", seed, name, from, mode, len(got), len(want))
				}
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("seed %d: %s from %q %+v: record %d = %q, want %q", seed, name, from, mode, i, got[i], want[i])
					}
				}
			}
			check("reused", reused, want)
			// A fresh iterator sees the late record too.
			fresh := want
			if late := (rec{"a", "late"}); (late.tag > from.tag || late.tag == from.tag && (late.key > from.key || !after && late.key == from.key)) && (!mode.only || from.tag == "a") {
				fresh = append([]rec(nil), want...)
				i := sort.Search(len(fresh), func(i int) bool {
					return fresh[i].tag > late.tag || fresh[i].tag == late.tag && fresh[i].key >= late.key
				})
				fresh = slices.Insert(fresh, i, late)
			}
			it, err := s.SeekTags([]byte(from.tag), []byte(from.key), after, mode.only)
			if err != nil {
				t.Fatal(err)
			}
			check("fresh", it, fresh)
			if err := it.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestFormatVersionChecks(t *testing.T) {
	fs := vfs.NewMem()
	newWithFormat(t, fs, FormatVersion+1)
	// Without the marker (as in a backup), the read-only look inside finds it.
	if err := fs.Remove(fs.PathJoin("db", markerFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: "db", FS: fs}); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("Open of a newer format = %v, want ErrNewerFormat", err)
	}
	// With a marker that says so, pebble is not even opened.
	f, _ := fs.Create(fs.PathJoin("db", markerFile), vfs.WriteCategoryUnspecified)
	f.Write([]byte(markerText(FormatVersion + 1)))
	f.Close()
	if _, err := Open(Options{Dir: "db", FS: fs}); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("Open with a newer marker = %v, want ErrNewerFormat", err)
	}

	// Another program's pebble data is refused and left alone.
	other, err := pebble.Open("other", &pebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	other.Set([]byte("k"), []byte("v"), pebble.Sync)
	other.Close()
	if _, err := Open(Options{Dir: "other", FS: fs}); !errors.Is(err, ErrNotLegion) {
		t.Fatalf("Open of foreign data = %v, want ErrNotLegion", err)
	}
	if _, err := fs.Stat(fs.PathJoin("other", markerFile)); err == nil {
		t.Fatal("a refused dir was marked")
	}
}

func TestOpenLockedDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(Options{Dir: dir})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestSyncModes(t *testing.T) {
	for _, m := range []SyncMode{SyncAlways, SyncEverySecond, SyncNever} {
		parsed, err := ParseSyncMode(m.String())
		if err != nil || parsed != m {
			t.Fatalf("ParseSyncMode(%q) = %v, %v", m, parsed, err)
		}
		dir := filepath.Join(t.TempDir(), "data")
		s, err := Open(Options{Dir: dir, Sync: m})
		if err != nil {
			t.Fatal(err)
		}
		b := s.NewBatch()
		b.SetMeta("x", []byte("y"))
		if err := b.Apply(); err != nil {
			t.Fatal(err)
		}
		if err := b.Wait(); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = Open(Options{Dir: dir, Sync: m})
		if err != nil {
			t.Fatal(err)
		}
		if v, ok, err := s.GetMeta("x"); err != nil || !ok || string(v) != "y" {
			t.Fatalf("mode %v: after reopen got %q %v %v", m, v, ok, err)
		}
		s.Close()
	}
	if _, err := ParseSyncMode("sometimes"); err == nil {
		t.Fatal("ParseSyncMode accepted nonsense")
	}
}

// TestIdleTagIteratorsStayCurrent: tag iterators are reused between
// searches only while nothing is written, so every search sees every write
// that finished before it began, however searches and writes interleave.
func TestIdleTagIteratorsStayCurrent(t *testing.T) {
	s, err := Open(Options{Dir: "db", FS: vfs.NewMem(), Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		it, err := s.SeekTags([]byte("t"), nil, false, true)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for it.Next() {
			n++
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	put := func(key string) {
		b := s.NewBatch()
		b.PutTag([]byte("t"), []byte(key))
		if err := b.Commit(); err != nil {
			t.Error(err)
		}
		b.Close()
	}

	// Without writes, the next search takes the iterator the last one
	// left.
	put("a")
	first, _ := s.SeekTags([]byte("t"), nil, false, true)
	first.Close()
	again, _ := s.SeekTags([]byte("t"), nil, false, true)
	if again != first {
		t.Fatal("an idle iterator was not reused while nothing was written")
	}
	again.Close()
	put("b")
	if s.tagIters.n.Load() != 0 {
		t.Fatal("a commit left stale idle iterators open")
	}
	if n := count(); n != 2 {
		t.Fatalf("search after a write = %d records, want 2", n)
	}

	// Concurrent writers and searchers.
	const writes = 2000
	var acked atomic.Int64
	acked.Store(2)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < writes; i++ {
			put(fmt.Sprintf("k%05d", i))
			acked.Add(1)
		}
	}()
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for acked.Load() < writes+2 {
				before := acked.Load()
				if n := count(); int64(n) < before {
					t.Errorf("a search found %d records after %d writes had finished", n, before)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Closing with idle iterators releases them (pebble refuses to close
	// with iterators open).
	count()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWriteStallsCounted: the stall events pebble reports are counted,
// timed and logged.
func TestWriteStallsCounted(t *testing.T) {
	var log bytes.Buffer
	st := &engineEvents{logger: slog.New(slog.NewTextHandler(&log, nil))}
	popts := pebbleOptions(Options{FS: vfs.NewMem()}, nil, st.logger, st)
	popts.EventListener.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "memtable count limit reached"})
	s := &Store{events: st}
	if n, d := s.WriteStalls(); n != 1 || d < 0 || !s.Stalled() {
		t.Fatalf("during a stall: %d stalls, %v, stalled %v", n, d, s.Stalled())
	}
	time.Sleep(time.Millisecond)
	popts.EventListener.WriteStallEnd()
	if s.Stalled() {
		t.Fatal("still stalled after the stall ended")
	}
	n, d := s.WriteStalls()
	if n != 1 || d < time.Millisecond {
		t.Fatalf("after a stall of at least 1ms: %d stalls, %v", n, d)
	}
	if n2, d2 := s.WriteStalls(); n2 != n || d2 != d {
		t.Fatal("the total moved without a stall")
	}
	if !strings.Contains(log.String(), "memtable count limit reached") || !strings.Contains(log.String(), "writes resumed") {
		t.Fatalf("log = %q", log.String())
	}
}

// TestFlushReleasesFreeMemory checks that the end of a flush hands free
// memory back to the system: at once, then no more often than
// releaseInterval, with the last of a burst released when the interval
// ends; Close cancels a release due.
func TestFlushReleasesFreeMemory(t *testing.T) {
	s := openMem(t)
	flush := func() {
		b := s.NewBatch()
		b.PutSnapshot(1, []byte("k"), []byte("v"))
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if err := s.Pebble().Flush(); err != nil {
			t.Fatal(err)
		}
	}
	releases := func() int64 { return s.events.releases.Load() }
	before := releases()
	flush()
	first := releases()
	if first <= before {
		t.Fatal("a flush released no memory")
	}
	flush()
	flush()
	if got := releases(); got != first {
		t.Fatalf("%d releases within %v", got-before, releaseInterval)
	}
	deadline := time.Now().Add(releaseInterval + 5*time.Second)
	for releases() != first+1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d releases after the interval, want 1 more than %d", releases(), first)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A release due when the store closes is not made.
	flush()
	due := releases()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(releaseInterval + 200*time.Millisecond)
	if got := releases(); got != due {
		t.Fatalf("%d releases after Close", got-due)
	}
}

// TestBatchCountersSummed: a batch's counter adjustments are summed into
// one operand per counter; adjustments that cancel leave the batch empty
// and the counter as it was.
func TestBatchCountersSummed(t *testing.T) {
	s := openMem(t)
	b := s.NewBatch()
	for i := 0; i < 1000; i++ {
		b.AddPartitions(1)
		b.AddCounter("refs/x", 1)
	}
	b.AddCounter("refs/x", -400)
	before := b.Len()
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if n, err := s.PartitionCount(); err != nil || n != 1000 {
		t.Fatalf("partitions = %d (%v), want 1000", n, err)
	}
	if n, err := s.Counter("refs/x"); err != nil || n != 600 {
		t.Fatalf("refs/x = %d (%v), want 600", n, err)
	}
	if before != 12 { // a pebble batch header, nothing else
		t.Errorf("records before apply: %d bytes, want only the header", before)
	}
	b = s.NewBatch()
	defer b.Close()
	b.AddPartitions(3)
	if b.Empty() {
		t.Fatal("a batch with a counter adjustment is empty")
	}
	b.AddPartitions(-3)
	if !b.Empty() {
		t.Fatal("adjustments that cancel leave a write")
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.PartitionCount(); n != 1000 {
		t.Fatalf("partitions = %d, want 1000", n)
	}
}

// TestMissingPartitionAnsweredByFilters: looking up a partition that does
// not exist, where the partition filter cannot answer (read only here;
// else before its scan, or a false positive), consults pebble's bloom
// filters of the lowest level too, where pebble's Get would read index and
// data blocks; an existing one is still found there.
func TestMissingPartitionAnsweredByFilters(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open(Options{Dir: "db", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	for i := 0; i < 2000; i++ {
		key := fmt.Appendf(nil, "p:%d", i)
		b.PutSnapshot(Slot(key), key, []byte("state"))
		b.PutTags(Slot(key), key, []byte("tags"))
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := s.Pebble().Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, true); err != nil {
		t.Fatal(err)
	}
	if n := s.Pebble().Metrics().Levels[6].TablesCount; n == 0 {
		t.Fatal("nothing in the lowest level after a full compaction")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(Options{Dir: "db", FS: fs, ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hits := s.Pebble().Metrics().Filter.Hits
	for i := 0; i < 100; i++ {
		key := fmt.Appendf(nil, "new:%d", i)
		if _, ok, err := s.ReadPartition(Slot(key), key); ok || err != nil {
			t.Fatalf("ReadPartition(%s) = %v, %v", key, ok, err)
		}
	}
	if got := s.Pebble().Metrics().Filter.Hits - hits; got < 90 {
		t.Errorf("%d of 100 missing partitions were answered by a filter", got)
	}
	key := []byte("p:1234")
	recs, ok, err := s.ReadPartition(Slot(key), key)
	if err != nil || !ok || string(recs.Snapshot) != "state" || string(recs.Tags) != "tags" {
		t.Errorf("ReadPartition(p:1234) = %q %q %v %v", recs.Snapshot, recs.Tags, ok, err)
	}
}

// TestSyncPacing: after a sync of a large group SyncPaced holds the next
// one back, after a small group it does not; SyncUnpaced never does, and
// a fixed interval always applies.
func TestSyncPacing(t *testing.T) {
	var syncMin, synced atomic.Int64
	for _, tc := range []struct {
		mode    time.Duration
		entries int64
		want    time.Duration
	}{
		{SyncPaced, 0, 0},
		{SyncPaced, pacedEntries - 1, 0},
		{SyncPaced, pacedEntries, pacedInterval},
		{SyncPaced, 1000, pacedInterval},
		{SyncUnpaced, 1000, 0},
		{3 * time.Millisecond, 0, 3 * time.Millisecond},
		{3 * time.Millisecond, 1000, 3 * time.Millisecond},
	} {
		syncMin.Store(int64(tc.mode))
		synced.Store(tc.entries)
		if got := syncInterval(&syncMin, &synced); got != tc.want {
			t.Errorf("mode %v after a group of %d entries: interval %v, want %v", tc.mode, tc.entries, got, tc.want)
		}
		if synced.Load() != 0 {
			t.Fatal("the group's count was not reset for the next sync")
		}
	}
	// Through commits: each syncing commit counts its entries.
	s, err := Open(Options{Dir: "db", FS: vfs.NewMem(), Sync: SyncAlways, SyncMinInterval: SyncUnpaced})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.synced.Store(0)
	b := s.NewBatch()
	for i := range 5 {
		b.PutSnapshot(1, []byte{byte(i)}, []byte("v"))
	}
	if err := b.Apply(); err != nil {
		t.Fatal(err)
	}
	if n := s.synced.Load(); n != 5 && n != 0 {
		t.Fatalf("a commit of 5 entries counted %d", n)
	}
	b.Wait()
	b.Close()
}

// TestSyncMinInterval: with a least interval between log syncs, commits
// that each wait for their sync, one after another, are spaced by it. The
// check is a lower bound on the time taken, which no slow machine breaks.
func TestSyncMinInterval(t *testing.T) {
	const gap = 20 * time.Millisecond
	s, err := Open(Options{Dir: "db", FS: vfs.NewMem(), Sync: SyncAlways, SyncMinInterval: gap})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	for i := range 6 {
		b := s.NewBatch()
		b.PutSnapshot(1, []byte("k"), []byte{byte(i)})
		err := b.Commit()
		b.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 5*gap {
		t.Fatalf("6 synced commits took %v, less than 5 intervals of %v: the interval is not applied", took, gap)
	}
}

// TestBatchReuse: a closed batch goes back to the store's pool, and what
// it held (records, counters, tag slots, the applied and waited states)
// does not reach the batch that reuses it.
func TestBatchReuse(t *testing.T) {
	s := openMem(t)
	b := s.NewBatch()
	b.PutTag([]byte("t"), []byte("k"))
	b.AddCounter("refs/x", 3)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	for range 100 {
		b := s.NewBatch()
		if !b.Empty() || len(b.counters) != 0 || len(b.tagSlots) != 0 || b.applied || b.waited {
			t.Fatalf("a new batch carries what a closed one held: empty %v, counters %v, tag slots %v, applied %v, waited %v",
				b.Empty(), b.counters, b.tagSlots, b.applied, b.waited)
		}
		b.Close()
	}
	// A closed batch is reused: making and closing one allocates nothing
	// (pebble pools its own batches).
	if n := testing.AllocsPerRun(100, func() { s.NewBatch().Close() }); n != 0 {
		t.Errorf("NewBatch and Close allocate %.1f times", n)
	}
	// The reused batch commits as a fresh one would.
	b = s.NewBatch()
	b.PutTag([]byte("t"), []byte("k2"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
}
