package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

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

// A data dir of format 1 is read as it is, and stamped with the current
// format (record and marker) when first opened for writing.
func TestFormatUpgrade(t *testing.T) {
	fs := vfs.NewMem()
	newWithFormat(t, fs, 1)
	f, _ := fs.Create(fs.PathJoin("db", markerFile), vfs.WriteCategoryUnspecified)
	f.Write([]byte(markerText(1)))
	f.Close()
	version := func(readOnly bool) (uint32, string) {
		t.Helper()
		s, err := Open(Options{Dir: "db", FS: fs, ReadOnly: readOnly})
		if err != nil {
			t.Fatal(err)
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
	if v, marker := version(true); v != 1 || marker != markerText(1) {
		t.Fatalf("a read-only open changed the format: %d, %q", v, marker)
	}
	if v, marker := version(false); v != FormatVersion || marker != markerText(FormatVersion) {
		t.Fatalf("after opening for writing: format %d, marker %q; want %d", v, marker, FormatVersion)
	}
}

// newWithFormat creates a store in fs's "db" whose format record says v.
func newWithFormat(t *testing.T, fs vfs.FS, v uint32) {
	t.Helper()
	s, err := Open(Options{Dir: "db", FS: fs})
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
