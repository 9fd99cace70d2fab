package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestSplitSnapshot(t *testing.T) {
	inf := []byte("\x02the infimum")
	for _, tags := range [][]byte{nil, []byte("\x01tags record")} {
		v := append(AppendSnapshotTags(nil, tags), inf...)
		gotTags, gotInf, tagged, err := SplitSnapshot(v)
		if err != nil || !tagged || !bytes.Equal(gotTags, tags) || !bytes.Equal(gotInf, inf) {
			t.Fatalf("tags %q: split into %q, %q, %v, %v", tags, gotTags, gotInf, tagged, err)
		}
	}
	// A format 1 record is the infimum alone.
	if gotTags, gotInf, tagged, err := SplitSnapshot(inf); err != nil || tagged || gotTags != nil || !bytes.Equal(gotInf, inf) {
		t.Fatalf("format 1 record: %q, %q, %v, %v", gotTags, gotInf, tagged, err)
	}
	// Lengths beyond the record, or unreadable, are corruption.
	for _, bad := range [][]byte{
		{snapshotTagged},
		{snapshotTagged, 5, 'a'},
		{snapshotTagged, 0x80},
		binary.AppendUvarint([]byte{snapshotTagged}, 1<<62),
	} {
		if _, _, _, err := SplitSnapshot(bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("SplitSnapshot(%q) = %v, want ErrCorrupt", bad, err)
		}
	}
}

// PartitionTags answers the separate tags record when there is one, else
// the snapshot's.
func TestPartitionTags(t *testing.T) {
	s, err := Open(Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := []byte("k")
	slot := Slot(key)
	write := func(f func(b *Batch)) {
		t.Helper()
		b := s.NewBatch()
		defer b.Close()
		f(b)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	want := func(tags string, ok bool) {
		t.Helper()
		got, gotOK, err := s.PartitionTags(slot, key)
		if err != nil || gotOK != ok || string(got) != tags {
			t.Fatalf("PartitionTags = %q, %v, %v; want %q, %v", got, gotOK, err, tags, ok)
		}
	}
	want("", false)
	write(func(b *Batch) { b.PutSnapshot(slot, key, []byte("\x02format 1")) })
	want("", false)
	write(func(b *Batch) { b.PutSnapshot(slot, key, append(AppendSnapshotTags(nil, []byte("old")), "\x02inf"...)) })
	want("old", true)
	write(func(b *Batch) { b.PutTags(slot, key, []byte("new")) })
	want("new", true)
	write(func(b *Batch) { b.DeleteTags(slot, key) })
	want("old", true)
}

// A data dir of format 1, on pebble's default comparer like every data dir
// before format 3, is read as it is, and stamped with format 2, the newest
// on that comparer (record and marker), when first opened for writing; its
// partitions read back, before and after new ones are written. A new data
// dir gets FormatVersion and the partition comparer.
func TestFormatUpgrade(t *testing.T) {
	fs := vfs.NewMem()
	newWithFormat(t, fs, 1)
	f, _ := fs.Create(fs.PathJoin("db", markerFile), vfs.WriteCategoryUnspecified)
	f.Write([]byte(markerText(1)))
	f.Close()
	var keys [][]byte
	for i := range 300 {
		keys = append(keys, fmt.Appendf(nil, "k%d", i))
	}
	readAll := func(s *Store, n int) {
		t.Helper()
		if s.filter != nil {
			waitFilterReady(t, s)
		}
		for i, k := range keys[:n] {
			recs, ok, err := s.ReadPartition(Slot(k), k)
			if err != nil || !ok || string(recs.Snapshot) != "snapshot" || i%3 == 0 && (len(recs.Deltas) != 3 || string(recs.Tags) != "tags") {
				t.Fatalf("partition %d: %v %v %q, %d deltas", i, ok, err, recs.Snapshot, len(recs.Deltas))
			}
		}
		if _, ok, err := s.ReadPartition(0, []byte("absent")); ok || err != nil {
			t.Fatalf("an absent partition: %v %v", ok, err)
		}
	}
	version := func(readOnly bool, write int) (uint32, string) {
		t.Helper()
		s, err := Open(Options{Dir: "db", FS: fs, ReadOnly: readOnly})
		if err != nil {
			t.Fatal(err)
		}
		if s.splitPartitions {
			t.Fatal("a data dir of format 1 opened with the partition comparer")
		}
		if write > 0 {
			readAll(s, write-100)
			writePartitions(t, s, keys, write-100, write)
		}
		v, ok, err := s.GetMeta("format")
		s.Close()
		if err != nil || !ok || len(v) != 4 {
			t.Fatalf("format record: %q %v %v", v, ok, err)
		}
		m, err := fs.Open(fs.PathJoin("db", markerFile))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		text, _ := io.ReadAll(m)
		return binary.BigEndian.Uint32(v), string(text)
	}
	if v, marker := version(true, 0); v != 1 || marker != markerText(1) {
		t.Fatalf("a read-only open changed the format: %d, %q", v, marker)
	}
	for _, write := range []int{100, 200, 300} {
		if v, marker := version(false, write); v != formatDefaultComparer || marker != markerText(formatDefaultComparer) {
			t.Fatalf("after opening for writing: format %d, marker %q; want %d", v, marker, formatDefaultComparer)
		}
	}
	s, err := Open(Options{Dir: "db", FS: fs, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	readAll(s, len(keys))
	s.Close()

	s, err = Open(Options{Dir: "new", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, ok, err := s.GetMeta("format"); err != nil || !ok || binary.BigEndian.Uint32(v) != FormatVersion || !s.splitPartitions {
		t.Fatalf("a new data dir: format %v %v %v, partition comparer %v", v, ok, err, s.splitPartitions)
	}
	if c, err := comparerOf(fs, "new"); c != partitionComparer || err != nil {
		t.Fatalf("the new data dir's OPTIONS name %v, %v", c, err)
	}
}

// newWithFormat creates a store in fs's "db" whose format record says v,
// on pebble's default comparer if v is older than format 3.
func newWithFormat(t *testing.T, fs vfs.FS, v uint32) {
	t.Helper()
	opts := Options{Dir: "db", FS: fs}
	if v < 3 {
		opts.comparer = pebble.DefaultComparer
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	b.SetMeta("format", binary.BigEndian.AppendUint32(nil, v))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	s.Close()
}
