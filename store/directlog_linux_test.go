package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pebblerecord "github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// directOrSkip opens a log file for direct writes in a new directory, or
// skips where the kernel refuses io_uring or the file system direct I/O
// (the log then writes through the page cache, which the other tests
// cover).
func directOrSkip(t *testing.T) (*directFile, string, *syncRing) {
	t.Helper()
	r := ringOrSkip(t)
	fs := ringFS{FS: vfs.Default, r: r, direct: true}
	name := filepath.Join(t.TempDir(), "000001.log")
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	df, ok := f.(*directFile)
	if !ok {
		f.Close()
		t.Skipf("the file system refuses direct writes (%v): the log writes through the page cache", r.directRefused())
	}
	return df, name, r
}

// TestDirectLogFile: a direct log file holds exactly the bytes written
// once synced, zeros after them to the end of their sector, and a sync
// writes the sectors holding the bytes since the last one, not a page;
// more than its memory holds is written out on the way, and closing
// writes the rest.
func TestDirectLogFile(t *testing.T) {
	f, name, r := directOrSkip(t)
	if f.align < 512 || f.align > os.Getpagesize() || f.align&(f.align-1) != 0 {
		t.Fatalf("alignment %d", f.align)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var want []byte
	synced := 0 // bytes made durable by the last sync
	for i := range 400 {
		size := 1 + rng.IntN(300)
		switch i % 50 {
		case 17:
			size = 40000 + rng.IntN(20000)
		case 33:
			size = directBuf + 777 // more than the memory holds
		}
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if n, err := f.Write(p); n != len(p) || err != nil {
			t.Fatalf("write %d: %d of %d bytes: %v", i, n, len(p), err)
		}
		want = append(want, p...)
		if rng.IntN(3) > 0 {
			continue
		}
		before := r.directBytes.Load()
		if err := f.SyncData(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		end := alignUp(len(want), f.align)
		if len(got) < end || !bytes.Equal(got[:len(want)], want) || !allZero(got[len(want):end]) {
			t.Fatalf("after %d writes and a sync: the file's %d bytes differ from the %d written (then zeros to %d)", i+1, len(got), len(want), end)
		}
		// Unless the memory filled on the way, the sync wrote the sectors
		// from the one holding the first byte since the last sync.
		held := synced%f.align + len(want) - synced
		if wrote := r.directBytes.Load() - before; held <= directBuf && wrote != int64(end-alignDown(synced, f.align)) {
			t.Fatalf("a sync after %d bytes (%d synced before) wrote %d bytes, want %d", len(want)-synced, synced, wrote, end-alignDown(synced, f.align))
		}
		synced = len(want)
	}
	// A sync with nothing new writes nothing.
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	before := r.directBytes.Load()
	if err := f.SyncData(); err != nil || r.directBytes.Load() != before {
		t.Fatalf("a second sync: %v, wrote %d bytes", err, r.directBytes.Load()-before)
	}
	// Close writes what no sync did.
	tail := []byte("the last words")
	if _, err := f.Write(tail); err != nil {
		t.Fatal(err)
	}
	want = append(want, tail...)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(name); err != nil || len(got) < len(want) || !bytes.Equal(got[:len(want)], want) {
		t.Fatalf("after Close: %d bytes (%v), want the %d written", len(got), err, len(want))
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("a write after Close: %v", err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("WriteAt: %v, want it refused", err)
	}
}

// TestDirectLogSmallSyncs: a lone writer's small commits each write a
// sector or two to disk, not the 4 KiB page a sync through the page cache
// writes again (the large state's one-client line of the benchmark).
func TestDirectLogSmallSyncs(t *testing.T) {
	f, _, r := directOrSkip(t)
	defer f.Close()
	before := r.directBytes.Load()
	const commits = 100
	for range commits {
		if _, err := f.Write(bytes.Repeat([]byte{7}, 200)); err != nil {
			t.Fatal(err)
		}
		if err := f.SyncData(); err != nil {
			t.Fatal(err)
		}
	}
	perSync := (r.directBytes.Load() - before) / commits
	if perSync > int64(2*f.align) || perSync >= 4096 && f.align < 4096 {
		t.Fatalf("a sync of 200 bytes wrote %d bytes on average (alignment %d)", perSync, f.align)
	}
}

// TestDirectLogStore: with fsync always a store's log writes directly,
// every committed write is in a copy of its directory taken while it is
// still open (what a crash leaves on disk, the commits since the last
// sync aside), including one larger than the log file's memory; with
// NoDirectLog the log writes through the page cache.
func TestDirectLogStore(t *testing.T) {
	ringOrSkip(t)
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(Options{Dir: dir, Sync: SyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.LogDirect() {
		t.Skipf("the file system refuses direct writes (%v)", s.ring.directRefused())
	}
	values := map[string][]byte{}
	for i := range 300 {
		v := bytes.Repeat([]byte{byte(i)}, 1+i*37%900)
		if i == 150 {
			v = bytes.Repeat([]byte{'L'}, directBuf*2+123)
		}
		name := fmt.Sprintf("k%03d", i)
		b := s.NewBatch()
		b.SetMeta(name, v)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		b.Close()
		values[name] = v
	}
	// Copy the directory as it is on disk now (reads of what was written
	// directly go to the disk), between flushes and compactions.
	crashed := filepath.Join(t.TempDir(), "crashed")
	for try := 0; ; try++ {
		m := s.Pebble().Metrics()
		if m.Flush.NumInProgress > 0 || m.Compact.NumInProgress > 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		os.RemoveAll(crashed)
		if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		after := s.Pebble().Metrics()
		if after.Flush.Count == m.Flush.Count && after.Compact.Count == m.Compact.Count && after.Flush.NumInProgress == 0 && after.Compact.NumInProgress == 0 || try == 100 {
			break
		}
	}
	c, err := Open(Options{Dir: crashed, Sync: SyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range values {
		got, ok, err := c.GetMeta(name)
		if err != nil || !ok || !bytes.Equal(got, v) {
			t.Fatalf("after a crash: %s is %d bytes (found %v, %v), want %d", name, len(got), ok, err, len(v))
		}
	}
	c.Close()

	p, err := Open(Options{Dir: filepath.Join(t.TempDir(), "plain"), Sync: SyncAlways, NoDirectLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.LogDirect() || p.ring == nil {
		t.Fatalf("NoDirectLog: direct %v, ring %v", p.LogDirect(), p.ring)
	}
}

func alignUp(n, a int) int   { return (n + a - 1) &^ (a - 1) }
func alignDown(n, a int) int { return n &^ (a - 1) }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestDirectLogRingDown: once its ring is down, a direct log file syncs
// with plain direct writes.
func TestDirectLogRingDown(t *testing.T) {
	f, name, r := directOrSkip(t)
	defer f.Close()
	r.close()
	want := bytes.Repeat([]byte("after the ring "), 100)
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := f.SyncData(); err != nil {
		t.Fatalf("a sync with the ring down: %v", err)
	}
	if got, err := os.ReadFile(name); err != nil || len(got) < len(want) || !bytes.Equal(got[:len(want)], want) {
		t.Fatalf("after a sync with the ring down: %d bytes (%v), want the %d written", len(got), err, len(want))
	}
}

// TestDirectLogPebbleRecords: a log pebble's record writer writes through a
// direct log file reads back as pebble's replay needs. Closed, it holds
// every record and ends cleanly (io.EOF, which an older log must, or the
// open fails); after a crash, the records synced, then an end the replay
// of the newest log accepts.
func TestDirectLogPebbleRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	record := func(i int) []byte {
		p := make([]byte, 1+rng.IntN(5000))
		for j := range p {
			p[j] = byte(i + j)
		}
		return p
	}
	read := func(name string) ([][]byte, error) {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r := pebblerecord.NewReader(f, 7)
		var got [][]byte
		for {
			rec, err := r.Next()
			if err != nil {
				return got, err
			}
			b, err := io.ReadAll(rec)
			if err != nil {
				return got, err
			}
			got = append(got, b)
		}
	}
	for _, crash := range []bool{false, true} {
		f, name, _ := directOrSkip(t)
		sem := make(chan struct{}, 1000)
		lw := pebblerecord.NewLogWriter(f, 7, pebblerecord.LogWriterConfig{QueueSemChan: sem, WriteWALSyncOffsets: func() bool { return false }})
		var want [][]byte
		for i := range 200 {
			p := record(i)
			if i%10 == 9 || crash && i < 150 {
				var wg sync.WaitGroup
				var serr error
				wg.Add(1)
				sem <- struct{}{}
				if _, err := lw.SyncRecord(p, &wg, &serr); err != nil {
					t.Fatal(err)
				}
				wg.Wait()
				if serr != nil {
					t.Fatal(serr)
				}
			} else if _, err := lw.WriteRecord(p); err != nil {
				t.Fatal(err)
			}
			want = append(want, p)
		}
		if crash {
			// The last 50 records were never synced: a crash now leaves
			// the first 150 on disk.
			got, err := read(name)
			if len(got) < 150 || !(err == io.EOF || errors.Is(err, pebblerecord.ErrUnexpectedEOF)) {
				t.Fatalf("after a crash: %d records read, then %v; want at least the 150 synced, then an end the replay accepts", len(got), err)
			}
			for i := range 150 {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("after a crash: record %d differs", i)
				}
			}
		}
		if err := lw.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := read(name)
		if err != io.EOF || len(got) != len(want) {
			t.Fatalf("closed (crash case %v): %d records read, then %v; want %d, then io.EOF", crash, len(got), err, len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("closed: record %d differs", i)
			}
		}
	}
}
