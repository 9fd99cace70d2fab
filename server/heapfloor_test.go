package server

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestHeapFloorPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		floor, live uint64
		base, want  int
	}{
		{64 * mib, 8 * mib, 100, 700},
		{64 * mib, 0, 100, 1500},        // unknown live: the runtime's 4 MiB
		{64 * mib, 1 * mib, 100, 1500},  // never below the runtime's minimum
		{64 * mib, 48 * mib, 100, 100},  // the floor is below live + 100%
		{64 * mib, 100 * mib, 100, 100}, // above the floor: GOGC alone
		{64 * mib, 8 * mib, 1000, 1000}, // a higher GOGC is kept
		{1 << 50, 4 * mib, 100, 100_000},
	} {
		if got := heapFloorPercent(c.floor, c.live, c.base); got != c.want {
			t.Errorf("heapFloorPercent(%d MiB, %d MiB, %d) = %d, want %d", c.floor/mib, c.live/mib, c.base, got, c.want)
		}
	}
}

var sink []byte

// TestHeapFloorDefersCollection: with the floor well above what is live,
// allocating less than the floor runs no collection (at the default GOGC
// it would run several), and stopping puts GOGC back.
func TestHeapFloorDefersCollection(t *testing.T) {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if base < 0 {
		t.Skip("GOGC=off: there is no collection to defer")
	}
	runtime.GC() // what is live is now known to the floor
	stop := startHeapFloor(512<<20, time.Hour)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 160 {
		sink = make([]byte, 1<<20)
	}
	runtime.ReadMemStats(&after)
	sink = nil
	stop()
	if n := after.NumGC - before.NumGC; n != 0 {
		t.Errorf("%d collections while allocating 160 MiB under a 512 MiB floor", n)
	}
	if got := debug.SetGCPercent(base); got != base {
		t.Errorf("GOGC after stop = %d, want %d", got, base)
	}
	// Floor 0 changes nothing.
	startHeapFloor(0, time.Hour)()
	if got := debug.SetGCPercent(base); got != base {
		t.Errorf("GOGC with floor 0 = %d, want %d", got, base)
	}
}

// TestHeapFloorReleasesWhenIdle: the garbage the floor let accumulate is
// collected and returned to the system once allocation stops.
func TestHeapFloorReleasesWhenIdle(t *testing.T) {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if base < 0 {
		t.Skip("GOGC=off")
	}
	runtime.GC()
	stop := startHeapFloor(512<<20, 20*time.Millisecond)
	defer stop()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 400 { // 400 MiB, faster than the idle rate
		sink = make([]byte, 1<<20)
	}
	sink = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		var now runtime.MemStats
		runtime.ReadMemStats(&now)
		if now.NumForcedGC > before.NumForcedGC && now.HeapSys-now.HeapReleased < 64<<20 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not released after going idle: %d forced collections, %d MiB of heap held",
				now.NumForcedGC-before.NumForcedGC, (now.HeapSys-now.HeapReleased)>>20)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
