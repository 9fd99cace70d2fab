package store

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestYieldRunsReadyReaders: on one P, a goroutine whose socket became
// readable while another ran on the CPU has run by the time that other's
// yield returns. (runtime.Gosched alone would not poll the network: the
// reader would wait for the runtime's monitor, up to 10 ms.)
func TestYieldRunsReadyReaders(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	_, y := withYields(vfs.NewMem())
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
	fs, y := withYields(vfs.NewMem())
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
