package admin

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyBounds are the upper bounds of legion_command_duration_seconds's
// buckets.
var latencyBounds = [...]time.Duration{
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// statShards spreads the command counters: every core counts every
// command, and counters that two cores write at once move their cache
// line between the cores on each write, which cost a pipelined server
// several percent of its CPU with one shared histogram per command.
const statShards = 32

// commandStats is the collector of legion_commands_total and
// legion_command_duration_seconds. A command is counted in a shard picked
// at random, so cores rarely write the same counters; a scrape sums the
// shards.
type commandStats struct {
	commandsDesc, latencyDesc *prometheus.Desc
	bounds                    []float64 // latencyBounds in seconds
	shards                    [statShards]statShard
}

type statShard struct {
	mu     sync.Mutex                                // held to add a command to byName
	byName atomic.Pointer[map[string]*commandCounts] // replaced, never changed, so read without mu
}

// commandCounts are one command's counters in one shard.
type commandCounts struct {
	ok, failed atomic.Uint64
	nanos      atomic.Uint64                         // the durations' sum
	buckets    [len(latencyBounds) + 1]atomic.Uint64 // by duration; the last is above every bound
}

func newCommandStats() *commandStats {
	s := &commandStats{
		commandsDesc: prometheus.NewDesc("legion_commands_total",
			"Commands processed, by command and result (ok or error).", []string{"command", "result"}, nil),
		latencyDesc: prometheus.NewDesc("legion_command_duration_seconds",
			"Time from reading a command to having its reply, by command.", []string{"command"}, nil),
	}
	for _, b := range latencyBounds {
		s.bounds = append(s.bounds, b.Seconds())
	}
	return s
}

// observe counts one command.
func (s *commandStats) observe(command string, d time.Duration, failed bool) {
	sh := &s.shards[rand.Uint32N(statShards)]
	var c *commandCounts
	if m := sh.byName.Load(); m != nil {
		c = (*m)[command]
	}
	if c == nil {
		c = sh.add(command)
	}
	if failed {
		c.failed.Add(1)
	} else {
		c.ok.Add(1)
	}
	if d < 0 {
		d = 0
	}
	c.nanos.Add(uint64(d))
	i, _ := slices.BinarySearch(latencyBounds[:], d) // a duration equal to a bound is in its bucket
	c.buckets[i].Add(1)
}

// add returns command's counters in sh, adding them if missing.
func (sh *statShard) add(command string) *commandCounts {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := sh.byName.Load()
	if old != nil {
		if c := (*old)[command]; c != nil {
			return c
		}
	}
	m := make(map[string]*commandCounts, 1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	c := new(commandCounts)
	m[command] = c
	sh.byName.Store(&m)
	return c
}

func (s *commandStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.commandsDesc
	ch <- s.latencyDesc
}

// Collect sums the shards. A command counted while it runs may show in
// one series and not yet in another; each series only ever grows.
func (s *commandStats) Collect(ch chan<- prometheus.Metric) {
	type total struct {
		ok, failed, nanos uint64
		buckets           [len(latencyBounds) + 1]uint64
	}
	totals := map[string]*total{}
	for i := range s.shards {
		m := s.shards[i].byName.Load()
		if m == nil {
			continue
		}
		for name, c := range *m {
			t := totals[name]
			if t == nil {
				t = new(total)
				totals[name] = t
			}
			t.ok += c.ok.Load()
			t.failed += c.failed.Load()
			t.nanos += c.nanos.Load()
			for j := range c.buckets {
				t.buckets[j] += c.buckets[j].Load()
			}
		}
	}
	for name, t := range totals {
		ch <- prometheus.MustNewConstMetric(s.commandsDesc, prometheus.CounterValue, float64(t.ok), name, "ok")
		ch <- prometheus.MustNewConstMetric(s.commandsDesc, prometheus.CounterValue, float64(t.failed), name, "error")
		cumulative := make(map[float64]uint64, len(s.bounds))
		var n uint64
		for j, b := range s.bounds {
			n += t.buckets[j]
			cumulative[b] = n
		}
		n += t.buckets[len(s.bounds)]
		ch <- prometheus.MustNewConstHistogram(s.latencyDesc, n, time.Duration(t.nanos).Seconds(), cumulative, name)
	}
}
