// Command bench measures legion-server against redis-server doing the same
// logical work, in one run on one machine, and writes BENCHMARKS.md.
//
// It needs only Debian's redis-server and redis-tools (redis-benchmark)
// beside Go; it starts both servers on loopback, drives them with
// redis-benchmark (and its own Go load generator where redis-benchmark
// cannot express the workload), alternates their runs, and reports medians
// and the ratio legion/redis for each line. Run it with `make bench`.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

type options struct {
	out        string
	runs       int
	keys       int
	partitions int
	quick      bool
	only       string
	profile    string
	legionArgs string
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "file to write the report to")
	flag.IntVar(&o.runs, "runs", 3, "alternating runs per line (the median is reported)")
	flag.IntVar(&o.keys, "keys", 100000, "keys for the counter workload")
	flag.IntVar(&o.partitions, "partitions", 1000000, "partitions for the search and footprint workloads")
	flag.BoolVar(&o.quick, "quick", false, "small sizes, one run: a smoke test of the benchmark itself")
	flag.StringVar(&o.only, "only", "", "run only workloads whose name contains this (ping, counter, large, search, footprint)")
	flag.StringVar(&o.profile, "profile", "", "also take a 10s CPU profile of legion-server under the pipelined counter load into this file")
	flag.StringVar(&o.legionArgs, "legion-args", "", "extra legion-server flags for every run, space-separated (e.g. \"--cache-size 32mb\")")
	flag.Parse()
	if o.quick {
		o.runs, o.keys, o.partitions = 1, 10000, 20000
	}
	log.SetFlags(log.Ltime)
	// go-redis logs dial retries while a restarted server is loading; the
	// benchmark waits for that on purpose.
	redis.SetLogger(quietLogger{})

	for _, tool := range []string{"redis-server", "redis-benchmark", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			log.Fatalf("%s is missing: install Debian's redis-server and redis-tools (apt-get install redis-server redis-tools)", tool)
		}
	}
	work, err := os.MkdirTemp("", "legion-bench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	legionBin := filepath.Join(work, "legion-server")
	build := exec.Command("go", "build", "-o", legionBin, "./cmd/legion-server")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		log.Fatalf("building legion-server: %v", err)
	}

	b := &bench{opts: o, work: work, legionBin: legionBin, ctx: context.Background()}
	b.report.started = time.Now()
	for _, w := range []struct {
		name string
		run  func()
	}{
		{"ping", b.ping},
		{"counter", b.counter},
		{"large", b.largeState},
		{"search", b.search},
		{"footprint", b.footprint},
	} {
		if o.only != "" && !strings.Contains(w.name, o.only) {
			continue
		}
		log.Printf("== %s", w.name)
		w.run()
	}
	if o.profile != "" {
		b.cpuProfile(o.profile)
	}
	if err := os.WriteFile(o.out, []byte(b.markdown()), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s", o.out)
}

// line is one row of the report: the same logical work on both servers.
type line struct {
	section        string
	name           string
	unit           string // what the numbers are
	legion, redis  []float64
	higherIsBetter bool
	note           string
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type report struct {
	started  time.Time
	lines    []*line
	commands []string
	notes    []string
	profile  string // pprof -top of legion-server under load, if taken
}

type bench struct {
	opts      options
	work      string
	legionBin string
	benchCPUs string // if set, the cores redis-benchmark runs on (taskset -c)
	ctx       context.Context
	report    report
}

func (b *bench) add(l *line) {
	b.report.lines = append(b.report.lines, l)
	ratio := 0.0
	if m := median(l.redis); m != 0 {
		ratio = median(l.legion) / m
	}
	log.Printf("%-58s legion %12.3f  redis %12.3f  ratio %.2f %s", l.section+": "+l.name, median(l.legion), median(l.redis), ratio, l.unit)
}

func (b *bench) command(format string, args ...any) {
	b.report.commands = append(b.report.commands, fmt.Sprintf(format, args...))
}

// legionSetup describes how every legion-server of the run was set up:
// its defaults (the admin port too, so per-command metrics are kept), and
// beyond them Go runtime variables from the environment (which the server
// inherits) and -legion-args.
func (b *bench) legionSetup() string {
	parts := []string{"its defaults (the admin port and its metrics on)"}
	for _, v := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG"} {
		if val, ok := os.LookupEnv(v); ok {
			parts = append(parts, fmt.Sprintf("`%s=%s`", v, val))
		}
	}
	if a := strings.TrimSpace(b.opts.legionArgs); a != "" {
		parts = append(parts, "`"+a+"`")
	}
	return strings.Join(parts, ", ")
}

func (b *bench) markdown() string {
	var s strings.Builder
	host, _ := os.Hostname()
	cpu := cpuModel()
	fmt.Fprintf(&s, "# Benchmarks\n\n")
	fmt.Fprintf(&s, "Legion against Redis doing the same logical work, measured by `make bench`\n")
	fmt.Fprintf(&s, "(`go run ./bench`), which rewrites this file. Each line alternates %d runs\n", b.opts.runs)
	fmt.Fprintf(&s, "of each server and reports the medians; the ratio is legion / redis.\n\n")
	fmt.Fprintf(&s, "- Date: %s\n", b.report.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&s, "- Machine: %s, %d cores (%s), %s, Go %s\n", host, runtime.NumCPU(), cpu, memTotal(), runtime.Version())
	fmt.Fprintf(&s, "- Redis: %s\n", redisVersion())
	fmt.Fprintf(&s, "- Sizes: %d keys for the counter, %d partitions for search and footprint\n", b.opts.keys, b.opts.partitions)
	fmt.Fprintf(&s, "- legion-server run with: %s\n", b.legionSetup())
	if b.opts.quick {
		fmt.Fprintf(&s, "- **Quick mode**: small sizes and one run; not a measurement.\n")
	}
	fmt.Fprintf(&s, "\nMachines here are shared and noisy: compare ratios measured in the same run,\nnot absolute figures across runs.\n")
	// One table per section; notes of its lines go below the table.
	var sections []string
	bySection := map[string][]*line{}
	for _, l := range b.report.lines {
		if _, ok := bySection[l.section]; !ok {
			sections = append(sections, l.section)
		}
		bySection[l.section] = append(bySection[l.section], l)
	}
	// The one-thread and one-core comparisons, gathered from several
	// workloads, last.
	for _, last := range []string{oneThreadSection, pinnedSection} {
		if i := slices.Index(sections, last); i >= 0 {
			sections = append(slices.Delete(sections, i, i+1), last)
		}
	}
	for _, section := range sections {
		fmt.Fprintf(&s, "\n## %s\n\n| work | unit | legion | redis | legion/redis | runs (legion; redis) |\n|---|---|---:|---:|---:|---|\n", section)
		var notes []string
		for _, l := range bySection[section] {
			ratio := "—"
			if m := median(l.redis); m != 0 {
				ratio = fmt.Sprintf("%.2f", median(l.legion)/m)
			}
			fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s; %s |\n", l.name, l.unit, num(median(l.legion)), num(median(l.redis)), ratio, nums(l.legion), nums(l.redis))
			if l.note != "" && !slices.Contains(notes, l.note) {
				notes = append(notes, l.note)
			}
		}
		for _, n := range notes {
			fmt.Fprintf(&s, "\n%s\n", n)
		}
	}
	if len(b.report.notes) > 0 {
		fmt.Fprintf(&s, "\n## Notes\n\n")
		for _, n := range b.report.notes {
			fmt.Fprintf(&s, "- %s\n", n)
		}
	}
	if b.report.profile != "" {
		fmt.Fprintf(&s, "\n## Where legion-server spends its time\n\nA 10 s CPU profile under the pipelined counter load (`--fsync always`, 50 clients, pipeline 16), taken after %d events per key warmed the partition cache:\n\n```\n%s```\n", profileWarmup, b.report.profile)
	}
	fmt.Fprintf(&s, "\n## Commands\n\n```\n")
	for _, c := range b.report.commands {
		fmt.Fprintf(&s, "%s\n", c)
	}
	fmt.Fprintf(&s, "```\n")
	return s.String()
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...interface{}) {}

func num(x float64) string {
	switch {
	case x >= 1000:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.3f", x)
	}
}

func nums(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, num(x))
	}
	return strings.Join(parts, " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if i := strings.IndexByte(l, ':'); i >= 0 {
				return strings.TrimSpace(l[i+1:])
			}
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown memory"
	}
	var kb int64
	for _, l := range strings.Split(string(b), "\n") {
		if n, _ := fmt.Sscanf(l, "MemTotal: %d kB", &kb); n == 1 {
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown memory"
}

func redisVersion() string {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
