package scripting

import (
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// heapMetric is the live-and-unswept heap object bytes: the memory a runaway
// script actually pins.
const heapMetric = "/memory/classes/heap/objects:bytes"

// watchInterval is how often the watcher looks at the clock and the heap
// while accepting calls run.
const watchInterval = time.Millisecond

// watcher supervises accepting calls from a background goroutine that runs
// only while there are such calls. Every tick it samples the heap and the
// clock and raises the attention flag of each call that is past its
// deadline or running while the heap is over the bound; the VM checks that
// flag with one atomic load per instruction. Watching from outside (rather
// than every N instructions) also catches single instructions that take
// long or allocate a lot, such as s = s .. s or #t over a huge array.
type watcher struct {
	mu       sync.Mutex
	active   map[*budgetCtx]struct{}
	memUsers int
	limit    int64
	running  bool
	memOver  atomic.Bool
}

func (w *watcher) enter(c *budgetCtx, memLimit int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.active == nil {
		w.active = make(map[*budgetCtx]struct{})
	}
	w.active[c] = struct{}{}
	if memLimit > 0 {
		w.memUsers++
		w.limit = memLimit
		if !w.running {
			w.memOver.Store(heapBytes(nil) > memLimit)
		}
	}
	if !w.running {
		w.running = true
		go w.loop()
	}
}

func (w *watcher) exit(c *budgetCtx, memLimit int64) {
	w.mu.Lock()
	delete(w.active, c)
	if memLimit > 0 {
		w.memUsers--
	}
	w.mu.Unlock()
}

func (w *watcher) loop() {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	sample := make([]metrics.Sample, 1)
	for range t.C {
		w.mu.Lock()
		if len(w.active) == 0 {
			w.running = false
			w.memOver.Store(false)
			w.mu.Unlock()
			return
		}
		over := w.memUsers > 0 && heapBytes(sample) > w.limit
		w.memOver.Store(over)
		now := time.Now()
		for c := range w.active {
			if over && c.memOver != nil || !now.Before(c.deadline) {
				c.attention.Store(true)
			}
		}
		w.mu.Unlock()
	}
}

// heapBytes reads the heap size; sample may be nil or a reusable
// one-element slice.
func heapBytes(sample []metrics.Sample) int64 {
	if sample == nil {
		sample = make([]metrics.Sample, 1)
	}
	sample[0].Name = heapMetric
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(sample[0].Value.Uint64())
}
