package resp

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// slowlog keeps the most recent commands that ran longer than a threshold,
// as Redis's SLOWLOG does (arguments truncated the same way), in a ring.
type slowlog struct {
	threshold atomic.Int64 // ns; negative: off; zero: log everything

	mu     sync.Mutex // guards the fields below
	maxLen int
	nextID int64
	ring   []slowEntry // oldest at start
	start  int
	count  int
}

type slowEntry struct {
	id       int64
	at       time.Time
	duration time.Duration
	args     []string
	addr     string
	name     string
}

const (
	slowlogMaxArgs   = 32
	slowlogMaxArgLen = 128
)

func (l *slowlog) settings() (time.Duration, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Duration(l.threshold.Load()), l.maxLen
}

func (l *slowlog) set(threshold time.Duration, maxLen int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	entries := l.newestFirst(maxLen)
	l.threshold.Store(int64(threshold))
	l.maxLen = maxLen
	l.ring = make([]slowEntry, maxLen)
	l.start, l.count = 0, 0
	for i := len(entries) - 1; i >= 0; i-- {
		l.push(entries[i])
	}
}

// push adds e as the newest entry, dropping the oldest when full. l.mu held.
func (l *slowlog) push(e slowEntry) {
	if l.maxLen == 0 {
		return
	}
	if l.count < l.maxLen {
		l.ring[(l.start+l.count)%l.maxLen] = e
		l.count++
		return
	}
	l.ring[l.start] = e
	l.start = (l.start + 1) % l.maxLen
}

// newestFirst returns up to n entries, newest first. l.mu held.
func (l *slowlog) newestFirst(n int) []slowEntry {
	if n < 0 || n > l.count {
		n = l.count
	}
	out := make([]slowEntry, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, l.ring[(l.start+l.count-1-i)%l.maxLen])
	}
	return out
}

// record adds the command if it was slow enough. Fast commands cost one
// atomic load.
func (l *slowlog) record(c *client, args [][]byte, d time.Duration) {
	th := time.Duration(l.threshold.Load())
	if th < 0 || d < th {
		return
	}
	e := slowEntry{at: time.Now(), duration: d, addr: c.addr}
	c.mu.Lock()
	e.name = c.name
	c.mu.Unlock()
	n := len(args)
	if n > slowlogMaxArgs {
		n = slowlogMaxArgs - 1
	}
	for _, a := range args[:n] {
		if len(a) > slowlogMaxArgLen {
			e.args = append(e.args, fmt.Sprintf("%s... (%d more bytes)", a[:slowlogMaxArgLen], len(a)-slowlogMaxArgLen))
		} else {
			e.args = append(e.args, string(a))
		}
	}
	if len(args) > slowlogMaxArgs {
		e.args = append(e.args, fmt.Sprintf("... (%d more arguments)", len(args)-n))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e.id = l.nextID
	l.nextID++
	l.push(e)
}

func cmdSlowlogGet(s *Server, c *client, args [][]byte, w *writer) {
	count := 10
	if len(args) == 3 {
		n, err := strconv.Atoi(string(args[2]))
		if err != nil || n < -1 {
			w.errorLine("ERR count should be greater than or equal to -1")
			return
		}
		count = n
	}
	s.slowlog.mu.Lock()
	entries := s.slowlog.newestFirst(count)
	s.slowlog.mu.Unlock()
	w.array(len(entries))
	for _, e := range entries {
		w.array(6)
		w.integer(e.id)
		w.integer(e.at.Unix())
		w.integer(e.duration.Microseconds())
		w.array(len(e.args))
		for _, a := range e.args {
			w.bulkString(a)
		}
		w.bulkString(e.addr)
		w.bulkString(e.name)
	}
}

func cmdSlowlogLen(s *Server, c *client, args [][]byte, w *writer) {
	s.slowlog.mu.Lock()
	n := s.slowlog.count
	s.slowlog.mu.Unlock()
	w.integer(int64(n))
}

func cmdSlowlogReset(s *Server, c *client, args [][]byte, w *writer) {
	s.slowlog.mu.Lock()
	s.slowlog.start, s.slowlog.count = 0, 0
	s.slowlog.mu.Unlock()
	w.ok()
}
