package admin

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gather returns the families s exports, by name.
func gather(t *testing.T, s *commandStats) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// series returns the metric of f whose labels include want.
func series(t *testing.T, f *dto.MetricFamily, want map[string]string) *dto.Metric {
	t.Helper()
next:
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		return m
	}
	t.Fatalf("%s has no series %v", f.GetName(), want)
	return nil
}

// Commands counted from many goroutines at once, into random shards, are
// all in the sums a scrape reports, in the right buckets.
func TestCommandStats(t *testing.T) {
	s := newCommandStats()
	s.observe("ping", 25*time.Microsecond, false) // on a bound: in its bucket
	s.observe("ping", 26*time.Microsecond, false)
	s.observe("ping", 20*time.Second, false) // above every bound
	s.observe("legion.apply", time.Millisecond, true)
	const workers, each = 8, 1000
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				s.observe("get", 100*time.Microsecond, i%10 == 0)
			}
		}()
	}
	wg.Wait()

	fams := gather(t, s)
	commands, latency := fams["legion_commands_total"], fams["legion_command_duration_seconds"]
	if commands == nil || latency == nil {
		t.Fatalf("families %v", fams)
	}
	for _, c := range []struct {
		command, result string
		want            float64
	}{{"ping", "ok", 3}, {"ping", "error", 0}, {"legion.apply", "ok", 0}, {"legion.apply", "error", 1},
		{"get", "ok", workers * each * 9 / 10}, {"get", "error", workers * each / 10}} {
		m := series(t, commands, map[string]string{"command": c.command, "result": c.result})
		if got := m.GetCounter().GetValue(); got != c.want {
			t.Errorf("%s %s: %v, want %v", c.command, c.result, got, c.want)
		}
	}

	// Cumulative bucket counts by upper bound.
	buckets := func(command string) (map[float64]uint64, *dto.Histogram) {
		h := series(t, latency, map[string]string{"command": command}).GetHistogram()
		out := map[float64]uint64{}
		for _, b := range h.GetBucket() {
			out[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		return out, h
	}
	ping, h := buckets("ping")
	if h.GetSampleCount() != 3 || ping[25e-6] != 1 || ping[50e-6] != 2 || ping[10] != 2 {
		t.Errorf("ping: %d samples, buckets %v", h.GetSampleCount(), ping)
	}
	if want := (25e-6 + 26e-6 + 20); math.Abs(h.GetSampleSum()-want) > 1e-9 {
		t.Errorf("ping: sum %v, want %v", h.GetSampleSum(), want)
	}
	get, h := buckets("get")
	if h.GetSampleCount() != workers*each || get[50e-6] != 0 || get[100e-6] != workers*each {
		t.Errorf("get: %d samples, buckets %v", h.GetSampleCount(), get)
	}
	if want := float64(workers*each) * 100e-6; math.Abs(h.GetSampleSum()-want) > 1e-9 {
		t.Errorf("get: sum %v, want %v", h.GetSampleSum(), want)
	}
	if apply, h := buckets("legion.apply"); h.GetSampleCount() != 1 || apply[500e-6] != 0 || apply[1e-3] != 1 {
		t.Errorf("legion.apply: %d samples, buckets %v", h.GetSampleCount(), apply)
	}
}
