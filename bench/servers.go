package main

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// proc is a server process started by the benchmark.
type proc struct {
	name string
	cmd  *exec.Cmd
	port int
	dir  string
	args []string
	env  []string // added to the environment
	cpus string   // if set, the cores it runs on (taskset -c)
}

// command is bin with args, run on cpus (taskset -c) if set.
func command(cpus, bin string, args ...string) *exec.Cmd {
	if cpus == "" {
		return exec.Command(bin, args...)
	}
	return exec.Command("taskset", append([]string{"-c", cpus, bin}, args...)...)
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// fsyncMode is one durability setting, expressed for each server.
type fsyncMode struct {
	name   string
	legion []string
	redis  []string
}

var (
	fsyncOn = fsyncMode{
		name:   "legion --fsync always, redis appendonly yes appendfsync everysec",
		legion: []string{"--fsync", "always"},
		redis:  []string{"--appendonly", "yes", "--appendfsync", "everysec"},
	}
	fsyncOff = fsyncMode{
		name:   "fsync off: legion --fsync no, redis appendonly yes appendfsync no",
		legion: []string{"--fsync", "no"},
		redis:  []string{"--appendonly", "yes", "--appendfsync", "no"},
	}
)

// startLegion starts legion-server on a fresh data dir (or dir, if given).
func (b *bench) startLegion(dir string, extra ...string) *proc {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp(b.work, "legion-"); err != nil {
			log.Fatal(err)
		}
	}
	p := &proc{name: "legion", port: freePort(), dir: dir}
	// The admin port is on, as by default: its per-command metrics are
	// part of what a server costs.
	p.args = append([]string{"--port", strconv.Itoa(p.port), "--admin-port", strconv.Itoa(freePort()), "--data-dir", dir, "--log-level", "warn"}, strings.Fields(b.opts.legionArgs)...)
	p.args = append(p.args, extra...)
	p.cmd = exec.Command(b.legionBin, p.args...)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		log.Fatal(err)
	}
	p.waitReady()
	return p
}

// startRedis starts redis-server on a fresh directory (or dir, if given).
func (b *bench) startRedis(dir string, extra ...string) *proc {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp(b.work, "redis-"); err != nil {
			log.Fatal(err)
		}
	}
	p := &proc{name: "redis", port: freePort(), dir: dir}
	p.args = append([]string{"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--protected-mode", "no", "--loglevel", "warning"}, extra...)
	p.cmd = exec.Command("redis-server", p.args...)
	if err := p.cmd.Start(); err != nil {
		log.Fatal(err)
	}
	p.waitReady()
	return p
}

// waitReady waits until the server answers PING without a loading error.
func (p *proc) waitReady() time.Duration {
	start := time.Now()
	c := p.client(1)
	defer c.Close()
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Minute {
			log.Fatalf("%s did not become ready: %v", p.name, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (p *proc) client(pool int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", p.port), PoolSize: pool, Protocol: 2,
		ReadTimeout: 5 * time.Minute, WriteTimeout: time.Minute, DisableIdentity: true})
}

// stop shuts the server down cleanly (SIGTERM for Legion, SHUTDOWN for
// Redis, which then writes nothing more with save "").
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		p.cmd.Process.Kill()
		<-done
	}
}

// restart stops the server and times a start on the same data until it
// serves again.
func (p *proc) restart(b *bench) time.Duration {
	p.stop()
	start := time.Now()
	bin := b.legionBin
	if p.name == "redis" {
		bin = "redis-server"
	}
	p.cmd = command(p.cpus, bin, p.args...)
	if len(p.env) > 0 {
		p.cmd.Env = append(os.Environ(), p.env...)
	}
	if p.name == "legion" {
		p.cmd.Stderr = os.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		log.Fatal(err)
	}
	p.waitReady()
	return time.Since(start)
}

// cpuTime returns the CPU time the process (all its threads) has used.
func (p *proc) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		log.Fatal(err)
	}
	// Fields after the command name, which may hold spaces: state is the
	// first, utime the 12th and stime the 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		log.Fatalf("unexpected /proc stat: %q", b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		log.Fatalf("unexpected /proc stat: %q", b)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is the kernel's USER_HZ, the unit of /proc's CPU times: 100
// on every Linux architecture Debian builds for.
const clockTicks = 100

// rss returns the resident memory of the process in bytes.
func (p *proc) rss() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(sc.Text(), "VmRSS: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	return 0
}

// writeBytes returns the bytes the process caused to be written to storage
// (/proc/<pid>/io write_bytes).
func (p *proc) writeBytes() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// diskUsage returns the bytes of files under the process's data dir.
func (p *proc) diskUsage() int64 {
	var n int64
	filepath.Walk(p.dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// result is one redis-benchmark measurement.
type result struct {
	rps, p50, p99 float64
	cpuPerOp      float64 // the server's CPU time per request, µs
}

// redisBenchmark runs redis-benchmark against p and parses its CSV.
func (b *bench) redisBenchmark(p *proc, clients, requests, pipeline, keyspace int, args ...string) result {
	argv := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-c", strconv.Itoa(clients), "-n", strconv.Itoa(requests),
		"-P", strconv.Itoa(pipeline), "--csv"}
	if keyspace > 0 {
		argv = append(argv, "-r", strconv.Itoa(keyspace))
	}
	argv = append(argv, args...)
	cpu := p.cpuTime()
	out, err := command(b.benchCPUs, "redis-benchmark", argv...).Output()
	if err != nil {
		log.Fatalf("redis-benchmark %v: %v\n%s", argv, err, out)
	}
	cpu = p.cpuTime() - cpu
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		log.Fatalf("redis-benchmark %v printed %q", argv, out)
	}
	f := strings.Split(lines[len(lines)-1], ",")
	unq := func(i int) float64 {
		v, err := strconv.ParseFloat(strings.Trim(f[i], `"`), 64)
		if err != nil {
			log.Fatalf("redis-benchmark output %q: %v", lines[len(lines)-1], err)
		}
		return v
	}
	if len(f) < 8 {
		log.Fatalf("redis-benchmark output %q", lines[len(lines)-1])
	}
	return result{rps: unq(1), p50: unq(4), p99: unq(6), cpuPerOp: float64(cpu.Microseconds()) / float64(requests)}
}
