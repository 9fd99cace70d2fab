package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// logLines is a slog handler that keeps the messages logged.
type logLines struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logLines) WithGroup(string) slog.Handler      { return l }

func (l *logLines) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// noSpaceOn injects ENOSPC, as the kernel reports it, into the creation
// of and the writes to files whose names end in one of suffixes.
// creates counts the creations refused.
func noSpaceOn(creates *atomic.Int64, suffixes ...string) *errorfs.Toggle {
	return &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind != errorfs.OpCreate && op.Kind != errorfs.OpFileWrite && op.Kind != errorfs.OpFileWriteAt {
			return nil
		}
		for _, s := range suffixes {
			if strings.HasSuffix(op.Path, s) {
				if op.Kind == errorfs.OpCreate {
					creates.Add(1)
				}
				return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
			}
		}
		return nil
	})}
}

func putMeta(s *Store, name, value string) error {
	b := s.NewBatch()
	defer b.Close()
	b.SetMeta(name, []byte(value))
	return b.Commit()
}

// closeWithin closes s, failing the test if that takes over 5s.
func closeWithin(t *testing.T, s *Store, when string) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatalf("Close hangs %s", when)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A flush that cannot write its table for want of space makes the store
// refuse writes, with ErrNoSpace, rather than stall them once the
// memtables fill; reads go on; the retries are spaced; and once a table
// can be written again, writes are taken again. Nothing committed is lost,
// and Close does not wait for a flush that cannot finish.
func TestNoSpaceRefusesWrites(t *testing.T) {
	mem := vfs.NewMem()
	var attempts atomic.Int64
	inject := noSpaceOn(&attempts, ".sst")
	logs := &logLines{}
	opts := Options{Dir: "db", FS: errorfs.Wrap(mem, inject), Logger: slog.New(logs), MemtableBytes: 1 << 20}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := putMeta(s, fmt.Sprintf("k%03d", i), "before"); err != nil {
			t.Fatal(err)
		}
	}
	inject.On()
	done, err := s.db.AsyncFlush()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the store finds the disk full", func() bool { return s.NoSpace() != nil })
	if !errors.Is(s.NoSpace(), syscall.ENOSPC) {
		t.Fatalf("NoSpace() = %v, want the ENOSPC that found it", s.NoSpace())
	}
	// Writes of more than the memtables hold are refused, not stalled.
	big := bytes.Repeat([]byte{'x'}, 64<<10)
	for i := range 64 {
		b := s.NewBatch()
		b.SetMeta(fmt.Sprintf("big%02d", i), big)
		err := b.Commit()
		b.Close()
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "no space left on device") {
			t.Fatalf("write %d while the disk is full: err = %v, want ErrNoSpace naming its cause", i, err)
		}
	}
	if n := s.RefusedNoSpace(); n != 64 {
		t.Fatalf("RefusedNoSpace() = %d, want 64", n)
	}
	b := s.NewBatch()
	b.SetMeta("background", []byte("x"))
	if err := b.CommitNoSync(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("CommitNoSync while the disk is full: err = %v, want ErrNoSpace", err)
	}
	b.Close()
	if v, ok, err := s.GetMeta("k042"); err != nil || !ok || string(v) != "before" {
		t.Fatalf("read while the disk is full: %q %v %v", v, ok, err)
	}
	// The flush is retried about once a retryInterval, not in a loop.
	before := attempts.Load()
	time.Sleep(2500 * time.Millisecond)
	if n := attempts.Load() - before; n < 1 || n > 4 {
		t.Fatalf("%d attempts to write a table in 2.5s, want about one a %v", n, retryInterval)
	}
	if n := logs.count("disk full"); n != 1 {
		t.Fatalf("logged %q %d times, want once", "disk full", n)
	}
	if n := logs.count("storage engine error"); n > 1 {
		t.Fatalf("background errors logged %d times in 2.5s, want at most once per %v", n, errorLogInterval)
	}
	select {
	case <-done:
		t.Fatal("the flush finished while no table could be written")
	default:
	}

	inject.Off()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the flush did not finish once tables could be written")
	}
	waitFor(t, "writes are taken again", func() bool { return s.NoSpace() == nil })
	if logs.count("disk has room again") != 1 {
		t.Fatal("the end of the disk-full state was not logged")
	}
	if err := putMeta(s, "after", "yes"); err != nil {
		t.Fatalf("write once there is room: %v", err)
	}

	// Full again: Close does not wait for the flush it cannot make, and
	// the log brings back every committed write.
	inject.On()
	if _, err := s.db.AsyncFlush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the store finds the disk full again", func() bool { return s.NoSpace() != nil })
	closeWithin(t, s, "while the disk is full")
	// Opening replays the log and flushes what it replayed: on a full
	// disk it waits for space, and says so.
	opened := make(chan error, 1)
	go func() {
		var err error
		s, err = Open(opts)
		opened <- err
	}()
	waitFor(t, "opening finds the disk full", func() bool { return logs.count("disk full: start-up waits") == 1 })
	select {
	case err := <-opened:
		t.Fatalf("opened on a full disk: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	inject.Off()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("opening goes on waiting once there is room")
	}
	defer s.Close()
	for i := range 100 {
		if v, ok, err := s.GetMeta(fmt.Sprintf("k%03d", i)); err != nil || !ok || string(v) != "before" {
			t.Fatalf("k%03d after reopening: %q %v %v", i, v, ok, err)
		}
	}
	if v, ok, err := s.GetMeta("after"); err != nil || !ok || string(v) != "yes" {
		t.Fatalf("after reopening: %q %v %v", v, ok, err)
	}
	if _, ok, _ := s.GetMeta("big00"); ok {
		t.Fatal("a refused write is stored")
	}
}

// A write of the log that fails makes the store refuse everything from
// then on, since what was applied since may be visible without being
// durable; reopening recovers every write acknowledged before.
func TestLogFailureStops(t *testing.T) {
	t.Run("sync", testLogFailureSync)
	t.Run("no sync", testLogFailureNoSync)
}

// Without syncs, pebble panics when it cannot write its log, in the
// committing goroutine and with its commit pipeline locked: the store
// fails, Close returns without waiting for that lock, and the commits
// after are refused.
//
// (When a memtable fills then, pebble cannot close the old log file
// either, and that failure is fatal to the process: its panic unlocks a
// mutex twice. The restart recovers what the log holds.)
func testLogFailureNoSync(t *testing.T) {
	inject := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileWrite && strings.HasSuffix(op.Path, ".log") {
			return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
		}
		return nil
	})}
	s, err := Open(Options{Dir: "db", FS: errorfs.Wrap(vfs.NewMem(), inject), Logger: slog.New(&logLines{}), Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	if err := putMeta(s, "before", "x"); err != nil {
		t.Fatal(err)
	}
	inject.On()
	// Pebble writes the log a 32 KiB block at a time, in the background,
	// and a commit reports the error of the blocks before. The writes
	// stay within the first memtable (256 KiB): a new log file comes
	// with the next one, and pebble cannot close the old one.
	value := strings.Repeat("x", 2<<10)
	var werr error
	for i := 0; i < 90 && werr == nil; i++ {
		werr = putMeta(s, fmt.Sprintf("k%d", i), value)
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(werr, ErrLogFailed) || !strings.Contains(werr.Error(), "no space left on device") {
		t.Fatalf("writes while the log cannot be written: err = %v, want ErrLogFailed naming its cause", werr)
	}
	select {
	case <-s.FailedC():
	default:
		t.Fatal("FailedC not closed after the log failed")
	}
	if err := putMeta(s, "later", "x"); !errors.Is(err, ErrLogFailed) {
		t.Fatalf("write after the log failed: err = %v, want ErrLogFailed", err)
	}
	if v, ok, err := s.GetMeta("before"); err != nil || !ok || string(v) != "x" {
		t.Fatalf("read after the log failed: %q %v %v", v, ok, err)
	}
	closeWithin(t, s, "after the log failed")
}

func testLogFailureSync(t *testing.T) {
	mem := vfs.NewMem()
	inject := noSpaceOn(new(atomic.Int64), ".log")
	opts := Options{Dir: "db", FS: errorfs.Wrap(mem, inject), Logger: slog.New(&logLines{})}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := putMeta(s, fmt.Sprintf("k%02d", i), "acked"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-s.FailedC():
		t.Fatal("FailedC closed before any failure")
	default:
	}
	inject.On()
	if err := putMeta(s, "lost", "x"); !errors.Is(err, ErrLogFailed) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("write whose log record could not be written: err = %v, want ErrLogFailed naming its cause", err)
	}
	select {
	case <-s.FailedC():
	case <-time.After(5 * time.Second):
		t.Fatal("FailedC not closed after the log failed")
	}
	inject.Off()
	if err := putMeta(s, "later", "x"); !errors.Is(err, ErrLogFailed) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("write after the log failed: err = %v, want ErrLogFailed naming its cause", err)
	}
	if err := s.Sync(); !errors.Is(err, ErrLogFailed) {
		t.Fatalf("Sync after the log failed: err = %v, want ErrLogFailed", err)
	}
	if !errors.Is(s.Failed(), ErrLogFailed) {
		t.Fatalf("Failed() = %v", s.Failed())
	}
	closeWithin(t, s, "after the log failed")
	s, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Failed() != nil {
		t.Fatal("a reopened store starts failed")
	}
	for i := range 50 {
		if v, ok, err := s.GetMeta(fmt.Sprintf("k%02d", i)); err != nil || !ok || string(v) != "acked" {
			t.Fatalf("k%02d after reopening: %q %v %v", i, v, ok, err)
		}
	}
	if _, ok, _ := s.GetMeta("later"); ok {
		t.Fatal("a refused write is stored")
	}
	if err := putMeta(s, "again", "x"); err != nil {
		t.Fatalf("write after reopening: %v", err)
	}
}

// pace holds a table's creation until retryInterval after the last
// failure, and Close ends the wait; only no-space errors mark the disk
// full; and a compaction that completes ends the mark only while flushes
// do not fail for want of space.
func TestSpaceGuard(t *testing.T) {
	g := newSpaceGuard(vfs.NewMem(), "db", slog.New(&logLines{}), 1)
	start := time.Now()
	g.pace() // not full: no wait
	if d := time.Since(start); d > retryInterval/2 {
		t.Fatalf("pace waited %v with room", d)
	}
	g.background(&os.PathError{Op: "write", Path: "db/000001.sst", Err: syscall.ENOSPC})
	start = time.Now()
	g.pace()
	if d := time.Since(start); d < retryInterval/2 {
		t.Fatalf("pace waited %v after a failure, want about %v", d, retryInterval)
	}
	g.background(&os.PathError{Op: "write", Path: "db/000002.sst", Err: syscall.ENOSPC})
	go func() {
		time.Sleep(50 * time.Millisecond)
		close(g.stop)
	}()
	start = time.Now()
	g.pace()
	if d := time.Since(start); d > retryInterval/2 {
		t.Fatalf("pace waited %v after the stop", d)
	}
	// Other errors do not mark the disk full.
	g2 := newSpaceGuard(vfs.NewMem(), "db", slog.New(&logLines{}), 1)
	g2.background(errors.New("pebble: something else"))
	if g2.fullErr() != nil {
		t.Fatal("an error other than ENOSPC marked the disk full")
	}
	quota := &os.PathError{Op: "write", Path: "db/000002.sst", Err: syscall.EDQUOT}
	g2.background(quota)
	if !errors.Is(g2.fullErr(), syscall.EDQUOT) {
		t.Fatal("an exhausted quota did not mark the disk full")
	}
	g2.compacted()
	if g2.fullErr() != nil {
		t.Fatal("a compaction that completed while flushes do not fail left the mark")
	}
	g2.background(quota)
	g2.flushed(quota)
	g2.compacted()
	if g2.fullErr() == nil {
		t.Fatal("a compaction that completed while flushes fail for want of space ended the mark")
	}
	g2.flushed(nil)
	if g2.fullErr() != nil {
		t.Fatal("a flush that completed left the mark")
	}
}
