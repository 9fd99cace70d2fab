package store

// Flushes and compactions that make way for the clients.
//
// Pebble writes its tables on goroutines of its own, which run on the CPU
// for as long as a flush or compaction takes, tens of milliseconds. The Go
// scheduler preempts a goroutine only after 10 ms, and polls the network
// only when a P runs out of work (or every 10 ms). So on a node with one P
// (one core, or a container limited to one CPU, where Go sets GOMAXPROCS
// to 1) a client whose request arrived during a flush waited for it, up to
// 10 ms at a time: bound to one core, the pipelined counter's p99 was
// 33 ms against Redis's 5.
//
// So the table files pebble writes yield every bgYieldAfter of writing, as
// a busy event loop does (see resp's loop.yield): the writer parks on an
// eventfd it has just signalled, which only a poll of the network readies,
// and that poll readies as well the goroutines whose sockets are ready;
// then it goes to the back of the run queue, behind them. That took the
// one-core p99 to 15 ms, at no measurable cost in throughput; a yield
// costs a few µs a millisecond. With more Ps a loop seldom waits for a
// flush this way: on two cores the yields changed neither the counter's
// rate nor its tail.
//
// A flush or compaction in a blocking system call keeps its P as well,
// until the runtime's monitor takes it back, which took 3–7 ms in a
// runtime trace: syncing a finished table, and the manifest that records
// it; and so does pebble's cleaner, removing an obsolete table (up to
// 7 ms). So, where the kernel allows io_uring, those syncs and those
// removals go through rings of their own (see syncRing; a ring runs one
// operation at a time, and a flush's sync must not wait behind the
// cleaner), and the caller waits in the netpoller, its P free.

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// bgYieldAfter is how long a table's writer goes between yields.
const bgYieldAfter = time.Millisecond

// yielder parks table writers in the netpoller; it keeps an eventfd per
// writer yielding at once.
type yielder struct {
	base time.Time // file times are nanoseconds since base (monotonic)
	ring *syncRing // syncs tables and the manifest, if not nil
	// rm removes tables and logs, if not nil: a ring of its own, so that
	// a flush's sync never waits behind the cleaner's removals, which
	// take as long.
	rm *syncRing
	// noUnlink is set once the ring has refused to remove a file.
	noUnlink atomic.Bool
	mu       sync.Mutex
	free     []*parker // idle
	all      []*parker // every one made, to close
	closed   bool
	yields   atomic.Int64 // made, for tests
}

// parker is an eventfd registered with Go's netpoller.
type parker struct {
	f  *os.File
	rc syscall.RawConn
}

// withYields returns fs with the table files it creates yielding, and
// the yielder, which the caller closes once nothing writes through fs.
// If uring is set (fs is then the operating system's, maybe wrapped),
// the tables and the manifest sync, and tables and logs are removed,
// through a ring, if the kernel allows one; if it refuses, err says why
// (and they are plain system calls).
func withYields(fs vfs.FS, uring bool) (_ vfs.FS, _ *yielder, err error) {
	y := &yielder{base: time.Now()}
	if uring {
		if y.ring, err = newSyncRing(); err == nil {
			if y.rm, err = newSyncRing(); err != nil {
				y.ring.close()
				y.ring = nil
			}
		}
	}
	return yieldFS{FS: fs, y: y}, y, err
}

// hasRing reports whether y syncs and removes through rings.
func (y *yielder) hasRing() bool { return y != nil && y.ring != nil }

// since is the time since y.base in nanoseconds.
func (y *yielder) since() int64 { return int64(time.Since(y.base)) }

// yield lets the goroutines waiting for the caller's P run, those whose
// sockets are ready among them, before it returns.
func (y *yielder) yield() {
	y.yields.Add(1)
	p := y.take()
	if p == nil {
		runtime.Gosched()
		return
	}
	signalled := false
	err := p.rc.Read(func(fd uintptr) bool {
		var b [8]byte
		if !signalled {
			signalled = true
			b[0] = 1
			unix.Write(int(fd), b[:])
			return false // park: only a poll of the network wakes it
		}
		unix.Read(int(fd), b[:])
		return true
	})
	runtime.Gosched()
	y.put(p, err)
}

// take returns an idle parker, or a new one; nil once y is closed or if
// the system refuses an eventfd.
func (y *yielder) take() *parker {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.closed {
		return nil
	}
	if n := len(y.free); n > 0 {
		p := y.free[n-1]
		y.free = y.free[:n-1]
		return p
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil
	}
	p := &parker{f: os.NewFile(uintptr(fd), "yield-eventfd")}
	if p.rc, err = p.f.SyscallConn(); err != nil {
		p.f.Close()
		return nil
	}
	y.all = append(y.all, p)
	return p
}

// put gives back a parker take returned; one whose wait failed is not
// used again.
func (y *yielder) put(p *parker, err error) {
	y.mu.Lock()
	defer y.mu.Unlock()
	if err == nil && !y.closed {
		y.free = append(y.free, p)
	}
}

// close releases the eventfds; writers that yield after it only call
// runtime.Gosched.
func (y *yielder) close() {
	if y == nil {
		return
	}
	y.mu.Lock()
	all := y.all
	y.all, y.free, y.closed = nil, nil, true
	y.mu.Unlock()
	for _, p := range all {
		p.f.Close()
	}
	y.ring.close()
	y.rm.close()
}

// yieldFS makes the table files pebble creates yield, and syncs and
// removes them through the yielder's rings.
type yieldFS struct {
	vfs.FS
	y *yielder
}

// Remove removes a table or a log file through the yielder's removal
// ring, if there is one and the kernel's rings can; other files and
// directories plainly.
func (fs yieldFS) Remove(name string) error {
	base := fs.PathBase(name)
	if r := fs.y.rm; r != nil && !fs.y.noUnlink.Load() && (isTable(base) || strings.HasSuffix(base, ".log")) {
		err := r.unlink(name)
		switch {
		case errors.Is(err, errNoUnlink):
			fs.y.noUnlink.Store(true)
		case !errors.Is(err, errRingDown):
			return err
		}
	}
	return fs.FS.Remove(name)
}

func isTable(base string) bool {
	return strings.HasSuffix(base, ".sst") || strings.HasSuffix(base, ".blob")
}

func (fs yieldFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil {
		return f, err
	}
	base := fs.PathBase(name)
	table := isTable(base)
	if !table && !strings.HasPrefix(base, "MANIFEST-") {
		return f, nil
	}
	yf := &yieldFile{File: f, y: fs.y, name: base, yields: table}
	if fs.y.ring != nil && f.Fd() != vfs.InvalidFd {
		yf.ring = fs.y.ring
	}
	yf.last.Store(fs.y.since())
	return yf, nil
}

// yieldFile is a table or a manifest being written. A table yields every
// bgYieldAfter; both sync through the ring, if any.
type yieldFile struct {
	vfs.File
	y      *yielder
	ring   *syncRing // nil: plain syncs
	name   string
	yields bool
	last   atomic.Int64 // the last yield, or the creation (see yielder.since)
}

func (f *yieldFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if f.yields {
		if now := f.y.since(); now-f.last.Load() >= int64(bgYieldAfter) {
			f.y.yield()
			f.last.Store(f.y.since())
		}
	}
	return n, err
}

// Sync and SyncData sync through the ring, or plainly (see syncThrough).
func (f *yieldFile) Sync() error     { return syncThrough(f.ring, f.File, false, f.name) }
func (f *yieldFile) SyncData() error { return syncThrough(f.ring, f.File, true, f.name) }
