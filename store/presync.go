package store

import (
	"math"
	"sync/atomic"
)

// logPresync syncs the log in the background shortly before pebble
// switches to a new one, when commits do not sync it themselves (fsync no
// and everysec).
//
// The commit that finds the memtable full switches logs, and closing the
// old log syncs it (pebble must: a crash must not leave two logs with
// unclean tails), while that commit holds pebble's commit pipeline, so
// every commit waits. Without syncs per commit, the old log holds then
// everything written since its last sync: under the pipelined counter,
// fsync no, about 5 MB, and every commit stalled for 4–6 ms at each
// switch, a few times a second, while the sync wrote it out behind the
// flushes and compactions.
//
// So once the log has grown to 15/16 of the size the last one reached, a
// goroutine syncs it, and again after each further sixteenth, until the
// switch. Commits do not wait for these syncs (pebble's log writer keeps
// taking records while it syncs), and the close finds little left to
// write: the same counter's switches took 1.4 ms on average. That is one
// or two syncs more per memtable, and none while nothing is written.
type logPresync struct {
	since atomic.Int64 // log bytes committed since the switch to this log
	next  atomic.Int64 // the value of since at which a sync is due
	step  atomic.Int64 // bytes between syncs after the first
	kick  chan struct{}
	syncs atomic.Int64 // syncs made
}

// presyncMin is the fewest log bytes between two presyncs.
const presyncMin = 64 << 10

func newLogPresync() *logPresync {
	p := &logPresync{kick: make(chan struct{}, 1)}
	p.next.Store(math.MaxInt64) // until the first switch
	return p
}

// switched starts counting for a new log. A log after one that took no
// commits (the first after opening, or one after a flush of an idle
// store) gets no presyncs: nothing tells how large it will grow. While
// pebble doubles its first memtables to their full size, each log gets
// more presyncs than it needs: from 15/16 of the last one's size to
// twice it, one per sixteenth, about seventeen.
func (p *logPresync) switched() {
	prev := p.since.Swap(0)
	if prev == 0 {
		p.next.Store(math.MaxInt64)
		return
	}
	p.step.Store(max(prev/16, presyncMin))
	p.next.Store(max(prev-prev/16, presyncMin))
}

// committed counts a commit of n bytes to the log, and asks for a sync if
// one is due.
func (p *logPresync) committed(n int) {
	c := p.since.Add(int64(n))
	due := p.next.Load()
	if c < due {
		return
	}
	if p.next.CompareAndSwap(due, c+p.step.Load()) {
		select {
		case p.kick <- struct{}{}:
		default: // one is asked for already
		}
	}
}

// presyncLoop makes the syncs p asks for, until the store closes.
func (s *Store) presyncLoop(p *logPresync) {
	defer s.stopped.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-p.kick:
			if s.failed.check() != nil {
				continue
			}
			if err := s.logData(); err != nil {
				s.failed.fail(err)
				continue
			}
			p.syncs.Add(1)
		}
	}
}

// logged counts a commit of n bytes to the log for its presyncs.
func (s *Store) logged(n int) {
	if p := s.events.presync; p != nil {
		p.committed(n)
	}
}

// LogPresyncs returns how many presyncs of the log the store has made
// (see logPresync); always 0 with fsync always.
func (s *Store) LogPresyncs() int64 {
	if p := s.events.presync; p != nil {
		return p.syncs.Load()
	}
	return 0
}
