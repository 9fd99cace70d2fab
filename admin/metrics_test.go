package admin

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestWALSyncHistogram converts a histogram made the way pebble makes its
// histogram of the log's syncs (nanoseconds, its buckets) and checks the
// counts, the sum in seconds, and that every bound reported is one of
// pebble's.
func TestWALSyncHistogram(t *testing.T) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Buckets: pebble.FsyncLatencyBuckets})
	syncs := []time.Duration{50 * time.Microsecond, 150 * time.Microsecond, 800 * time.Microsecond, 3 * time.Millisecond, 20 * time.Millisecond, 2 * time.Second}
	var total time.Duration
	for _, d := range syncs {
		h.Observe(float64(d))
		total += d
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	count, sum, buckets := walSyncHistogram(m.Histogram)
	if count != uint64(len(syncs)) {
		t.Fatalf("count = %d, want %d", count, len(syncs))
	}
	if math.Abs(sum-total.Seconds()) > 1e-9 {
		t.Fatalf("sum = %v s, want %v", sum, total.Seconds())
	}
	if len(buckets) != len(walSyncBuckets) {
		t.Fatalf("%d buckets, want %d: %v", len(buckets), len(walSyncBuckets), buckets)
	}
	var pebbleBounds []float64
	for _, b := range pebble.FsyncLatencyBuckets {
		pebbleBounds = append(pebbleBounds, b/1e9)
	}
	for bound, n := range buckets {
		if !slices.Contains(pebbleBounds, bound) {
			t.Errorf("bound %v s is not one of pebble's", bound)
		}
		// The count at a bound is the syncs that took no longer.
		var want uint64
		for _, d := range syncs {
			if d.Seconds() <= bound*(1+1e-12) {
				want++
			}
		}
		if n != want {
			t.Errorf("%d syncs up to %v s, want %d", n, bound, want)
		}
	}
	for _, want := range walSyncBuckets {
		// Each bound asked for maps to the first of pebble's at or above it.
		i := slices.IndexFunc(pebbleBounds, func(b float64) bool { return b >= want*(1-1e-9) })
		if _, ok := buckets[pebbleBounds[i]]; !ok {
			t.Errorf("no bucket for %v s (pebble's %v s)", want, pebbleBounds[i])
		}
	}
}
