package store

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/greatroar/blobloom"
)

// partitionFilter tells the partitions the store cannot hold from those
// it may hold, without a read of pebble. The first event of every
// partition reads the store to learn that it is new, and pebble answers
// that only after looking in its memtables and in the bloom filter of
// every level that may hold the key, with an iterator built for the
// purpose: about 10 µs under a write load, twice what the rest of the
// event costs. The filter answers in one cache line.
//
// It holds a hash of the prefix of every partition the store holds (a
// superset: a partition is never removed from it). Opening the store
// scans the partitions in the background (scanPartitions); until that
// scan is done the filter answers "maybe" to everything, and from the
// moment the store opens every partition written through PutSnapshot is
// added, so writes that the scan's view misses are in it too.
//
// The filter is a list of blocked bloom filters, each four times the
// capacity of the one before, added when the keys outgrow the last; it
// lives in memory only, so its hashes may use a random seed.
type partitionFilter struct {
	seed    maphash.Seed
	ready   atomic.Bool   // the scan finished: a "no" can be trusted
	count   atomic.Int64  // prefixes added that were not in it before
	skipped atomic.Uint64 // reads it answered
	mu      sync.Mutex    // held to add a layer
	layers  atomic.Pointer[[]*filterLayer]
}

type filterLayer struct {
	f        *blobloom.SyncFilter
	capacity int64
	bytes    int64
}

const (
	// filterMinCapacity is the capacity of the first layer of a store
	// holding few partitions: about 80 KiB.
	filterMinCapacity = 1 << 16
	// filterFPRate is the share of absent partitions a full layer lets
	// through to a read of the store.
	filterFPRate = 0.01
	// filterGrowth is the ratio of the capacities of successive layers.
	filterGrowth = 4
	// filterRescan is how many partitions the scan reads through one
	// pebble iterator: it holds the tables and memtables of its view until
	// closed, so the scan of a large store moves to a fresh view now and
	// then.
	filterRescan = 1 << 18
)

// newPartitionFilter returns a filter, not ready, whose first layer holds
// capacity partitions.
func newPartitionFilter(capacity int64) *partitionFilter {
	f := &partitionFilter{seed: maphash.MakeSeed()}
	layers := []*filterLayer{newFilterLayer(max(capacity, filterMinCapacity))}
	f.layers.Store(&layers)
	return f
}

func newFilterLayer(capacity int64) *filterLayer {
	bits, hashes := blobloom.Optimize(blobloom.Config{Capacity: uint64(capacity), FPRate: filterFPRate})
	return &filterLayer{f: blobloom.NewSync(bits, hashes), capacity: capacity, bytes: int64(bits / 8)}
}

// mayHold reports whether the partition of prefix (AppendPartitionPrefix)
// may be in the store; false is certain. A nil filter knows nothing.
func (f *partitionFilter) mayHold(prefix []byte) bool {
	if f == nil || !f.ready.Load() {
		return true
	}
	h := maphash.Bytes(f.seed, prefix)
	for _, l := range *f.layers.Load() {
		if l.f.Has(h) {
			return true
		}
	}
	f.skipped.Add(1)
	return false
}

// add notes the partition of prefix.
func (f *partitionFilter) add(prefix []byte) {
	if f == nil {
		return
	}
	h := maphash.Bytes(f.seed, prefix)
	layers := *f.layers.Load()
	for _, l := range layers {
		if l.f.Has(h) {
			return // there already, or its bits are: either way it answers "maybe"
		}
	}
	last := layers[len(layers)-1]
	last.f.Add(h)
	if f.count.Add(1) > last.capacity {
		f.grow(last)
	}
}

// grow adds a layer after last, unless another call did.
func (f *partitionFilter) grow(last *filterLayer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	layers := *f.layers.Load()
	if layers[len(layers)-1] != last {
		return
	}
	// Adds running meanwhile put their keys in last: still in the filter.
	grown := append(layers[:len(layers):len(layers)], newFilterLayer(filterGrowth*last.capacity))
	f.layers.Store(&grown)
}

// bytes returns the memory the filter's layers hold.
func (f *partitionFilter) bytes() int64 {
	if f == nil {
		return 0
	}
	var n int64
	for _, l := range *f.layers.Load() {
		n += l.bytes
	}
	return n
}

// scanPartitions adds every partition in the store to f and then makes it
// ready. It stops early, leaving f not ready, when the store closes or a
// read fails. testScanning, if set, runs with the first view open.
func (s *Store) scanPartitions(f *partitionFilter) {
	defer s.stopped.Done()
	lower, upper := []byte{kindPartition}, []byte{kindPartition + 1}
	var prefix []byte
	for {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			s.logger.Warn("scanning the partitions for the partition filter", "err", err)
			return
		}
		if s.testScanning != nil {
			s.testScanning(s)
			s.testScanning = nil
		}
		n, done := 0, true
		for valid := it.First(); valid; valid = it.Next() {
			k := it.Key()
			if prefix != nil && bytes.HasPrefix(k, prefix) {
				continue // another record of the same partition
			}
			if n++; n%4096 == 0 {
				select {
				case <-s.stop:
					it.Close()
					return
				default:
				}
			}
			l, ok := partitionPrefixLen(k)
			if !ok {
				it.Close()
				s.logger.Warn("scanning the partitions for the partition filter", "err", ErrCorrupt, "key", k)
				return
			}
			prefix = append(prefix[:0], k[:l]...)
			f.add(prefix)
			if n >= s.scanView {
				done = false
				break
			}
		}
		err = it.Error()
		it.Close()
		if err != nil {
			s.logger.Warn("scanning the partitions for the partition filter", "err", err)
			return
		}
		if done {
			f.ready.Store(true)
			return
		}
		// Go on after this partition's records, in a fresh view.
		lower = prefixEnd(prefix)
	}
}

// partitionPrefixLen returns the length of the partition prefix
// (AppendPartitionPrefix) that starts key, a partition record's key.
func partitionPrefixLen(key []byte) (int, bool) {
	if len(key) < 3 || key[0] != kindPartition {
		return 0, false
	}
	n, ok := escapedLen(key[3:])
	return 3 + n, ok
}

// PartitionFilterStats returns the memory the partition filter holds,
// whether it is ready (the scan of the partitions at open is done), and
// how many reads of partitions it answered without the store.
func (s *Store) PartitionFilterStats() (bytes int64, ready bool, skipped uint64) {
	if s.filter == nil {
		return 0, false, 0
	}
	return s.filter.bytes(), s.filter.ready.Load(), s.filter.skipped.Load()
}
