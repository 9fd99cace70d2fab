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
//
// Every runner's context is registered for the runner's life; a call
// entering and leaving only flips atomics in its own context, so calls on
// different cores never wait for each other here. The flag is only a
// nudge: the call itself checks its budget, the heap bound and its own
// deadline when raised, so a nudge meant for an earlier call is harmless.
type watcher struct {
	mu   sync.Mutex
	ctxs map[*budgetCtx]struct{} // every live runner's context; guarded by mu
	// retired holds the usage of runners closed so far; guarded by mu.
	retiredCalls, retiredUnits int64
	running                    atomic.Bool // a loop goroutine is running
	memOver                    atomic.Bool
}

// watched is what a context shows the watcher about its current call.
type watched struct {
	active   atomic.Bool
	deadline atomic.Int64 // UnixNano
	memLimit atomic.Int64 // 0: none
}

// register and unregister add and remove a runner's context.
func (w *watcher) register(c *budgetCtx) {
	w.mu.Lock()
	if w.ctxs == nil {
		w.ctxs = make(map[*budgetCtx]struct{})
	}
	w.ctxs[c] = struct{}{}
	w.mu.Unlock()
}

func (w *watcher) unregister(c *budgetCtx) {
	w.mu.Lock()
	delete(w.ctxs, c)
	w.retiredCalls += c.calls.Load()
	w.retiredUnits += c.units.Load()
	w.mu.Unlock()
}

// usage sums the calls run and the budget units they used over every
// runner, live or closed.
func (w *watcher) usage() (calls, units int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	calls, units = w.retiredCalls, w.retiredUnits
	for c := range w.ctxs {
		calls += c.calls.Load()
		units += c.units.Load()
	}
	return calls, units
}

// enter starts watching c's call; c.deadline is set.
func (w *watcher) enter(c *budgetCtx, memLimit int64) {
	c.watch.deadline.Store(c.deadline.UnixNano())
	c.watch.memLimit.Store(memLimit)
	c.watch.active.Store(true)
	if memLimit > 0 && !w.running.Load() {
		w.memOver.Store(heapBytes(nil) > memLimit)
	}
	if !w.running.Load() && w.running.CompareAndSwap(false, true) {
		go w.loop()
	}
}

func (w *watcher) exit(c *budgetCtx) { c.watch.active.Store(false) }

func (w *watcher) loop() {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	sample := make([]metrics.Sample, 1)
	// The contexts to look at, copied each tick. A loop that is ending
	// may still scan while the next one starts, so each has its own.
	var ctxs []*budgetCtx
	for range t.C {
		ctxs = w.contexts(ctxs)
		active, limit := scan(ctxs)
		if !active {
			// A call (maybe of a runner made since) may have entered
			// after the scan and seen the loop running: look again once
			// the flag is down.
			w.running.Store(false)
			ctxs = w.contexts(ctxs)
			if active, _ = scan(ctxs); !active || !w.running.CompareAndSwap(false, true) {
				w.memOver.Store(false)
				return
			}
			continue
		}
		over := limit > 0 && heapBytes(sample) > limit
		w.memOver.Store(over)
		now := time.Now().UnixNano()
		for _, c := range ctxs {
			if c.watch.active.Load() && (over && c.watch.memLimit.Load() > 0 || now >= c.watch.deadline.Load()) {
				c.attention.Store(true)
			}
		}
	}
}

// contexts copies the registered contexts into buf.
func (w *watcher) contexts(buf []*budgetCtx) []*budgetCtx {
	w.mu.Lock()
	defer w.mu.Unlock()
	buf = buf[:0]
	for c := range w.ctxs {
		buf = append(buf, c)
	}
	return buf
}

// scan reports whether any call is being watched and the heap bound of
// those that have one.
func scan(ctxs []*budgetCtx) (active bool, limit int64) {
	for _, c := range ctxs {
		if c.watch.active.Load() {
			active = true
			if m := c.watch.memLimit.Load(); m > 0 {
				limit = m
			}
		}
	}
	return active, limit
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
