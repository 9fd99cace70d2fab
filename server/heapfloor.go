package server

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// minHeap is the Go runtime's own smallest heap target.
const minHeap = 4 << 20

// heapFloorPercent returns the GOGC percent that puts the collector's
// next target (live bytes grown by the percent) at floor or more, never
// below base; an unknown live size counts as the runtime's minimum heap.
func heapFloorPercent(floor, live uint64, base int) int {
	live = max(live, minHeap)
	if live >= floor {
		return base
	}
	return max(base, min(int((floor-live)*100/live), 100_000))
}

// idleAllocBytes is the allocation per interval below which the process
// counts as idle.
const idleAllocBytes = 1 << 20

// startHeapFloor keeps the Go collector from running before the heap
// reaches floor bytes, and returns the function that stops it and puts
// the percent back.
//
// The collector runs when the heap has grown by GOGC percent (100 unless
// the environment says otherwise) over what the last collection left live.
// Legion keeps its caches outside the Go heap, so little is live (tens of
// MiB) while every event allocates: at GOGC=100 a busy server collects
// several times a second, and each cycle slows every goroutine while it
// marks. Every interval the floor raises the percent to what puts the next
// target at floor; a percent GOGC sets higher is kept, and GOGC=off or
// floor 0 turns the floor off. GOMEMLIMIT still bounds the heap.
//
// The room the floor gives is garbage, and the runtime returns it to the
// system only slowly: when an interval allocates almost nothing after
// busier ones, the process is idle and the heap is collected and returned
// at once (once per idle spell).
func startHeapFloor(floor uint64, interval time.Duration) (stop func()) {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if floor == 0 || base < 0 {
		return func() {}
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	read := func(i int) uint64 {
		if sample[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[i].Value.Uint64()
	}
	current := base
	var lastAllocs, releasedAt uint64
	tune := func() {
		metrics.Read(sample)
		live, allocs := read(0), read(1)
		if allocs-lastAllocs < idleAllocBytes && allocs-releasedAt > floor/2 {
			debug.FreeOSMemory()
			metrics.Read(sample)
			live, allocs = read(0), read(1)
			releasedAt = allocs
		}
		lastAllocs = allocs
		// Only a change of more than a tenth is worth setting.
		if pct := heapFloorPercent(floor, live, base); pct*10 > current*11 || pct*11 < current*10 {
			debug.SetGCPercent(pct)
			current = pct
		}
	}
	metrics.Read(sample)
	lastAllocs = read(1)
	releasedAt = lastAllocs
	tune()
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				tune()
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		debug.SetGCPercent(base)
	}
}
