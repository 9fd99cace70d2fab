package store

// The log's syncs as direct writes of whole sectors.
//
// With fsync always, a lone writer syncs the log after every commit. A
// sync through the page cache writes every page the new bytes touched:
// a commit of a few hundred bytes cost a 4 KiB page written, which was
// most of what a small event on a large state wrote to disk (5.0 KB per
// event). Disks take sectors, 512 bytes on most. So where the log's file
// system does direct I/O, a log file keeps the bytes written since its
// last sync in memory, and a sync writes them in one write with
// O_DIRECT|O_DSYNC: from the start of the sector holding the first of
// them, to the end of the sector holding the last, zeros after the end.
// The write returns once the sectors are durable (the kernel flushes the
// disk's cache, as fdatasync does), so it replaces both the write and the
// fdatasync. The last, partial sector stays in memory, and the next sync
// writes it again, fuller. A sync of a 600-byte record then wrote 1.1 KB
// on this machine's disk against 4.7 KB, and took as long (a quiet loop
// of them: 230 µs at the median either way).
//
// A sector written again holds its synced bytes unchanged, as a page
// written back does; and zeros after the log's end are what pebble finds
// at the end of a preallocated log, and reads as its end.
//
// Only fsync always uses this: with fewer syncs the log's bytes must reach
// the page cache when written, to survive the process. Writes no sync
// follows at once (CommitNoSync, background work redone after a crash)
// wait in memory up to directBuf bytes; beyond that, the whole sectors
// are written out, durably too. Closing writes the rest.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// directBuf is the memory a direct log file keeps its unwritten bytes in.
const directBuf = 1 << 20

// directAlignDefault is the alignment used where the kernel does not say
// (before Linux 6.1): a page, which every file system doing direct I/O
// accepts.
const directAlignDefault = 4096

// directFile is a write-ahead log file whose syncs are direct writes of
// the sectors holding the bytes written since the last one. Pebble writes
// and syncs a log from one goroutine; mu guards against any other.
type directFile struct {
	vfs.File // the descriptor pebble opened: Preallocate, Stat, Fd
	r        *syncRing
	name     string
	dfd      int // the file opened O_WRONLY|O_DIRECT|O_DSYNC
	align    int // the file's direct I/O alignment, of offsets, lengths and memory

	mu sync.Mutex
	// mem[:n] is the log from offset off on (a multiple of align); its
	// first durable bytes are on disk already, the rest is not.
	mem     []byte // mapped: aligned to a page
	n       int
	durable int
	off     int64
	err     error // the first failed write: the file takes no more
	closed  bool
}

// openDirect opens name, which f is open on, for direct writes, or
// reports why the file system refuses them.
func openDirect(f vfs.File, name string, r *syncRing) (*directFile, error) {
	dfd, err := unix.Open(name, unix.O_WRONLY|unix.O_DIRECT|unix.O_DSYNC|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open (direct)", Path: name, Err: err}
	}
	align := directAlignDefault
	var st unix.Statx_t
	if err := unix.Statx(dfd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st); err == nil && st.Mask&unix.STATX_DIOALIGN != 0 {
		if st.Dio_offset_align == 0 {
			unix.Close(dfd)
			return nil, fmt.Errorf("%s: the file system does no direct I/O", name)
		}
		align = int(max(st.Dio_offset_align, st.Dio_mem_align))
	}
	if align > directBuf || align&(align-1) != 0 || align > os.Getpagesize() {
		unix.Close(dfd)
		return nil, fmt.Errorf("%s: direct I/O alignment %d", name, align)
	}
	mem, err := unix.Mmap(-1, 0, directBuf, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		unix.Close(dfd)
		return nil, fmt.Errorf("%s: mapping a buffer: %w", name, err)
	}
	return &directFile{File: f, r: r, name: name, dfd: dfd, align: align, mem: mem}, nil
}

// Write keeps p in memory, writing out the whole sectors before it when
// that is full.
func (f *directFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.r != nil {
		f.r.writes.Add(1)
	}
	total := 0
	for len(p) > 0 {
		if f.err != nil {
			return total, f.err
		}
		if f.closed {
			return total, &os.PathError{Op: "write", Path: f.name, Err: os.ErrClosed}
		}
		if f.n == len(f.mem) {
			if err := f.writeOut(); err != nil {
				return total, err
			}
		}
		c := copy(f.mem[f.n:], p)
		f.n += c
		total += c
		p = p[c:]
	}
	return total, nil
}

// WriteAt is not how pebble writes a log; it fails rather than bypass the
// bytes in memory.
func (f *directFile) WriteAt(p []byte, off int64) (int, error) {
	return 0, &os.PathError{Op: "writeat", Path: f.name, Err: errors.ErrUnsupported}
}

// SyncData makes every byte written durable.
func (f *directFile) SyncData() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sync()
}

// Sync makes every byte written, and the file's metadata, durable.
func (f *directFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.sync(); err != nil {
		return err
	}
	return syncThrough(f.r, f.File, false, "write-ahead log")
}

// SyncTo makes every byte written durable: more than asked, a full sync.
func (f *directFile) SyncTo(int64) (fullSync bool, err error) {
	return true, f.SyncData()
}

func (f *directFile) sync() error {
	if f.err != nil {
		return f.err
	}
	if f.closed {
		return &os.PathError{Op: "sync", Path: f.name, Err: os.ErrClosed}
	}
	if f.n == f.durable {
		return nil
	}
	if err := f.writeOut(); err != nil {
		return err
	}
	if f.r != nil {
		f.r.syncs.Add(1)
	}
	return nil
}

// writeOut writes mem[:n], zeros after it to the end of its last sector,
// at off (O_DSYNC: durably), and keeps that last sector in memory if
// partial.
func (f *directFile) writeOut() error {
	end := (f.n + f.align - 1) &^ (f.align - 1)
	clear(f.mem[f.n:end])
	if err := f.pwrite(f.mem[:end], f.off); err != nil {
		f.err = err
		return err
	}
	if f.r != nil {
		f.r.directBytes.Add(int64(end))
	}
	k := f.n &^ (f.align - 1)
	copy(f.mem, f.mem[k:f.n])
	f.off += int64(k)
	f.n -= k
	f.durable = f.n
	return nil
}

// pwrite writes all of b at off, through the ring if it can.
func (f *directFile) pwrite(b []byte, off int64) error {
	for len(b) > 0 {
		n, err := f.r.write(f.dfd, b, off)
		if errors.Is(err, errRingDown) || errors.Is(err, errNoRingWrite) {
			n, err = unix.Pwrite(f.dfd, b, off)
			if err == unix.EINTR {
				continue
			}
		}
		if err != nil {
			return &os.PathError{Op: "write (direct)", Path: f.name, Err: err}
		}
		if n <= 0 || n%f.align != 0 {
			// A direct write moves whole sectors or fails; a partial one
			// leaves nothing to continue from.
			return &os.PathError{Op: "write (direct)", Path: f.name, Err: io.ErrShortWrite}
		}
		b = b[n:]
		off += int64(n)
	}
	return nil
}

// Close writes out what is in memory, and closes the file.
func (f *directFile) Close() error {
	f.mu.Lock()
	var err error
	if !f.closed {
		f.closed = true
		if f.err == nil && f.n != f.durable {
			err = f.writeOut()
		}
		unix.Close(f.dfd)
		unix.Munmap(f.mem)
		f.mem = nil
	}
	f.mu.Unlock()
	return errors.Join(err, f.File.Close())
}

// directLog reports that the log file last opened writes directly.
func (r *syncRing) directLog() bool { return r != nil && r.direct.Load() }

// directRefused returns why the file system refused a log file direct
// writes, if it did.
func (r *syncRing) directRefused() error {
	if r == nil {
		return nil
	}
	if e := r.refused.Load(); e != nil {
		return *e
	}
	return nil
}

// errNoRingWrite reports a kernel whose rings do not write (before 5.6);
// nothing was written.
var errNoRingWrite = errors.New("io_uring: the kernel does not write through rings")

// write writes b at off into fd, as pwrite does, and returns how much it
// wrote. A ring that cannot write says so once (errNoRingWrite), and is
// not asked again.
func (r *syncRing) write(fd int, b []byte, off int64) (int, error) {
	if r == nil {
		return 0, errRingDown
	}
	if r.noWrite.Load() {
		return 0, errNoRingWrite
	}
	res, err := r.run(func(sqe []byte) {
		sqe[0] = ioringOpWrite
		putSQE(sqe, fd, uint64(off), b)
	})
	if err != nil {
		return 0, err
	}
	if res < 0 {
		e := syscall.Errno(-res)
		if e == unix.EINVAL {
			// An operation the ring does not know, or a write the file
			// refuses: a plain write tells which.
			n, perr := unix.Pwrite(fd, b, off)
			if perr == nil {
				r.noWrite.Store(true)
				return n, nil
			}
		}
		return 0, e
	}
	return int(res), nil
}
