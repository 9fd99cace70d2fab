package main

import (
	"context"
	"fmt"
	"log"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The same logical work for both servers: Legion's handler, and a Redis
// script holding the state as JSON in a string key.
const (
	legionCounter = `
function apply(event, state, ctx)
  state = state or { count = 0 }
  if event == "incr" then state.count = state.count + 1 end
  return state.count, state
end`
	redisCounter = `
local v = redis.call('GET', KEYS[1])
local s
if v then s = cjson.decode(v) else s = { count = 0 } end
if ARGV[1] == 'incr' then s.count = s.count + 1 end
redis.call('SET', KEYS[1], cjson.encode(s))
return s.count`

	// About 1 MiB of state: 8192 items of 128 bytes, and a counter.
	legionLarge = `
function apply(event, state, ctx)
  if state == nil then
    state = { n = 0, items = {} }
    for i = 1, 8192 do state.items[i] = string.rep(string.char(97 + i % 26), 120) .. string.format("%08d", i) end
  end
  state.n = state.n + 1
  return state.n, state
end`
	redisLarge = `
local v = redis.call('GET', KEYS[1])
local s
if v then s = cjson.decode(v) else
  s = { n = 0, items = {} }
  for i = 1, 8192 do s.items[i] = string.rep(string.char(97 + i % 26), 120) .. string.format("%08d", i) end
end
s.n = s.n + 1
redis.call('SET', KEYS[1], cjson.encode(s))
return s.n`

	// A partition per key tagged by the event; Redis keeps the same tag
	// index as one sorted set per tag.
	legionTagged = `
function apply(event, state, ctx) return 1, { tag = event } end
function index(state, key) return { state.tag } end`
	redisTagged = `
redis.call('SET', KEYS[1], cjson.encode({ tag = ARGV[1] }))
redis.call('ZADD', 'idx:' .. ARGV[1], 0, KEYS[1])
return 1`
)

func (b *bench) load(p *proc, src string) string {
	c := p.client(1)
	defer c.Close()
	sha, err := c.ScriptLoad(b.ctx, src).Result()
	if err != nil {
		log.Fatalf("%s: SCRIPT LOAD: %v", p.name, err)
	}
	return sha
}

func (b *bench) scale(n int) int {
	if b.opts.quick {
		return n / 10
	}
	return n
}

func (b *bench) ping() {
	lg, rd := b.startLegion(""), b.startRedis("")
	defer lg.stop()
	defer rd.stop()
	for _, pipeline := range []int{1, 16} {
		n := b.pingRequests(pipeline)
		b.compare("PING", fmt.Sprintf("PING, 50 clients, pipeline %d", pipeline), "PING ", true, lg, rd, n, pipeline, 0, []string{"PING"}, []string{"PING"})
		b.command("redis-benchmark -c 50 -n %d -P %d PING", n, pipeline)
	}
	measure := func(section string) {
		for _, pipeline := range []int{1, 16} {
			b.compare(section, fmt.Sprintf("PING, 50 clients, pipeline %d", pipeline), "PING ", true, lg, rd, b.pingRequests(pipeline), pipeline, 0, []string{"PING"}, []string{"PING"})
		}
	}
	b.oneThread(lg, nil, measure)
	b.pinned(lg, rd, nil, measure)
}

func (b *bench) pingRequests(pipeline int) int {
	if pipeline == 1 {
		return b.scale(200000)
	}
	return b.scale(200000 * pipeline / 4)
}

// oneThreadSection holds the runs of legion-server limited to one thread.
const oneThreadSection = "legion-server on one thread (GOMAXPROCS=1), the same work"

// oneThread restarts lg on its data with GOMAXPROCS=1, runs warm (if not
// nil), then measure into the one-thread section, and restarts it as it
// was. A restarted server reads each partition from disk the first time it
// is used: warm uses them all once, so that the lines compare servers
// that hold their data in memory, as before the restart. On a machine this
// small, the load generator competes with the server's threads for the
// cores: these lines show what the server does when it leaves the
// generator a core of its own, as Redis, single-threaded, does.
func (b *bench) oneThread(lg *proc, warm func(), measure func(section string)) {
	lg.env = []string{"GOMAXPROCS=1"}
	lg.restart(b)
	b.measureRestarted(oneThreadSection, warm, measure,
		"Legion restarted on the same data with `GOMAXPROCS=1` (and every partition used once before the runs), against the same Redis, alternating as above. "+
			"redis-benchmark needs a core of this machine's two: Redis, single-threaded, leaves it one, while Legion's two threads "+
			"contend with it, and the Go runtime wakes its idle thread for each short burst of work. "+
			"These lines are for comparison; the targets are measured with the default (all cores).")
	lg.env = nil
	lg.restart(b)
}

// measureRestarted runs warm (if not nil), then measure into section, and
// gives the lines it added note, unless they have one.
func (b *bench) measureRestarted(section string, warm func(), measure func(section string), note string) {
	if warm != nil {
		warm()
	}
	first := len(b.report.lines)
	measure(section)
	for _, l := range b.report.lines[first:] {
		if l.note == "" {
			l.note = note
		}
	}
}

// pinnedSection holds the runs with each server on one core and the load
// generator on another.
const pinnedSection = "each server on one core, redis-benchmark on another (taskset), the same work"

// pinned restarts lg and rd on their data bound to core 0, runs warm (if
// not nil; see oneThread), then measure into the pinned section with
// redis-benchmark bound to core 1, and restarts both as they were.
// Unbound on two cores, redis-benchmark, a core's worth of work itself,
// takes turns on the cores with Legion's threads: a loop thread woken
// while both cores are busy waits for one (perf sched: 0.5–0.7 ms on
// average, up to 8 ms, against 0.05 ms for redis-benchmark), and Legion's
// work spread over two cores costs more per request than on one. Bound, each server has a core to itself and
// the generator the other, as when clients run on other machines: these
// lines compare what each server does with one core. Redis forgets the
// scripts it loaded when it restarts: measure loads what it needs.
func (b *bench) pinned(lg, rd *proc, warm func(), measure func(section string)) {
	if runtime.NumCPU() < 2 {
		return
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		b.report.notes = append(b.report.notes, "No one-core comparison: taskset (util-linux) was not found.")
		return
	}
	lg.cpus, rd.cpus, b.benchCPUs = "0", "0", "1"
	lg.restart(b)
	rd.restart(b)
	b.measureRestarted(pinnedSection, warm, measure,
		"Both servers restarted on their data bound to core 0 (legion-server with all its threads there, and every partition used once before the runs), redis-benchmark bound to core 1, "+
			"alternating as above: each server has a core of its own and the load generator takes no CPU time from it, as when clients run on "+
			"other machines. Unbound, a legion-server thread woken while redis-benchmark and the other loop hold both cores waits for one. "+
			"These lines are for comparison; the targets are measured unbound.")
	lg.cpus, rd.cpus, b.benchCPUs = "", "", ""
	lg.restart(b)
	rd.restart(b)
}

// compare runs the same work on both servers, alternating, and adds its
// throughput, p50 (if withP50) and p99 lines to section. prefix starts the
// names of the latency lines.
func (b *bench) compare(section, name, prefix string, withP50 bool, lg, rd *proc, n, pipeline, keyspace int, legionCmd, redisCmd []string) {
	rps := &line{section: section, name: name, unit: "ops/s", higherIsBetter: true}
	p50 := &line{section: section, name: fmt.Sprintf("%sp50, pipeline %d", prefix, pipeline), unit: "ms"}
	p99 := &line{section: section, name: fmt.Sprintf("%sp99, pipeline %d", prefix, pipeline), unit: "ms"}
	cpu := &line{section: section, name: fmt.Sprintf("%sserver CPU per request, pipeline %d", prefix, pipeline), unit: "µs",
		note: "Server CPU per request is the CPU time of the server process (all its threads) during a run, divided by the requests of the run."}
	for r := 0; r < b.opts.runs; r++ {
		for _, p := range []*proc{lg, rd} {
			cmd := legionCmd
			if p == rd {
				cmd = redisCmd
			}
			res := b.redisBenchmark(p, 50, n, pipeline, keyspace, cmd...)
			rps.add(p, res.rps)
			p50.add(p, res.p50)
			p99.add(p, res.p99)
			cpu.add(p, res.cpuPerOp)
		}
	}
	b.add(rps)
	if withP50 {
		b.add(p50)
	}
	b.add(p99)
	b.add(cpu)
}

func (l *line) add(p *proc, v float64) {
	if p.name == "legion" {
		l.legion = append(l.legion, v)
	} else {
		l.redis = append(l.redis, v)
	}
}

func (b *bench) counter() {
	for _, mode := range []fsyncMode{fsyncOn, fsyncOff} {
		lg, rd := b.startLegion("", mode.legion...), b.startRedis("", mode.redis...)
		b.load(lg, legionCounter)
		sha := b.load(rd, redisCounter)
		section := "Counter (" + mode.name + ")"
		apply := []string{"LEGION.APPLY", "key:__rand_int__", "incr"}
		evalsha := []string{"EVALSHA", sha, "1", "key:__rand_int__", "incr"}
		var syncs []string // with fsync always, how the log synced at each pipeline depth
		measure := func(section, what string) {
			for _, pipeline := range []int{1, 16} {
				n0, t0 := b.logSyncs(lg)
				b.compare(section, fmt.Sprintf("%sLEGION.APPLY vs EVALSHA, 50 clients, pipeline %d", what, pipeline), what, true, lg, rd, b.counterRequests(pipeline), pipeline, b.opts.keys, apply, evalsha)
				if n1, t1 := b.logSyncs(lg); mode.name == fsyncOn.name && what == "" && n1 > n0 {
					requests := float64(b.opts.runs * b.counterRequests(pipeline))
					syncs = append(syncs, fmt.Sprintf("once per %.1f requests at pipeline %d, a sync taking %.2f ms on average",
						requests/float64(n1-n0), pipeline, (t1-t0).Seconds()*1000/float64(n1-n0)))
				}
			}
		}
		measure(section, "")
		if mode.name == fsyncOn.name {
			b.noteLogSyncs(lg, syncs)
		}
		if mode.name == fsyncOff.name {
			// Every key, about four events each.
			warm := func() { b.redisBenchmark(lg, 50, 4*b.opts.keys, 16, b.opts.keys, apply...) }
			b.oneThread(lg, warm, func(section string) { measure(section, "counter, fsync off: ") })
			b.pinned(lg, rd, warm, func(section string) {
				b.load(rd, redisCounter) // Redis forgets loaded scripts when it restarts
				measure(section, "counter, fsync off: ")
			})
		}
		b.command("redis-benchmark -c 50 -n N -r %d [-P 16] LEGION.APPLY key:__rand_int__ incr   # legion-server %s", b.opts.keys, strings.Join(mode.legion, " "))
		b.command("redis-benchmark -c 50 -n N -r %d [-P 16] EVALSHA <counter sha> 1 key:__rand_int__ incr   # redis-server %s", b.opts.keys, strings.Join(mode.redis, " "))
		lg.stop()
		rd.stop()
	}
	// APPLY against our own PING, back to back on one server.
	for _, mode := range []fsyncMode{fsyncOff, fsyncOn} {
		lg := b.startLegion("", mode.legion...)
		b.load(lg, legionCounter)
		for _, pipeline := range []int{1, 16} {
			n := b.counterRequests(pipeline)
			l := &line{section: "Counter against PING (legion only)", name: fmt.Sprintf("LEGION.APPLY (%s) / PING, 50 clients, pipeline %d", strings.Join(mode.legion, " "), pipeline), unit: "ops/s",
				note: "Here both columns are Legion: APPLY in the left one and PING in the right one, alternating on one server; the ratio is APPLY/PING."}
			for r := 0; r < b.opts.runs; r++ {
				apply := b.redisBenchmark(lg, 50, n, pipeline, b.opts.keys, "LEGION.APPLY", "key:__rand_int__", "incr")
				ping := b.redisBenchmark(lg, 50, n, pipeline, 0, "PING")
				l.legion = append(l.legion, apply.rps)
				l.redis = append(l.redis, ping.rps)
			}
			b.add(l)
		}
		lg.stop()
	}
}

// noteLogSyncs notes how lg, with fsync always, synced its log (INFO
// persistence's log_sync_io_uring), and how often and how long (syncs,
// one description per pipeline depth of the counter's runs).
func (b *bench) noteLogSyncs(lg *proc, syncs []string) {
	c := lg.client(1)
	defer c.Close()
	info, err := c.Info(b.ctx, "persistence").Result()
	if err != nil {
		return
	}
	how := "plain fdatasync calls (the kernel refused io_uring)"
	if strings.Contains(info, "log_sync_io_uring:1\r\n") {
		how = "io_uring (INFO persistence: log_sync_io_uring:1)"
		if directLog(info) {
			how += ", each sync one direct write of the sectors holding the log's new bytes (log_direct_io:1)"
		}
	}
	note := "With fsync always, legion-server synced its log through " + how + "."
	if len(syncs) > 0 {
		note += " In the counter's runs (INFO persistence: log_syncs, log_sync_usec) it synced " + strings.Join(syncs, "; and ") + "."
	}
	b.report.notes = append(b.report.notes, note)
}

// directLog reports whether INFO persistence says the log syncs with
// direct writes.
func directLog(info string) bool { return strings.Contains(info, "log_direct_io:1\r\n") }

// logSyncs reads how many times lg has synced its log and how long the
// syncs took in all (INFO persistence); zeros if it cannot tell.
func (b *bench) logSyncs(lg *proc) (int64, time.Duration) {
	c := lg.client(1)
	defer c.Close()
	info, err := c.Info(b.ctx, "persistence").Result()
	if err != nil {
		return 0, 0
	}
	var syncs, usec int64
	for _, l := range strings.Split(info, "\r\n") {
		fmt.Sscanf(l, "log_syncs:%d", &syncs)
		fmt.Sscanf(l, "log_sync_usec:%d", &usec)
	}
	return syncs, time.Duration(usec) * time.Microsecond
}

// counterRequests is how many counter events a run sends.
func (b *bench) counterRequests(pipeline int) int {
	if pipeline == 1 {
		return b.scale(100000)
	}
	return b.scale(400000)
}

// largeState sends small events to one partition of about 1 MiB and
// measures events per second and the bytes the process wrote to storage per
// event: from one client (every event its own sync) and from 8 clients
// pipelining 16 events (syncs shared). Each run spans three of the
// partition's snapshot intervals (legion rewrites the snapshot of a 1 MiB
// state about every 1000 events), so the snapshots' cost is in the figure.
func (b *bench) largeState() {
	for _, v := range []struct {
		clients, pipeline, events int
	}{{1, 1, b.scale(3072)}, {8, 16, b.scale(3072)}} {
		section := fmt.Sprintf("Large state (~1 MiB partition, %d client(s), pipeline %d, fsync on)", v.clients, v.pipeline)
		rate := &line{section: section, name: "small events per second", unit: "ops/s", higherIsBetter: true}
		bytes := &line{section: section, name: "bytes written to storage per event", unit: "bytes"}
		bytes.note = "Runs span three snapshot intervals of this state (Legion rewrites the 1 MiB snapshot about every 1000 events), so snapshot writes and most of their flushes and compactions are counted."
		direct := false
		size := &line{section: section, name: "size of the state (as JSON)", unit: "bytes"}
		for r := 0; r < b.opts.runs; r++ {
			for _, which := range []string{"legion", "redis"} {
				var p *proc
				var send func(pipe redis.Pipeliner)
				if which == "legion" {
					p = b.startLegion("", fsyncOn.legion...)
					b.load(p, legionLarge)
					send = func(pipe redis.Pipeliner) { pipe.Do(b.ctx, "LEGION.APPLY", "big", "incr") }
				} else {
					p = b.startRedis("", fsyncOn.redis...)
					sha := b.load(p, redisLarge)
					send = func(pipe redis.Pipeliner) { pipe.EvalSha(b.ctx, sha, []string{"big"}, "incr") }
				}
				c := p.client(v.clients)
				run := func(n int) {
					pipe := c.Pipeline()
					for i := 0; i < n; i++ {
						send(pipe)
					}
					if _, err := pipe.Exec(b.ctx); err != nil {
						log.Fatalf("%s: %v", which, err)
					}
				}
				run(5) // create it, warm up
				w0 := p.writeBytes()
				start := time.Now()
				var wg sync.WaitGroup
				for w := 0; w < v.clients; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < v.events/v.clients; i += v.pipeline {
							run(v.pipeline)
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				// Let background writes (pebble flushes, AOF writes) land in the count.
				time.Sleep(1500 * time.Millisecond)
				w1 := p.writeBytes()
				var stored float64
				if which == "legion" {
					if v, err := c.Do(b.ctx, "LEGION.GET", "big").Text(); err == nil {
						stored = float64(len(v))
					}
					if info, err := c.Info(b.ctx, "persistence").Result(); err == nil {
						direct = directLog(info)
					}
				} else if v, err := c.StrLen(b.ctx, "big").Result(); err == nil {
					stored = float64(v)
				}
				c.Close()
				rate.add(p, float64(v.events)/elapsed.Seconds())
				bytes.add(p, float64(w1-w0)/float64(v.events))
				size.add(p, stored)
				p.stop()
			}
		}
		if v.clients == 1 {
			if direct {
				bytes.note += " Each fsync writes the sectors holding the log's bytes since the last one (INFO persistence: log_direct_io:1), 512 bytes or a few sectors for a small event, rather than the log's last 4 KiB page."
			} else {
				bytes.note += " Each fsync also writes at least the log's last 4 KiB page again, so one client syncing every event cannot go below about 4 KB per event; with pipelines and concurrent clients syncs are shared."
			}
		}
		b.add(rate)
		b.add(bytes)
		b.add(size)
		b.command("%d LEGION.APPLY big incr from %d client(s), pipeline %d (legion --fsync always) vs EVALSHA of the same JSON work (redis appendonly yes appendfsync everysec); bytes from /proc/<pid>/io write_bytes", v.events, v.clients, v.pipeline)
	}
}

// loadTagged writes n partitions tagged t:<12 digits of i%1000> into both
// servers with pipelined clients.
func (b *bench) loadTagged(p *proc, n int, do func(pipe redis.Pipeliner, key, tag string)) time.Duration {
	c := p.client(16)
	defer c.Close()
	start := time.Now()
	const workers, batch = 8, 500
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for lo := w * batch; lo < n; lo += workers * batch {
				pipe := c.Pipeline()
				for i := lo; i < lo+batch && i < n; i++ {
					do(pipe, fmt.Sprintf("p:%d", i), fmt.Sprintf("t:%012d", i%1000))
				}
				if _, err := pipe.Exec(context.Background()); err != nil {
					log.Fatalf("%s: loading: %v", p.name, err)
				}
			}
		}(w)
	}
	wg.Wait()
	return time.Since(start)
}

func (b *bench) search() {
	n := b.opts.partitions
	lg := b.startLegion("", fsyncOff.legion...)
	rd := b.startRedis("", fsyncOff.redis...)
	defer lg.stop()
	defer rd.stop()
	b.load(lg, legionTagged)
	sha := b.load(rd, redisTagged)
	log.Printf("loading %d tagged partitions into both", n)
	lt := b.loadTagged(lg, n, func(pipe redis.Pipeliner, key, tag string) { pipe.Do(b.ctx, "LEGION.APPLY", key, tag) })
	rt := b.loadTagged(rd, n, func(pipe redis.Pipeliner, key, tag string) { pipe.EvalSha(b.ctx, sha, []string{key}, tag) })
	b.add(&line{section: "Search (1000 tags over the partitions)", name: "loading the partitions (pipelined, 8 clients, fsync off)", unit: "partitions/s", higherIsBetter: true,
		legion: []float64{float64(n) / lt.Seconds()}, redis: []float64{float64(n) / rt.Seconds()}})
	search := []string{"LEGION.SEARCH", "t:__rand_int__", "EXACT", "COUNT", "10"}
	zrange := []string{"ZRANGEBYLEX", "idx:t:__rand_int__", "-", "+", "LIMIT", "0", "10"}
	measure := func(section, what string) {
		for _, pipeline := range []int{1, 16} {
			req := b.scale(200000)
			if pipeline > 1 {
				req = b.scale(800000)
			}
			b.compare(section, fmt.Sprintf("%sLEGION.SEARCH t:<tag> EXACT COUNT 10 vs ZRANGEBYLEX idx:t:<tag> - + LIMIT 0 10, pipeline %d", what, pipeline), what, false, lg, rd, req, pipeline, 1000, search, zrange)
		}
	}
	measure("Search (1000 tags over the partitions)", "")
	// The next page of a tag: its first 10 keys after p:5.
	for _, pipeline := range []int{1, 16} {
		req := b.scale(200000)
		if pipeline > 1 {
			req = b.scale(800000)
		}
		b.compare("Search (1000 tags over the partitions)", fmt.Sprintf("next page: LEGION.SEARCH t:<tag> EXACT COUNT 10 AFTER p:5 vs ZRANGEBYLEX idx:t:<tag> (p:5 + LIMIT 0 10, pipeline %d", pipeline), "next page: ", false, lg, rd, req, pipeline, 1000,
			append(slices.Clone(search), "AFTER", "p:5"), []string{"ZRANGEBYLEX", "idx:t:__rand_int__", "(p:5", "+", "LIMIT", "0", "10"})
	}
	// Every tag's first page, about 20 times each.
	b.oneThread(lg, func() { b.redisBenchmark(lg, 50, b.scale(200000), 16, 1000, search...) }, func(section string) { measure(section, "search: ") })
	b.command("redis-benchmark -c 50 -r 1000 [-P 16] LEGION.SEARCH t:__rand_int__ EXACT COUNT 10 [AFTER p:5]")
	b.command("redis-benchmark -c 50 -r 1000 [-P 16] ZRANGEBYLEX idx:t:__rand_int__ - + LIMIT 0 10   # the next page: (p:5 + LIMIT 0 10")
}

// footprint loads the tagged partitions, then compares memory and the time
// from start to serving on a restart.
func (b *bench) footprint() {
	n := b.opts.partitions
	lg := b.startLegion("", fsyncOff.legion...)
	rd := b.startRedis("", fsyncOff.redis...)
	b.load(lg, legionTagged)
	sha := b.load(rd, redisTagged)
	log.Printf("loading %d tagged partitions into both", n)
	b.loadTagged(lg, n, func(pipe redis.Pipeliner, key, tag string) { pipe.Do(b.ctx, "LEGION.APPLY", key, tag) })
	b.loadTagged(rd, n, func(pipe redis.Pipeliner, key, tag string) { pipe.EvalSha(b.ctx, sha, []string{key}, tag) })
	time.Sleep(3 * time.Second) // let background work settle
	section := fmt.Sprintf("Footprint (%d tagged partitions)", n)
	if c := lg.client(1); c != nil {
		if info, err := c.Info(b.ctx, "memory").Result(); err == nil {
			var goTotal, heap, cache, memtables, blocks int64
			for _, l := range strings.Split(info, "\r\n") {
				fmt.Sscanf(l, "used_memory_runtime:%d", &goTotal)
				fmt.Sscanf(l, "used_memory:%d", &heap)
				fmt.Sscanf(l, "partition_cache_bytes:%d", &cache)
				fmt.Sscanf(l, "storage_memtable_bytes:%d", &memtables)
				fmt.Sscanf(l, "storage_block_cache_bytes:%d", &blocks)
			}
			mib := func(n int64) float64 { return float64(n) / (1 << 20) }
			b.report.notes = append(b.report.notes, fmt.Sprintf("After loading, legion-server held %.0f MiB resident. Its parts: the Go runtime %.0f MiB (%.0f MiB of live heap), and outside the Go heap the partition cache %.0f MiB, pebble's memtables %.0f MiB and its block cache %.0f MiB.",
				mib(lg.rss()), mib(goTotal), mib(heap), mib(cache), mib(memtables), mib(blocks)))
		}
		c.Close()
	}
	b.add(&line{section: section, name: "resident memory after loading", unit: "MiB",
		legion: []float64{float64(lg.rss()) / (1 << 20)}, redis: []float64{float64(rd.rss()) / (1 << 20)}})
	b.add(&line{section: section, name: "bytes on disk", unit: "MiB",
		legion: []float64{float64(lg.diskUsage()) / (1 << 20)}, redis: []float64{float64(rd.diskUsage()) / (1 << 20)}})
	start := &line{section: section, name: "start to serving after a restart (all data available)", unit: "s"}
	rss := &line{section: section, name: "resident memory after a restart (Legion: once it has scanned its partitions)", unit: "MiB"}
	for r := 0; r < b.opts.runs; r++ {
		for _, p := range []*proc{lg, rd} {
			d := p.restart(b)
			c := p.client(1)
			if got, err := c.DBSize(b.ctx).Result(); err != nil || (p.name == "legion" && got != int64(n)) {
				log.Fatalf("%s after restart: DBSIZE %d, %v", p.name, got, err)
			}
			for p == lg {
				info, err := c.Info(b.ctx, "legion").Result()
				if err != nil {
					log.Fatalf("legion after restart: %v", err)
				}
				if strings.Contains(info, "partition_filter_ready:1\r\n") {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			c.Close()
			start.add(p, d.Seconds())
			rss.add(p, float64(p.rss())/(1<<20))
		}
	}
	b.add(start)
	b.add(rss)
	lg.stop()
	rd.stop()
	b.report.notes = append(b.report.notes,
		"Redis's DBSIZE counts the state keys and the 1000 index sorted sets; Legion's counts partitions.",
		"Start to serving is measured from exec until PING answers without LOADING; Redis reloads its AOF, Legion opens pebble.",
		"After a start, Legion scans its partitions in the background to fill its filter of stored partitions, reading them through pebble's block cache; the resident memory after a restart is taken once that scan is done.")
}

// profileWarmup is how many events per key go to a fresh server before
// its profile is taken: enough that nearly every key is in the partition
// cache (a key is missed with probability e^-4), so the profile shows the
// steady state the counter's runs measure, not loads of cold partitions.
const profileWarmup = 4

// cpuProfile profiles legion-server under the pipelined counter load.
func (b *bench) cpuProfile(path string) {
	lg := b.startLegion("", fsyncOn.legion...)
	defer lg.stop()
	b.load(lg, legionCounter)
	b.redisBenchmark(lg, 50, profileWarmup*b.opts.keys, 16, b.opts.keys, "LEGION.APPLY", "key:__rand_int__", "incr")
	done := make(chan struct{})
	go func() {
		b.redisBenchmark(lg, 50, 2000000, 16, b.opts.keys, "LEGION.APPLY", "key:__rand_int__", "incr")
		close(done)
	}()
	time.Sleep(time.Second)
	out, err := exec.Command("curl", "-s", "-o", path, fmt.Sprintf("http://127.0.0.1:%s/debug/pprof/profile?seconds=10", adminPort(lg))).CombinedOutput()
	if err != nil {
		log.Printf("profile: %v %s", err, out)
	}
	<-done
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", b.legionBin, path).Output()
	if err != nil {
		log.Printf("pprof: %v", err)
		return
	}
	b.report.profile = string(top)
	log.Printf("CPU profile in %s (go tool pprof -top %s)", path, path)
}

// adminPort returns the admin port of the last --admin-port flag (the last
// one given wins).
func adminPort(p *proc) string {
	port := "-1"
	for i, a := range p.args {
		if a == "--admin-port" && i+1 < len(p.args) {
			port = p.args[i+1]
		}
	}
	return port
}
