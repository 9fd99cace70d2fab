package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// DeltaRecord is one stored delta of a partition.
type DeltaRecord struct {
	IDKey []byte // order-preserving encoding of the delta's id
	Value []byte
}

// PartitionRecords are the stored records of one partition. The slices are
// owned by the caller.
type PartitionRecords struct {
	Snapshot []byte        // nil if absent; see SplitSnapshot
	Tags     []byte        // the separate tags record, nil if absent
	Deltas   []DeltaRecord // in id order
}

// ReadPartition reads every record of one partition from a consistent view.
// A partition exists exactly when its snapshot record does (the first write
// of a partition always stores one); ok is false when it does not, which
// the partition filter answers for most new keys without a read.
func (s *Store) ReadPartition(slot uint16, key []byte) (recs PartitionRecords, ok bool, err error) {
	lower := AppendPartitionPrefix(nil, slot, key)
	if !s.filter.mayHold(lower) {
		return recs, false, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower), UseL6Filters: true})
	if err != nil {
		return recs, false, err
	}
	defer it.Close()
	return s.readPartition(it, lower)
}

// readPartition is ReadPartition's reading through it, an iterator
// bounded to the partition's prefix lower.
func (s *Store) readPartition(it *pebble.Iterator, lower []byte) (recs PartitionRecords, ok bool, err error) {
	var valid bool
	if s.splitPartitions {
		// The partition is the prefix: the bloom filters skip the tables
		// without it, at every level (the lowest too, which pebble's Get
		// would not), and the iteration stays inside it.
		valid = it.SeekPrefixGE(lower)
	} else {
		// Look the snapshot record up first, so that for a new key the
		// bloom filters answer at every level without reading data
		// blocks; then read the whole range.
		snapshot := append(lower[:len(lower):len(lower)], subSnapshot)
		if !it.SeekPrefixGE(snapshot) || !bytes.Equal(it.Key(), snapshot) {
			return recs, false, it.Error()
		}
		valid = it.First()
	}
	for ; valid; valid = it.Next() {
		k := it.Key()[len(lower):]
		if len(k) == 0 {
			return recs, false, fmt.Errorf("%w: partition record without kind", ErrCorrupt)
		}
		v := append([]byte(nil), it.Value()...)
		switch k[0] {
		case subSnapshot:
			recs.Snapshot = v
		case subTags:
			recs.Tags = v
		case subDelta:
			recs.Deltas = append(recs.Deltas, DeltaRecord{IDKey: append([]byte(nil), k[1:]...), Value: v})
		default:
			return recs, false, fmt.Errorf("%w: unknown partition record kind %#x", ErrCorrupt, k[0])
		}
	}
	if err := it.Error(); err != nil || recs.Snapshot == nil {
		return PartitionRecords{}, false, err
	}
	return recs, true, nil
}

// PartitionCount returns the persistent partition count.
func (s *Store) PartitionCount() (int64, error) { return s.Counter(metaPartitions) }

// Counter returns the persistent counter name (0 if never added to).
func (s *Store) Counter(name string) (int64, error) {
	v, ok, err := s.GetMeta(name)
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: counter %s of %d bytes", ErrCorrupt, name, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// GetHandler reads a handler record.
func (s *Store) GetHandler(sha [20]byte) ([]byte, bool, error) {
	return s.get(handlerKey(sha))
}

// Handlers calls fn for every stored handler record in SHA order. The
// slices are only valid during the call.
func (s *Store) Handlers(fn func(sha [20]byte, value []byte) error) error {
	lower := []byte{kindHandler}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		var sha [20]byte
		if len(it.Key()) != 21 {
			return fmt.Errorf("%w: handler key of %d bytes", ErrCorrupt, len(it.Key()))
		}
		copy(sha[:], it.Key()[1:])
		if err := fn(sha, it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// PartitionIter walks the partitions of the store in (slot, key) order,
// one partition's records at a time, over a consistent view taken when it
// was created.
type PartitionIter struct {
	it   *pebble.Iterator
	slot uint16
	key  []byte
	recs PartitionRecords
	err  error
	more bool
}

// Partitions returns an iterator over every partition whose slot is in
// [fromSlot, toSlot] and whose (slot, key) is at or after (fromSlot, fromKey).
func (s *Store) Partitions(fromSlot uint16, fromKey []byte, toSlot uint16) (*PartitionIter, error) {
	lower := AppendPartitionPrefix(nil, fromSlot, fromKey)
	_, upper := SlotBounds(toSlot)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	return &PartitionIter{it: it, more: it.First()}, nil
}

// Next advances to the next partition and reports whether there is one.
func (p *PartitionIter) Next() bool {
	if p.err != nil || !p.more {
		return false
	}
	p.recs = PartitionRecords{}
	first := true
	var prefix []byte
	for ; p.it.Valid(); p.it.Next() {
		k := p.it.Key()
		if first {
			if len(k) < 3 || k[0] != kindPartition {
				p.err = fmt.Errorf("%w: bad partition key", ErrCorrupt)
				return false
			}
			p.slot = binary.BigEndian.Uint16(k[1:3])
			key, rest, err := DecodeEscaped(p.key[:0], k[3:])
			if err != nil {
				p.err = err
				return false
			}
			p.key = key
			prefix = append([]byte(nil), k[:len(k)-len(rest)]...)
			first = false
		} else if !bytes.HasPrefix(k, prefix) {
			break
		}
		sub := k[len(prefix):]
		if len(sub) == 0 {
			p.err = fmt.Errorf("%w: partition record without kind", ErrCorrupt)
			return false
		}
		v := append([]byte(nil), p.it.Value()...)
		switch sub[0] {
		case subSnapshot:
			p.recs.Snapshot = v
		case subTags:
			p.recs.Tags = v
		case subDelta:
			p.recs.Deltas = append(p.recs.Deltas, DeltaRecord{IDKey: append([]byte(nil), sub[1:]...), Value: v})
		default:
			p.err = fmt.Errorf("%w: unknown partition record kind %#x", ErrCorrupt, sub[0])
			return false
		}
	}
	p.more = p.it.Valid()
	if err := p.it.Error(); err != nil {
		p.err = err
		return false
	}
	return !first
}

// Slot returns the current partition's slot.
func (p *PartitionIter) Slot() uint16 { return p.slot }

// Key returns the current partition's key; valid until the next call to Next.
func (p *PartitionIter) Key() []byte { return p.key }

// Records returns the current partition's records, owned by the caller.
func (p *PartitionIter) Records() PartitionRecords { return p.recs }

// Close releases the iterator and returns the first error met.
func (p *PartitionIter) Close() error {
	err := p.it.Close()
	if p.err != nil {
		return p.err
	}
	return err
}

// TagIter walks the global tag index in (tag, key) order. Seek moves it
// to another place of the same view of the store: consecutive searches of
// one pipeline share one pebble iterator.
type TagIter struct {
	s       *Store
	gen     uint64 // the commits begun when it was created; 0: not reusable
	it      *pebble.Iterator
	tag     []byte
	key     []byte
	bounds  []byte // lower bound, then upper bound
	err     error
	ok      bool
	started bool
}

// SeekTags returns an iterator positioned at the first index record ≥
// (tag, key), or strictly > (tag, key) when after is true. With only, the
// iterator ends with the last record of tag itself: the bound lets pebble
// skip every file past it.
func (s *Store) SeekTags(tag, key []byte, after, only bool) (*TagIter, error) {
	if t := s.tagIters.get(s.begun.Load()); t != nil {
		t.Seek(tag, key, after, only)
		return t, nil
	}
	t := &TagIter{s: s}
	lower, upper := t.setBounds(tag, key, after, only)
	// Read done, then begun: if they are equal, no commit was in flight
	// when begun was read, and if begun has not moved once the iterator
	// exists, the iterator holds exactly every write made visible so far.
	done, begun := s.done.Load(), s.begun.Load()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	if done == begun && s.begun.Load() == begun {
		t.gen = begun + 1
	}
	t.it = it
	t.ok = it.First()
	return t, nil
}

// tagIterCache keeps a few idle tag iterators. One is reused only while no
// commit has begun since it was created, so it still sees exactly what a
// new one would: searches made while nothing is written skip pebble's
// iterator set-up. The first commit after searches closes the idle ones,
// so they do not pin memtables and files.
type tagIterCache struct {
	mu   sync.Mutex
	idle []*TagIter // guarded by mu
	n    atomic.Int32
}

const maxIdleTagIters = 8

// get returns an idle iterator created while begun commits had begun, or
// nil; stale ones are closed.
func (c *tagIterCache) get(begun uint64) *TagIter {
	if c.n.Load() == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.idle) > 0 {
		t := c.idle[len(c.idle)-1]
		c.idle = c.idle[:len(c.idle)-1]
		c.n.Store(int32(len(c.idle)))
		if t.gen == begun+1 {
			return t
		}
		t.it.Close()
	}
	return nil
}

// put keeps t for reuse if it is still current and there is room, and
// reports whether it did.
func (c *tagIterCache) put(t *TagIter, begun uint64) bool {
	if t.gen != begun+1 || t.err != nil || t.it.Error() != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) == maxIdleTagIters {
		return false
	}
	c.idle = append(c.idle, t)
	c.n.Store(int32(len(c.idle)))
	return true
}

// drop closes the idle iterators.
func (c *tagIterCache) drop() {
	if c.n.Load() == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.idle {
		t.it.Close()
	}
	clear(c.idle)
	c.idle = c.idle[:0]
	c.n.Store(0)
}

// Seek repositions the iterator as SeekTags would, on the view of the store
// it was created with.
func (t *TagIter) Seek(tag, key []byte, after, only bool) {
	t.err = nil
	lower, upper := t.setBounds(tag, key, after, only)
	t.it.SetBounds(lower, upper)
	t.ok = t.it.First()
	t.started = false
}

// setBounds builds the iterator bounds of a seek in t.bounds (pebble copies
// them).
func (t *TagIter) setBounds(tag, key []byte, after, only bool) (lower, upper []byte) {
	buf := t.bounds[:0]
	if need := 2 * (2*(len(tag)+len(key)) + 8); cap(buf) < need {
		buf = make([]byte, 0, need)
		t.bounds = buf
	}
	lower = tagKey(buf, tag, key)
	if after {
		// The immediate successor of (tag, key) is (tag, key+"\x00").
		lower = append(lower, 0)
	}
	if !only {
		// The end of the whole index.
		return lower, append(lower[len(lower):len(lower)], kindTag+1)
	}
	// Every record of tag starts with kindTag, esc(tag), which ends with
	// the terminator 0x00 0x01: the next prefix ends with 0x02.
	prefix := len(lower) - len(key)
	if after {
		prefix--
	}
	upper = lower[len(lower):len(lower)]
	upper = append(upper, lower[:prefix]...)
	upper[len(upper)-1]++
	return lower, upper
}

// Next advances to the next record and reports whether there is one. The
// first call yields the record the iterator was positioned at.
func (t *TagIter) Next() bool {
	if t.err != nil {
		return false
	}
	if t.started {
		t.ok = t.it.Next()
	}
	t.started = true
	if !t.ok {
		t.err = t.it.Error()
		return false
	}
	tag, key, err := DecodeEscaped(t.tag[:0], t.it.Key()[1:])
	if err != nil {
		t.err = err
		return false
	}
	t.tag = tag
	t.key = append(t.key[:0], key...)
	return true
}

// Tag returns the current record's tag; valid until the next call to Next.
func (t *TagIter) Tag() []byte { return t.tag }

// Key returns the current record's key; valid until the next call to Next.
func (t *TagIter) Key() []byte { return t.key }

// Err returns the first error met.
func (t *TagIter) Err() error {
	if t.err != nil {
		return t.err
	}
	return t.it.Error()
}

// Close releases the iterator and returns the first error met. A current
// iterator is kept for the next search.
func (t *TagIter) Close() error {
	if t.s != nil && !t.s.closed.Load() && t.s.tagIters.put(t, t.s.begun.Load()) {
		return nil
	}
	err := t.it.Close()
	if t.err != nil {
		return t.err
	}
	return err
}

// HasTag reports whether (tag, key) is in the tag index.
func (s *Store) HasTag(tag, key []byte) (bool, error) {
	_, ok, err := s.get(tagKey(nil, tag, key))
	return ok, err
}

// Checkpoint writes a consistent copy of the database into dir, which must
// not exist, without stopping writes. The copy opens as a data dir.
func (s *Store) Checkpoint(dir string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if _, err := s.fs.Stat(dir); err == nil {
		return fmt.Errorf("store: backup target %s already exists", dir)
	}
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("store: backup to %s: %w", dir, err)
	}
	return nil
}
