package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// ringOrSkip sets up a sync ring, or skips where the kernel refuses
// io_uring (the store then syncs plainly, which TestLogSyncsThroughRing
// covers as well).
func ringOrSkip(t *testing.T) *syncRing {
	t.Helper()
	r, err := newSyncRing()
	if err != nil {
		t.Skipf("this kernel refuses io_uring (%v); the log syncs with plain system calls", err)
	}
	t.Cleanup(r.close)
	return r
}

// datasync makes the log file fd's data durable through r, as the
// store's log files sync.
func (r *syncRing) datasync(fd int) error { return r.sync(fd, true, "write-ahead log") }

// TestSyncRingDatasync: the ring syncs files, from many goroutines at
// once, reports the kernel's errors, and refuses syncs once closed, when
// the log's files sync plainly.
func TestSyncRingDatasync(t *testing.T) {
	r := ringOrSkip(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := f.Write([]byte("durable\n")); err != nil {
					errs <- err
					return
				}
				if err := r.datasync(int(f.Fd())); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := r.syncs.Load(); n != 160 {
		t.Fatalf("%d syncs completed, want 160", n)
	}

	// A descriptor that is not open: the kernel's error comes back.
	if err := r.datasync(1 << 20); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("sync of a closed descriptor: %v, want EBADF", err)
	}
	if err := r.datasync(int(f.Fd())); err != nil {
		t.Fatalf("a sync after a failed one: %v", err)
	}
	// A full fsync, as tables and the manifest take.
	if err := r.sync(int(f.Fd()), false, "table"); err != nil {
		t.Fatalf("fsync through the ring: %v", err)
	}
	var pe *os.PathError
	if err := r.sync(1<<20, false, "000001.sst"); !errors.As(err, &pe) || pe.Op != "fsync" || pe.Path != "000001.sst" || !errors.Is(err, syscall.EBADF) {
		t.Fatalf("fsync of a closed descriptor: %v, want fsync 000001.sst: EBADF", err)
	}
	r.close()
	if err := r.datasync(int(f.Fd())); !errors.Is(err, errRingDown) {
		t.Fatalf("sync on a closed ring: %v", err)
	}
	// A log file whose ring is down syncs plainly.
	vf, err := vfs.Default.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	if err := (ringFile{File: vf, r: r}).SyncData(); err != nil {
		t.Fatalf("a log file's sync with its ring down: %v", err)
	}
}

// TestLogSyncsThroughRing: with fsync always on disk, the log's syncs go
// through the ring (unless told otherwise), and what was committed is
// there after a reopen either way.
func TestLogSyncsThroughRing(t *testing.T) {
	ringOrSkip(t)
	for _, plain := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "data")
		s, err := Open(Options{Dir: dir, Sync: SyncAlways, NoIOUring: plain})
		if err != nil {
			t.Fatal(err)
		}
		if (s.ring == nil) != plain {
			t.Fatalf("NoIOUring %v: ring %v", plain, s.ring)
		}
		before, beforeWrites := int64(0), int64(0)
		if s.ring != nil {
			before, beforeWrites = s.ring.syncs.Load(), s.ring.writes.Load()
		}
		syncs0, time0 := LogSyncs(s.Pebble().Metrics())
		for i := range 10 {
			b := s.NewBatch()
			b.SetMeta("x", []byte{byte(i)})
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
			b.Close()
		}
		// Each commit waited for a sync of its own, which pebble counted
		// and timed (just after it released the commit: the last one's
		// count may lag a moment).
		syncs, total := LogSyncs(s.Pebble().Metrics())
		for deadline := time.Now().Add(10 * time.Second); (syncs-syncs0 < 10 || total <= time0) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
			syncs, total = LogSyncs(s.Pebble().Metrics())
		}
		if syncs-syncs0 < 10 || total <= time0 {
			t.Fatalf("10 commits with fsync always (plain %v): LogSyncs went from %d (%v) to %d (%v)", plain, syncs0, time0, syncs, total)
		}
		if s.ring != nil {
			if n := s.ring.syncs.Load() - before; n < 1 {
				t.Fatalf("10 commits with fsync always: %d syncs through the ring", n)
			}
			if n := s.ring.writes.Load() - beforeWrites; n < 1 {
				t.Fatalf("10 commits with fsync always: %d raw writes of the log", n)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = Open(Options{Dir: dir, Sync: SyncAlways, NoIOUring: plain})
		if err != nil {
			t.Fatal(err)
		}
		v, ok, err := s.GetMeta("x")
		if err != nil || !ok || len(v) != 1 || v[0] != 9 {
			t.Fatalf("after a reopen: %v, %v, %v", v, ok, err)
		}
		s.Close()
	}
	// Other modes, and memory, have no ring.
	for _, o := range []Options{
		{Dir: filepath.Join(t.TempDir(), "data"), Sync: SyncNever},
		{Dir: "db", Sync: SyncAlways, FS: vfs.NewMem()},
	} {
		s, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		if s.ring != nil {
			t.Errorf("%+v: a ring", o)
		}
		s.Close()
	}
}

// TestLogFileRawWrite: a log file's raw writes write everything given,
// and report the kernel's errors with the file's name.
func TestLogFileRawWrite(t *testing.T) {
	r := ringOrSkip(t)
	fs := ringFS{FS: vfs.Default, r: r}
	name := filepath.Join(t.TempDir(), "000001.log")
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	rf, ok := f.(ringFile)
	if !ok {
		t.Fatalf("a log file is a %T", f)
	}
	var want []byte
	for i := range 64 {
		b := bytes.Repeat([]byte{byte(i)}, 1000+i*4096)
		if n, err := rf.Write(b); n != len(b) || err != nil {
			t.Fatalf("write %d: %d of %d bytes, %v", i, n, len(b), err)
		}
		want = append(want, b...)
	}
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(name); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes (%v), want %d", len(got), err, len(want))
	}
	if r.writes.Load() != 64 {
		t.Errorf("%d raw writes counted, want 64", r.writes.Load())
	}
	// Other files are not wrapped.
	other, err := fs.Create(filepath.Join(filepath.Dir(name), "000002.sst"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := other.(ringFile); ok {
		t.Error("a table file is wrapped")
	}
	other.Close()
	f.Close()
	// A write the kernel refuses (to a file opened for reading) fails
	// with its error.
	ro, err := vfs.Default.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	_, err = ringFile{File: ro, r: r, name: name, fd: ro.Fd()}.Write([]byte("x"))
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Path != name || !errors.Is(err, syscall.EBADF) {
		t.Fatalf("write to a file opened for reading: %v, want a path error for %s with EBADF", err, name)
	}
}
