package store

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var (
	// ErrNoSpace reports a write refused because the data dir's file
	// system is full: a flush or compaction could not write its table.
	// Reads go on, and writes are taken again once space is freed.
	ErrNoSpace = errors.New("store: disk full, writes are refused until space is freed")
	// ErrLogFailed reports a store whose log could not be written or
	// synced. What was applied since may be visible without being
	// durable, so the store refuses everything until it is reopened,
	// which replays exactly the durable log.
	ErrLogFailed = errors.New("store: the log could not be made durable; restart the server once the cause is fixed")
)

// isNoSpace reports an error of a full file system or an exhausted quota.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

const (
	// retryInterval spaces pebble's attempts to write a table while the
	// disk is full, and the checks of the free space.
	retryInterval = time.Second
	// errorLogInterval spaces the log lines of background errors.
	errorLogInterval = 10 * time.Second
)

// spaceGuard refuses writes while the data dir's file system is full.
//
// Pebble reports a flush or compaction that could not write its table
// (ENOSPC, EDQUOT) as a background error and retries it at once, over and
// over: hundreds of attempts, and log lines, a second. Meanwhile commits
// fill the memtables until pebble stalls them, for as long as the disk
// stays full, with the committing goroutine (an event loop) held and
// Close (which flushes) never returning. So the guard:
//
//   - marks the store full on such an error, and commits are refused
//     with ErrNoSpace rather than stalled; reads go on;
//   - holds the next attempt to create a table until retryInterval after
//     the last failure;
//   - clears the mark when a flush completes, or a compaction while
//     flushes do not fail, or when a refused write (or a look at the
//     state) finds, at most once per retryInterval, that the file system
//     has room for the memtables again (a failed compaction may not be
//     retried once it is no longer needed);
//   - logs background errors at most once per errorLogInterval, with how
//     many were not logged.
//
// A commit that was already stalled when the disk filled (both memtables
// full before the first failure) stays stalled until space is freed.
type spaceGuard struct {
	fs     vfs.FS
	dir    string
	logger *slog.Logger
	room   uint64        // free bytes that count as room again
	stop   chan struct{} // closed by Store.Close: waits end

	full    atomic.Pointer[error] // what found the disk full; nil while there is room
	refused atomic.Int64          // writes refused for want of space
	opening atomic.Bool           // pebble.Open is running

	mu           sync.Mutex
	flushFailing bool      // the last flush failed
	failedAt     time.Time // of the last no-space failure
	probedAt     time.Time // of the last check of the free space
	loggedAt     time.Time // of the last background error logged
	unlogged     int       // background errors since the last one logged
}

func newSpaceGuard(fs vfs.FS, dir string, logger *slog.Logger, room uint64) *spaceGuard {
	return &spaceGuard{fs: fs, dir: dir, logger: logger, room: room, stop: make(chan struct{})}
}

// background follows pebble's background errors.
func (g *spaceGuard) background(err error) {
	now := time.Now()
	noSpace := isNoSpace(err)
	g.mu.Lock()
	if noSpace {
		g.failedAt = now
	}
	first := noSpace && g.full.Swap(&err) == nil
	log := first || now.Sub(g.loggedAt) >= errorLogInterval
	unlogged := g.unlogged
	if log {
		g.loggedAt, g.unlogged = now, 0
	} else {
		g.unlogged++
	}
	g.mu.Unlock()
	switch {
	case first && g.opening.Load():
		// Opening flushes the memtables the log replayed, and waits
		// for that flush; it goes on once space is freed.
		g.logger.Error("disk full: start-up waits until space is freed to flush what the log holds", "dir", g.dir, "err", err.Error())
	case first:
		g.logger.Error("disk full: writes are refused until space is freed; reads go on", "dir", g.dir, "err", err.Error())
	case log:
		g.logger.Error("storage engine error", "err", err.Error(), "not_logged_since", unlogged)
	}
}

// flushed follows a flush, which failed if err is not nil. A flush that
// completed found room for its table: writes, which need flushes, can go
// on.
func (g *spaceGuard) flushed(err error) {
	g.mu.Lock()
	g.flushFailing = err != nil && isNoSpace(err)
	g.mu.Unlock()
	if err == nil {
		g.clear("a flush wrote its table")
	}
}

// compacted follows a compaction that completed. It found room for its
// tables, but while flushes fail for want of space, that is no sign that
// they will not: accepting writes then would fill the memtables until
// pebble stalled them.
func (g *spaceGuard) compacted() {
	g.mu.Lock()
	failing := g.flushFailing
	g.mu.Unlock()
	if !failing {
		g.clear("a compaction wrote its tables")
	}
}

func (g *spaceGuard) clear(why string) {
	if g.full.Swap(nil) != nil {
		g.logger.Info("disk has room again: writes resume", "dir", g.dir, "because", why)
	}
}

// check returns ErrNoSpace, with its cause, while the disk is full.
func (g *spaceGuard) check() error {
	errp := g.full.Load()
	if errp == nil || g.probe() {
		return nil
	}
	g.refused.Add(1)
	return fmt.Errorf("%w (%v)", ErrNoSpace, *errp)
}

// fullErr returns what found the disk full, or nil while there is room.
func (g *spaceGuard) fullErr() error {
	if errp := g.full.Load(); errp != nil {
		return *errp
	}
	return nil
}

// probe clears the mark if the file system has room again, checking at
// most once per retryInterval.
func (g *spaceGuard) probe() bool {
	g.mu.Lock()
	if time.Since(g.probedAt) < retryInterval {
		g.mu.Unlock()
		return false
	}
	g.probedAt = time.Now()
	g.mu.Unlock()
	u, err := g.fs.GetDiskUsage(g.dir)
	if err != nil || u.AvailBytes < g.room {
		return false
	}
	g.clear(fmt.Sprintf("%d bytes are free", u.AvailBytes))
	return true
}

// pace holds the creation of a table while the disk is full until
// retryInterval after the last failure, or until the store closes.
func (g *spaceGuard) pace() {
	if g.full.Load() == nil {
		return
	}
	g.mu.Lock()
	wait := time.Until(g.failedAt.Add(retryInterval))
	g.mu.Unlock()
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-g.stop:
	}
}

// spaceFS paces the creation of tables through a spaceGuard.
type spaceFS struct {
	vfs.FS
	g *spaceGuard
}

func (fs spaceFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob") {
		fs.g.pace()
	}
	return fs.FS.Create(name, category)
}

// logFailure makes a store whose log could not be written or synced
// refuse everything from now on (see ErrLogFailed).
type logFailure struct {
	err    atomic.Pointer[error]
	done   chan struct{} // closed on failure
	logger *slog.Logger
}

func newLogFailure(logger *slog.Logger) *logFailure {
	return &logFailure{done: make(chan struct{}), logger: logger}
}

func (f *logFailure) fail(err error) {
	if f.err.CompareAndSwap(nil, &err) {
		f.logger.Error("the log could not be made durable: every command is refused until the data dir is reopened, which recovers exactly what the log holds", "err", err.Error())
		close(f.done)
	}
}

// check returns ErrLogFailed, with its cause, once the log failed.
func (f *logFailure) check() error {
	if errp := f.err.Load(); errp != nil {
		return fmt.Errorf("%w (%v)", ErrLogFailed, *errp)
	}
	return nil
}
