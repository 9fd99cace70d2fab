package store

// The log's syncs through io_uring.
//
// With fsync always, every commit waits for an fdatasync of pebble's
// write-ahead log. A plain fdatasync blocks its thread inside the system
// call for the disk's latency (0.2–1 ms here), and the Go runtime then
// hands that thread's P to another thread: its monitor (sysmon) retakes a
// P held more than 20 µs in a system call, and every retake keeps it
// polling every 20 µs. A syncRing instead submits the fdatasync to an
// io_uring instance, where a kernel worker runs it, and the waiting
// goroutine parks in Go's netpoller on an eventfd the ring signals when
// the sync completes; no thread blocks. In alternating runs of the
// counter with fsync always, that took about a tenth of the CPU off each
// unpipelined request, and raised the pipelined rate by about a sixth
// with a shorter p99.
//
// The log's files have a ring of their own: pebble syncs the log one sync
// at a time. Its other syncs (tables, the manifest) are rare, and go
// through a second ring (see bgyield_linux.go), so that they neither wait
// for the log's nor hold it up. Where the kernel
// refuses io_uring (an old kernel, a seccomp filter, io_uring_disabled),
// Open falls back to plain syncs. The Go io_uring libraries wait for
// completions in io_uring_enter, which blocks a thread: the point here is
// to wait in the netpoller, for one kind of operation, which takes little
// code.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// io_uring's ABI (include/uapi/linux/io_uring.h).
const (
	ioringFeatSingleMmap  = 1 << 0
	ioringOffSQEs         = 0x10000000
	ioringOpFsync         = 3
	ioringOpWrite         = 23
	ioringOpUnlinkat      = 36
	ioringFsyncDatasync   = 1 << 0
	ioringRegisterEventfd = 4
	sqeSize               = 64
	cqeSize               = 16
	ringEntries           = 4 // one entry is in flight at most
)

// uringParams is struct io_uring_params.
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32

	resv  [3]uint32
	sqOff sqringOffsets
	cqOff cqringOffsets
}

// sqringOffsets is struct io_sqring_offsets.
type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

// cqringOffsets is struct io_cqring_offsets.
type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// The kernel reads and writes 120 bytes of io_uring_params.
var _ [120]byte = [unsafe.Sizeof(uringParams{})]byte{}

// errRingDown reports a ring that can no longer be used (closed, or
// failed to take a submission); the sync was not made.
var errRingDown = errors.New("io_uring: the ring is down")

// syncRing runs fsyncs and fdatasyncs (and removes files) through an
// io_uring instance, one operation at a time.
type syncRing struct {
	mu      sync.Mutex // held for a whole operation: one is in flight at most
	fd      int
	ring    []byte // the submission and completion rings (one mapping)
	sqes    []byte // the submission entries
	sqTail  *uint32
	sqMask  uint32
	sqArr   unsafe.Pointer // the submission ring's array of entry indexes
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    unsafe.Pointer
	ev      *os.File // an eventfd the ring signals on completions, in Go's netpoller
	evc     syscall.RawConn
	closed  bool
	syncs   atomic.Int64 // completed, for tests
	writes  atomic.Int64 // by the log files it wraps (see ringFile.Write), for tests
	unlinks atomic.Int64 // files removed, for tests
	// noWrite is set once the ring has refused to write (see write).
	noWrite atomic.Bool
	// direct reports that the last log file opened writes directly (see
	// directFile); directBytes counts what they wrote, for tests.
	direct      atomic.Bool
	directBytes atomic.Int64
	// refused is why the file system refused a log file direct writes
	// (the last refusal), if it did.
	refused atomic.Pointer[error]
}

// newSyncRing sets up a ring, or reports why the kernel refused one.
func newSyncRing() (r *syncRing, err error) {
	var p uringParams
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, ringEntries, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	r = &syncRing{fd: int(fd)}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if p.features&ioringFeatSingleMmap == 0 {
		return nil, errors.New("io_uring: the kernel maps the rings separately (before 5.4)")
	}
	size := max(p.sqOff.array+4*p.sqEntries, p.cqOff.cqes+cqeSize*p.cqEntries)
	if r.ring, err = unix.Mmap(r.fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("io_uring: mapping the rings: %w", err)
	}
	if r.sqes, err = unix.Mmap(r.fd, ioringOffSQEs, int(sqeSize*p.sqEntries), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("io_uring: mapping the entries: %w", err)
	}
	base := unsafe.Pointer(&r.ring[0])
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff.ringMask))
	r.sqArr = unsafe.Add(base, p.sqOff.array)
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff.ringMask))
	r.cqes = unsafe.Add(base, p.cqOff.cqes)

	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("io_uring: eventfd: %w", err)
	}
	r.ev = os.NewFile(uintptr(efd), "io_uring-eventfd")
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, fd, ioringRegisterEventfd, uintptr(unsafe.Pointer(&efd)), 1, 0, 0); e != 0 {
		return nil, fmt.Errorf("io_uring_register: %w", e)
	}
	if r.evc, err = r.ev.SyscallConn(); err != nil {
		return nil, err
	}
	return r, nil
}

// sync makes fd's data durable, and its metadata too unless datasync, as
// fdatasync and fsync do; name names the file in errors.
func (r *syncRing) sync(fd int, datasync bool, name string) error {
	op, flags := "fsync", uint32(0)
	if datasync {
		op, flags = "fdatasync", ioringFsyncDatasync
	}
	res, err := r.run(func(sqe []byte) {
		sqe[0] = ioringOpFsync
		*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
		*(*uint32)(unsafe.Pointer(&sqe[28])) = flags
	})
	if err != nil {
		return err
	}
	if res < 0 {
		return &os.PathError{Op: op, Path: name, Err: syscall.Errno(-res)}
	}
	r.syncs.Add(1)
	return nil
}

// errNoUnlink reports a kernel whose rings cannot remove files (before
// 5.11); the file was not removed.
var errNoUnlink = errors.New("io_uring: the kernel does not remove files")

// unlink removes the file at path, as unlink does.
func (r *syncRing) unlink(path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return &os.PathError{Op: "remove", Path: path, Err: err}
	}
	res, err := r.run(func(sqe []byte) {
		sqe[0] = ioringOpUnlinkat
		*(*int32)(unsafe.Pointer(&sqe[4])) = unix.AT_FDCWD
		*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(p)))
	})
	runtime.KeepAlive(p) // the kernel read it until the completion
	switch {
	case err != nil:
		return err
	case res == -int32(unix.EINVAL):
		return errNoUnlink // an operation it does not know (nothing else is invalid)
	case res < 0:
		return &os.PathError{Op: "remove", Path: path, Err: syscall.Errno(-res)}
	}
	r.unlinks.Add(1)
	return nil
}

// putSQE sets an entry's descriptor, offset and buffer.
func putSQE(sqe []byte, fd int, off uint64, b []byte) {
	*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
	*(*uint64)(unsafe.Pointer(&sqe[8])) = off
	*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	*(*uint32)(unsafe.Pointer(&sqe[24])) = uint32(len(b))
}

// run submits the entry prep fills in (a cleared one) and waits in the
// netpoller for its completion, whose result it returns.
func (r *syncRing) run(prep func(sqe []byte)) (int32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errRingDown
	}
	tail := *r.sqTail
	i := tail & r.sqMask
	sqe := r.sqes[i*sqeSize : (i+1)*sqeSize]
	clear(sqe)
	prep(sqe)
	*(*uint32)(unsafe.Add(r.sqArr, 4*i)) = i
	atomic.StoreUint32(r.sqTail, tail+1) // publishes the entry
	for try := 0; ; try++ {
		// Submitting does not wait: the kernel cannot sync (or remove a
		// file) without blocking, so it hands the operation to a worker
		// of the ring. A raw system call keeps the runtime's monitor
		// asleep.
		n, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 0, 0, 0, 0)
		if e == 0 && n == 1 {
			break
		}
		switch {
		case e == unix.EINTR:
		case (e == 0 || e == unix.EAGAIN) && try < 1000:
			// Not taken (the kernel is short of memory): again, later.
			runtime.Gosched()
		default:
			// The entry's fate is unknown: use the ring no more.
			r.closed = true
			if e == 0 {
				e = unix.EAGAIN
			}
			return 0, fmt.Errorf("%w: io_uring_enter: %w", errRingDown, e)
		}
	}
	// Park until the completion is posted. The eventfd is cleared before
	// the ring is looked at again, so a completion after that look
	// signals it anew.
	var buf [8]byte
	if err := r.evc.Read(func(efd uintptr) bool {
		if *r.cqHead != atomic.LoadUint32(r.cqTail) {
			return true
		}
		unix.RawSyscall(unix.SYS_READ, efd, uintptr(unsafe.Pointer(&buf[0])), 8)
		return *r.cqHead != atomic.LoadUint32(r.cqTail)
	}); err != nil {
		return 0, err
	}
	head := *r.cqHead
	res := *(*int32)(unsafe.Add(r.cqes, cqeSize*(head&r.cqMask)+8))
	atomic.StoreUint32(r.cqHead, head+1) // frees the completion's slot
	return res, nil
}

// close releases the ring, if any; syncs through it fail after it (with
// errRingDown).
func (r *syncRing) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if r.ev != nil {
		r.ev.Close()
	}
	if r.sqes != nil {
		unix.Munmap(r.sqes)
	}
	if r.ring != nil {
		unix.Munmap(r.ring)
	}
	unix.Close(r.fd)
}

// ringFS syncs the write-ahead log's files through a syncRing; with
// direct set, they write directly where their file system allows it (see
// directFile).
type ringFS struct {
	vfs.FS
	r      *syncRing
	direct bool
}

func (fs ringFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(name, f, err)
}

func (fs ringFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(newname, f, err)
}

func (fs ringFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") || f.Fd() == vfs.InvalidFd {
		return f, err
	}
	if fs.direct {
		df, derr := openDirect(f, name, fs.r)
		fs.r.direct.Store(derr == nil)
		if derr == nil {
			return df, nil
		}
		fs.r.refused.Store(&derr)
	}
	return ringFile{File: f, r: fs.r, name: name, fd: f.Fd()}, nil
}

// ringFile is a log file whose data syncs go through the ring, and whose
// writes are raw system calls.
type ringFile struct {
	vfs.File
	r    *syncRing
	name string
	fd   uintptr
}

// Write writes all of p to the file with raw write system calls. An
// ordinary one tells the Go runtime that the thread may block; when every
// P had been idle, as between the groups of an unpipelined client's
// synced writes, that woke the runtime's monitor thread, which then
// polled every 20 µs for a millisecond or more, on every group. With raw
// calls the unpipelined counter with fsync always took 6–13% less server
// CPU per request (two sets of alternating runs; the monitor's sleeps
// fell from 8.8% of the server's CPU samples to 2.3%). A write
// into the page cache takes microseconds; one that blocks (the log's
// pages are synced as they fill, so the kernel rarely throttles them)
// keeps its P meanwhile, as a busy event loop does.
func (f ringFile) Write(p []byte) (int, error) {
	f.r.writes.Add(1)
	total := 0
	for len(p) > 0 {
		n, _, e := unix.RawSyscall(unix.SYS_WRITE, f.fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return total, &os.PathError{Op: "write", Path: f.name, Err: e}
		}
		if n == 0 {
			return total, &os.PathError{Op: "write", Path: f.name, Err: io.ErrShortWrite}
		}
		total += int(n)
		p = p[n:]
	}
	return total, nil
}

// SyncData syncs through the ring, or plainly if the ring is down.
func (f ringFile) SyncData() error { return syncThrough(f.r, f.File, true, "write-ahead log") }

// syncThrough syncs f (its data only if datasync) through r, or plainly
// if r is nil or down; name names f in errors.
func syncThrough(r *syncRing, f vfs.File, datasync bool, name string) error {
	if r != nil {
		if err := r.sync(int(f.Fd()), datasync, name); !errors.Is(err, errRingDown) {
			return err
		}
	}
	if datasync {
		return f.SyncData()
	}
	return f.Sync()
}

// withSyncRing returns fs with the log's syncs going through a new ring,
// and the ring (nil, with fs as it was, if the kernel refuses one). With
// direct, the log's files write directly where their file system allows
// it (see directFile).
func withSyncRing(fs vfs.FS, direct bool) (vfs.FS, *syncRing, error) {
	r, err := newSyncRing()
	if err != nil {
		return fs, nil, err
	}
	return ringFS{FS: fs, r: r, direct: direct}, r, nil
}
