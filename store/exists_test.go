package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestPartitionFilterLayers: a filter that outgrows its first layer adds
// larger ones and still answers "maybe" for every key it was given, while
// it answers "no" for most others; until ready, or nil, it knows nothing.
func TestPartitionFilterLayers(t *testing.T) {
	f := newPartitionFilter(1000) // filterMinCapacity applies
	prefix := func(i int) []byte { return AppendPartitionPrefix(nil, uint16(i%Slots), fmt.Appendf(nil, "k%d", i)) }
	const n = 2*filterMinCapacity + filterGrowth*filterMinCapacity // three layers
	for i := range n {
		f.add(prefix(i))
	}
	if l := len(*f.layers.Load()); l != 3 {
		t.Fatalf("%d layers after %d keys, want 3", l, n)
	}
	if !f.mayHold(prefix(n + 1)) {
		t.Fatal("a filter not ready answered no")
	}
	f.ready.Store(true)
	for i := range n {
		if !f.mayHold(prefix(i)) {
			t.Fatalf("key %d added, then not held", i)
		}
	}
	held := 0
	const absent = 100000
	for i := n; i < n+absent; i++ {
		if f.mayHold(prefix(i)) {
			held++
		}
	}
	// Each layer lets about 1% through when full; three, at most 3%.
	if held > absent*4/100 {
		t.Fatalf("%d of %d absent keys held", held, absent)
	}
	if got := f.skipped.Load(); got != uint64(absent-held) {
		t.Fatalf("skipped %d, want %d", got, absent-held)
	}
	t.Logf("%d layers, %d bytes; %d of %d absent keys let through", len(*f.layers.Load()), f.bytes(), held, absent)
	var none *partitionFilter
	none.add(prefix(1))
	if !none.mayHold(prefix(1)) || none.bytes() != 0 {
		t.Fatal("a nil filter must answer maybe and hold nothing")
	}
}

func TestEscapedLen(t *testing.T) {
	for _, s := range []string{"", "a", "\x00", "a\x00b", "\x00\x00", "\xff\x00\x01"} {
		enc := AppendEscaped(nil, []byte(s))
		n, ok := escapedLen(append(enc, 's', 0x00, 0x01))
		if !ok || n != len(enc) {
			t.Errorf("escapedLen of %q = %d, %v; want %d", s, n, ok, len(enc))
		}
	}
	for _, b := range []string{"", "a", "a\x00", "a\x00\x02", "\x00\xff"} {
		if _, ok := escapedLen([]byte(b)); ok {
			t.Errorf("escapedLen(%q) accepted a broken string", b)
		}
	}
}

// writePartitions writes partitions keys[from:to] through b: each a
// snapshot, some a tags record and deltas as well.
func writePartitions(t *testing.T, s *Store, keys [][]byte, from, to int) {
	t.Helper()
	b := s.NewBatch()
	defer b.Close()
	for i := from; i < to; i++ {
		k := keys[i]
		b.PutSnapshot(Slot(k), k, []byte("snapshot"))
		if i%3 == 0 {
			b.PutTags(Slot(k), k, []byte("tags"))
			for d := range 3 {
				b.PutDelta(Slot(k), k, []byte{byte(d)}, []byte("delta"))
			}
		}
		b.AddPartitions(1)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

func waitFilterReady(t *testing.T, s *Store) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, ready, _ := s.PartitionFilterStats(); ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the partition filter never became ready")
		}
	}
}

// TestPartitionFilterScan: a store opened on stored partitions scans them
// into its filter, over several views; partitions written while the scan
// runs, or after, are in it too. Then every partition reads back, and
// most reads of partitions never written are answered by the filter.
func TestPartitionFilterScan(t *testing.T) {
	fs := vfs.NewMem()
	var keys [][]byte
	for i := range 3000 {
		// Keys with zero bytes test the escaped prefixes.
		keys = append(keys, fmt.Appendf(nil, "part\x00%d\x00", i))
	}
	s, err := Open(Options{Dir: "db", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	writePartitions(t, s, keys, 0, 2000)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	scanning := make(chan struct{})
	s, err = Open(Options{Dir: "db", FS: fs, testScanView: 300, testScanning: func(s *Store) {
		// Partitions the scan's first view cannot see.
		writePartitions(t, s, keys, 2000, 2500)
		close(scanning)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	<-scanning
	writePartitions(t, s, keys, 2500, 3000)
	waitFilterReady(t, s)
	for i, k := range keys {
		recs, ok, err := s.ReadPartition(Slot(k), k)
		if err != nil || !ok || string(recs.Snapshot) != "snapshot" {
			t.Fatalf("partition %d: %v %v %q", i, ok, err, recs.Snapshot)
		}
		if want := 0; i%3 == 0 {
			want = 3
			if len(recs.Deltas) != want || string(recs.Tags) != "tags" {
				t.Fatalf("partition %d: %d deltas, tags %q", i, len(recs.Deltas), recs.Tags)
			}
		}
	}
	const absent = 2000
	for i := range absent {
		k := fmt.Appendf(nil, "never%d", i)
		if _, ok, err := s.ReadPartition(Slot(k), k); ok || err != nil {
			t.Fatalf("partition never written: %v %v", ok, err)
		}
	}
	bytes, _, skipped := s.PartitionFilterStats()
	if skipped < absent*9/10 {
		t.Fatalf("the filter answered %d of %d reads of absent partitions", skipped, absent)
	}
	if bytes <= 0 {
		t.Fatalf("filter of %d bytes", bytes)
	}
}

// TestPartitionFilterReadOnly: a store opened read only has no filter and
// reads every partition.
func TestPartitionFilterReadOnly(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open(Options{Dir: "db", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	keys := [][]byte{[]byte("a"), []byte("b")}
	writePartitions(t, s, keys, 0, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: "db", FS: fs, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, k := range keys {
		if _, ok, err := s.ReadPartition(Slot(k), k); !ok || err != nil {
			t.Fatalf("%s: %v %v", k, ok, err)
		}
	}
	if bytes, ready, _ := s.PartitionFilterStats(); bytes != 0 || ready {
		t.Fatalf("read-only store: filter of %d bytes, ready %v", bytes, ready)
	}
}

// TestPartitionReadSkipsTablesWithoutIt: on the partition comparer, a read
// of a partition consults the bloom filters of every table and reads only
// the tables that hold it; on pebble's default comparer (data dirs before
// format 3) it reads into every table whose range covers the partition.
func TestPartitionReadSkipsTablesWithoutIt(t *testing.T) {
	blockReads := map[string]int64{}
	for name, cmp := range map[string]*pebble.Comparer{"default": pebble.DefaultComparer, "partitions": partitionComparer} {
		s, err := Open(Options{Dir: "db", FS: vfs.NewMem(), comparer: cmp})
		if err != nil {
			t.Fatal(err)
		}
		var keys [][]byte
		for i := range 4000 {
			keys = append(keys, fmt.Appendf(nil, "k%d", i))
		}
		// Eight tables in L0, each with keys from the whole key space.
		for part := range 8 {
			writePartitions(t, s, keys, part*500, part*500+500)
			if err := s.Pebble().Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if n := s.Pebble().Metrics().Levels[0].TablesCount; n != 8 {
			t.Fatalf("%s: %d tables in L0", name, n)
		}
		for i := 0; i < len(keys); i += 10 {
			k := keys[i]
			lower := AppendPartitionPrefix(nil, Slot(k), k)
			it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower), UseL6Filters: true})
			if err != nil {
				t.Fatal(err)
			}
			if recs, ok, err := s.readPartition(it, lower); !ok || err != nil || string(recs.Snapshot) != "snapshot" {
				t.Fatalf("%s: partition %d: %v %v", name, i, ok, err)
			}
			blockReads[name] += int64(it.Stats().InternalStats.BlockBytes)
			it.Close()
		}
		s.Close()
	}
	t.Logf("bytes of blocks read for 400 partitions: %v", blockReads)
	if blockReads["partitions"]*2 > blockReads["default"] {
		t.Fatalf("the partition comparer's reads took %d bytes of blocks, the default's %d", blockReads["partitions"], blockReads["default"])
	}
}
