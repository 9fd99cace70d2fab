package store

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestLogPresyncDue: the syncs fall due at 15/16 of the last log's size
// and after each further sixteenth, one asked for at a time, and not at
// all after a log that took no commits.
func TestLogPresyncDue(t *testing.T) {
	p := newLogPresync()
	kicked := func() bool {
		select {
		case <-p.kick:
			return true
		default:
			return false
		}
	}
	// The first log: no presyncs, however large it grows.
	p.switched()
	p.committed(100 << 20)
	if kicked() {
		t.Fatal("a presync in the first log")
	}
	// The second log: the first took 100 MiB.
	p.switched()
	p.committed(93 << 20)
	if kicked() {
		t.Fatal("a presync at 93/100")
	}
	p.committed(1 << 20) // 94 MiB ≥ 15/16 of 100
	if !kicked() {
		t.Fatal("no presync at 94/100")
	}
	p.committed(1 << 20)
	if kicked() {
		t.Fatal("a second presync before a sixteenth more")
	}
	p.committed(6 << 20) // 101 MiB: one more is due
	p.committed(7 << 20) // 108 MiB: and another, asked for while the last waits
	if !kicked() || kicked() {
		t.Fatal("the presyncs due while one was waiting were not asked for exactly once")
	}
	// A switch with nothing committed since: no presyncs for the next log.
	p.switched()
	p.switched()
	p.committed(200 << 20)
	if kicked() {
		t.Fatal("a presync in a log after an empty one")
	}
	// A small log: presyncs no closer than presyncMin.
	p.switched()
	p.committed(100)
	p.switched()
	p.committed(presyncMin - 1)
	if kicked() {
		t.Fatal("a presync before presyncMin")
	}
	p.committed(1)
	if !kicked() {
		t.Fatal("no presync at presyncMin")
	}
}

// TestLogPresyncBeforeSwitch: without syncs per commit, the log is synced
// in the background shortly before pebble switches logs, so the sync of
// the close (which holds every commit) has little left to write; with
// fsync always there are no presyncs.
func TestLogPresyncBeforeSwitch(t *testing.T) {
	for _, mode := range []SyncMode{SyncNever, SyncEverySecond, SyncAlways} {
		t.Run(mode.String(), func(t *testing.T) {
			fs := &logRecorder{FS: vfs.NewMem()}
			s, err := Open(Options{Dir: "db", FS: fs, Sync: mode, MemtableBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if (s.events.presync != nil) != (mode != SyncAlways) {
				t.Fatalf("presync set: %v", s.events.presync != nil)
			}
			defer func() {
				if mode == SyncAlways && s.LogPresyncs() != 0 {
					t.Fatalf("%d presyncs with fsync always", s.LogPresyncs())
				}
			}()
			value := strings.Repeat("v", 4000)
			for i := range 4000 {
				b := s.NewBatch()
				b.SetMeta(fmt.Sprintf("k%06d", i), []byte(value))
				if err := b.Commit(); err != nil {
					t.Fatal(err)
				}
				b.Close()
				runtime.Gosched()
			}
			logs := fs.closed()
			if len(logs) < 8 {
				t.Fatalf("only %d logs closed: the test writes too little", len(logs))
			}
			// Pebble doubles its first memtables from 256 KiB; from the
			// fourth log on they are full size.
			early := 0
			for _, l := range logs[3:] {
				// The last sync is the close's; the one before, if the
				// presync made it, covered most of the log.
				if n := len(l.syncs); n >= 2 && l.syncs[n-2] >= l.size*3/4 {
					early++
				}
			}
			checked := len(logs) - 3
			t.Logf("%d of %d logs synced at 3/4 of their size or later before their close; the last: %+v", early, checked, logs[len(logs)-1])
			switch {
			case mode == SyncAlways:
				return // every commit syncs
			case early < checked*2/3:
				t.Fatalf("%d of %d logs synced at 3/4 of their size or later before their close: %+v", early, checked, logs[3:])
			case s.LogPresyncs() < int64(early):
				t.Fatalf("%d presyncs counted, fewer than the %d logs they synced", s.LogPresyncs(), early)
			}
		})
	}
}

// logRecorder records, for every log file written, the sizes at which it
// was synced and the size it was closed at.
type logRecorder struct {
	vfs.FS
	mu   sync.Mutex
	logs []*logRecord
}

type logRecord struct {
	name   string
	size   int
	syncs  []int
	closed bool
}

func (r *logRecorder) track(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	l := &logRecord{name: name}
	r.logs = append(r.logs, l)
	return &recordedLog{File: f, r: r, l: l}, nil
}

func (r *logRecorder) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := r.FS.Create(name, cat)
	return r.track(name, f, err)
}

func (r *logRecorder) ReuseForWrite(old, name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := r.FS.ReuseForWrite(old, name, cat)
	return r.track(name, f, err)
}

// closed returns copies of the records of the logs closed so far.
func (r *logRecorder) closed() []logRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []logRecord
	for _, l := range r.logs {
		if l.closed {
			c := *l
			c.syncs = append([]int(nil), l.syncs...)
			out = append(out, c)
		}
	}
	return out
}

type recordedLog struct {
	vfs.File
	r *logRecorder
	l *logRecord
}

func (f *recordedLog) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.r.mu.Lock()
	f.l.size += n
	f.r.mu.Unlock()
	return n, err
}

func (f *recordedLog) synced() {
	f.r.mu.Lock()
	f.l.syncs = append(f.l.syncs, f.l.size)
	f.r.mu.Unlock()
}

func (f *recordedLog) Sync() error {
	f.synced()
	return f.File.Sync()
}

func (f *recordedLog) SyncData() error {
	f.synced()
	return f.File.SyncData()
}

func (f *recordedLog) Close() error {
	f.r.mu.Lock()
	f.l.closed = true
	f.r.mu.Unlock()
	return f.File.Close()
}
