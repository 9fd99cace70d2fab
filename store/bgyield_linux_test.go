package store

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestYieldRunsReadyReaders: on one P, a goroutine whose socket became
// readable while another ran on the CPU has run by the time that other's
// yield returns. (runtime.Gosched alone would not poll the network: the
// reader would wait for the runtime's monitor, up to 10 ms.)
func TestYieldRunsReadyReaders(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	_, y, _ := withYields(vfs.NewMem(), false)
	defer y.close()
	for round := range 20 {
		r, w, err := os.Pipe() // in Go's netpoller, as sockets are
		if err != nil {
			t.Fatal(err)
		}
		var got atomic.Bool
		parked := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			close(parked) // this goroutine goes on to park in Read before the test goes on
			var b [1]byte
			if n, _ := r.Read(b[:]); n == 1 {
				got.Store(true)
			}
		}()
		<-parked
		if _, err := w.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		y.yield()
		if !got.Load() {
			t.Fatalf("round %d: the reader had not run when the yield returned", round)
		}
		<-done
		r.Close()
		w.Close()
	}
}

// TestOnlyTablesYield: a table file yields on the first write a
// bgYieldAfter after its creation or its last yield; other files never.
func TestOnlyTablesYield(t *testing.T) {
	fs, y, _ := withYields(vfs.NewMem(), false)
	defer y.close()
	write := func(f vfs.File) {
		t.Helper()
		if _, err := f.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"000001.sst", "000002.blob", "000003.log", "MANIFEST-000004", "OPTIONS-000005"} {
		f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		before := y.yields.Load()
		write(f)
		if got := y.yields.Load() - before; got != 0 {
			t.Errorf("%s: %d yields on a write just after its creation", name, got)
		}
		time.Sleep(2 * bgYieldAfter)
		write(f)
		write(f)
		want := int64(0)
		if name == "000001.sst" || name == "000002.blob" {
			want = 1
		}
		if got := y.yields.Load() - before; got != want {
			t.Errorf("%s: %d yields on two writes %v after its creation, want %d", name, got, 2*bgYieldAfter, want)
		}
		f.Close()
	}
}

// TestFlushYields: a store's flushes write their tables through the
// yielding files, and a closed store's yielder falls back to Gosched.
func TestFlushYields(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	if s.yields == nil {
		t.Fatal("a writable store has no yielder")
	}
	// 16 MB of partitions that do not compress: their flush writes for
	// well over bgYieldAfter.
	r := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 1000)
	for i := range 16 {
		b := s.NewBatch()
		for j := range 1000 {
			key := []byte(fmt.Sprintf("key:%d:%d", i, j))
			for k := range value {
				value[k] = byte(r.Uint32())
			}
			b.PutSnapshot(Slot(key), key, value)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	before := s.yields.yields.Load()
	if err := s.Pebble().Flush(); err != nil {
		t.Fatal(err)
	}
	if s.yields.yields.Load() == before {
		t.Fatal("a flush of 16 MB did not yield")
	}
	y := s.yields
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if p := y.take(); p != nil {
		t.Fatal("a closed store's yielder made a parker")
	}
	y.yield() // must not block
}

// TestTablesSyncThroughRing: on the operating system's files, a flush
// syncs its table and the manifest through the yielder's ring; what it
// wrote is there after a reopen. In memory there is no ring.
func TestTablesSyncThroughRing(t *testing.T) {
	ringOrSkip(t)
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(Options{Dir: dir, Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	if s.yields.ring == nil {
		t.Fatal("a store on disk has no ring for its tables")
	}
	b := s.NewBatch()
	b.SetMeta("x", []byte("y"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	before := s.yields.ring.syncs.Load()
	if err := s.Pebble().Flush(); err != nil {
		t.Fatal(err)
	}
	if n := s.yields.ring.syncs.Load() - before; n < 2 {
		t.Fatalf("a flush made %d syncs through the ring, want its table's and the manifest's", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: dir, Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	v, ok, err := s.GetMeta("x")
	if err != nil || !ok || string(v) != "y" {
		t.Fatalf("after a reopen: %q, %v, %v", v, ok, err)
	}
	s.Close()

	if m := openMem(t); m.yields.ring != nil || m.yields.rm != nil {
		t.Fatal("a store in memory has rings for its tables")
	}
}

// TestTablesRemovedThroughRing: tables and log files are removed through
// the yielder's ring, other files plainly; a missing file's error is one
// pebble takes for "not there"; and a compaction's obsolete tables go
// that way.
func TestTablesRemovedThroughRing(t *testing.T) {
	ringOrSkip(t)
	fs, y, err := withYields(vfs.Default, true)
	defer y.close()
	if err != nil || y.ring == nil || y.rm == nil {
		t.Fatalf("no rings on the operating system's files: %v", err)
	}
	dir := t.TempDir()
	for _, name := range []string{"000001.sst", "000002.blob", "000003.log", "OPTIONS-000004"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := y.rm.unlinks.Load()
		if err := fs.Remove(path); err != nil {
			t.Fatalf("remove %s: %v", name, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("%s is still there: %v", name, err)
		}
		if y.noUnlink.Load() {
			t.Skip("this kernel's rings do not remove files (before 5.11); they are removed plainly")
		}
		want := int64(1)
		if name == "OPTIONS-000004" {
			want = 0
		}
		if got := y.rm.unlinks.Load() - before; got != want {
			t.Errorf("%s: %d removals through the ring, want %d", name, got, want)
		}
		if err := fs.Remove(path); !errors.Is(err, iofs.ErrNotExist) || !oserror.IsNotExist(err) {
			t.Errorf("removing %s again: %v, want a not-exist error", name, err)
		}
	}

	// A path relative to the working directory, as a data dir may be.
	t.Chdir(dir)
	if err := os.WriteFile("000005.sst", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := y.rm.unlinks.Load()
	if err := fs.Remove("000005.sst"); err != nil || y.rm.unlinks.Load() != before+1 {
		t.Fatalf("remove of a relative path: %v, %d through the ring", err, y.rm.unlinks.Load()-before)
	}
	if _, err := os.Stat(filepath.Join(dir, "000005.sst")); !os.IsNotExist(err) {
		t.Fatalf("000005.sst is still there: %v", err)
	}

	s, err := Open(Options{Dir: "data", Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before = s.yields.rm.unlinks.Load()
	for round := range 3 {
		b := s.NewBatch()
		for i := range 100 {
			b.SetMeta(fmt.Sprint(i), []byte{byte(round)})
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if err := s.Pebble().Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Pebble().Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	// Pebble's cleaner removes the compacted tables in the background.
	for deadline := time.Now().Add(10 * time.Second); s.yields.rm.unlinks.Load() == before; {
		if time.Now().After(deadline) {
			t.Fatal("no obsolete table was removed through the ring within 10 s of a compaction")
		}
		time.Sleep(time.Millisecond)
	}
}
