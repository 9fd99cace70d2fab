package resp

import (
	"fmt"
	"strconv"
	"sync"
	"time"
)

// slowlog keeps the most recent commands that ran longer than a threshold,
// as Redis's SLOWLOG does (arguments truncated the same way).
type slowlog struct {
	mu        sync.Mutex
	threshold time.Duration // negative: off; zero: log everything
	maxLen    int
	nextID    int64
	entries   []slowEntry // newest first
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
	return l.threshold, l.maxLen
}

func (l *slowlog) set(threshold time.Duration, maxLen int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.threshold, l.maxLen = threshold, maxLen
	if len(l.entries) > maxLen {
		l.entries = l.entries[:maxLen]
	}
}

// record adds the command if it was slow enough.
func (l *slowlog) record(c *client, args [][]byte, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.threshold < 0 || d < l.threshold || l.maxLen == 0 {
		return
	}
	e := slowEntry{id: l.nextID, at: time.Now(), duration: d, addr: c.addr}
	l.nextID++
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
	l.entries = append([]slowEntry{e}, l.entries...)
	if len(l.entries) > l.maxLen {
		l.entries = l.entries[:l.maxLen]
	}
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
	entries := s.slowlog.entries
	if count >= 0 && count < len(entries) {
		entries = entries[:count]
	}
	entries = append([]slowEntry(nil), entries...)
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
	n := len(s.slowlog.entries)
	s.slowlog.mu.Unlock()
	w.integer(int64(n))
}

func cmdSlowlogReset(s *Server, c *client, args [][]byte, w *writer) {
	s.slowlog.mu.Lock()
	s.slowlog.entries = nil
	s.slowlog.mu.Unlock()
	w.ok()
}
