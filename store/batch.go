package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// Batch is an atomic group of writes. Build it, then Commit (or Apply and
// Wait), then Close. A Batch is not safe for concurrent use.
type Batch struct {
	s       *Store
	b       *pebble.Batch
	key     []byte // scratch for key building; pebble copies keys on Set
	keyBuf  [64]byte
	applied bool
	waited  bool
	// counters sums the AddCounter calls of the batch by name; each becomes
	// one merge operand when the batch is applied.
	counters []counterDelta
	// tagSlots are the slots of the tags whose index records the batch
	// writes (see tagPages).
	tagSlots []uint16
}

type counterDelta struct {
	name string
	n    int64
}

// NewBatch returns an empty batch.
func (s *Store) NewBatch() *Batch {
	b, _ := s.batches.Get().(*Batch)
	if b == nil {
		b = new(Batch)
	}
	b.s, b.b = s, s.db.NewBatch()
	b.key = b.keyBuf[:0]
	return b
}

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool {
	for _, c := range b.counters {
		if c.n != 0 {
			return false
		}
	}
	return b.b.Empty()
}

// Len returns the encoded size of the batch's records in bytes (counter
// adjustments, a few bytes each, are added when it is applied).
func (b *Batch) Len() int { return b.b.Len() }

func (b *Batch) set(key, value []byte) {
	// Batch.Set only fails on a committed batch, which is a programming error.
	if err := b.b.Set(key, value, nil); err != nil {
		panic(err)
	}
}

func (b *Batch) del(key []byte) {
	if err := b.b.Delete(key, nil); err != nil {
		panic(err)
	}
}

// SetMeta writes a node metadata record.
func (b *Batch) SetMeta(name string, value []byte) { b.set(metaKey(name), value) }

// PutHandler stores a handler record under its SHA1.
func (b *Batch) PutHandler(sha [20]byte, value []byte) { b.set(handlerKey(sha), value) }

// DeleteHandler removes a handler record.
func (b *Batch) DeleteHandler(sha [20]byte) { b.del(handlerKey(sha)) }

func (b *Batch) partitionKey(slot uint16, key []byte, sub byte) []byte {
	b.key = AppendPartitionPrefix(b.key[:0], slot, key)
	return append(b.key, sub)
}

// PutSnapshot writes the partition's snapshot record. It notes the
// partition in the store's partition filter (see partitionFilter), which
// must know every partition the store may hold: a partition's first
// snapshot is written with PutSnapshot.
func (b *Batch) PutSnapshot(slot uint16, key, value []byte) {
	k := b.partitionKey(slot, key, subSnapshot)
	b.s.filter.add(k[:len(k)-1])
	b.set(k, value)
}

// ReplaceSnapshot is PutSnapshot for a partition the store holds or that
// a PutSnapshot wrote since the store opened: it skips the partition
// filter, a cache miss on the path of every event.
func (b *Batch) ReplaceSnapshot(slot uint16, key, value []byte) {
	b.set(b.partitionKey(slot, key, subSnapshot), value)
}

// PutTags writes the partition's tags record.
func (b *Batch) PutTags(slot uint16, key, value []byte) {
	b.set(b.partitionKey(slot, key, subTags), value)
}

// DeleteTags removes the partition's tags record.
func (b *Batch) DeleteTags(slot uint16, key []byte) {
	b.del(b.partitionKey(slot, key, subTags))
}

// PutDelta writes one delta record of the partition; idKey is the
// order-preserving encoding of the delta's id.
func (b *Batch) PutDelta(slot uint16, key, idKey, value []byte) {
	b.set(append(b.partitionKey(slot, key, subDelta), idKey...), value)
}

// DeleteDelta removes one delta record of the partition.
func (b *Batch) DeleteDelta(slot uint16, key, idKey []byte) {
	b.del(append(b.partitionKey(slot, key, subDelta), idKey...))
}

// DeletePartition removes every record of the partition (not its tag index
// entries, which the caller removes by tag).
func (b *Batch) DeletePartition(slot uint16, key []byte) {
	lower := AppendPartitionPrefix(nil, slot, key)
	if err := b.b.DeleteRange(lower, prefixEnd(lower), nil); err != nil {
		panic(err)
	}
}

// PutTag adds (tag, key) to the global tag index.
func (b *Batch) PutTag(tag, key []byte) {
	b.noteTag(tag)
	b.key = tagKey(b.key[:0], tag, key)
	b.set(b.key, nil)
}

// DeleteTag removes (tag, key) from the global tag index.
func (b *Batch) DeleteTag(tag, key []byte) {
	b.noteTag(tag)
	b.key = tagKey(b.key[:0], tag, key)
	b.del(b.key)
}

// AddPartitions adjusts the persistent partition count by n.
func (b *Batch) AddPartitions(n int64) { b.AddCounter(metaPartitions, n) }

// AddCounter adjusts the persistent counter name by n. Counters are
// merged by pebble, so concurrent batches never read-modify-write them;
// the adjustments of one batch are summed first, so a batch of many new
// partitions adds one operand, not one each.
func (b *Batch) AddCounter(name string, n int64) {
	for i := range b.counters {
		if b.counters[i].name == name {
			b.counters[i].n += n
			return
		}
	}
	b.counters = append(b.counters, counterDelta{name, n})
}

// mergeCounters writes the batch's summed counter adjustments.
func (b *Batch) mergeCounters() {
	for _, c := range b.counters {
		if c.n == 0 {
			continue
		}
		if err := b.b.Merge(metaKey(c.name), binary.BigEndian.AppendUint64(nil, uint64(c.n)), nil); err != nil {
			panic(err)
		}
	}
	b.counters = b.counters[:0]
}

// CommitNoSync applies the batch without waiting for stable storage, for
// background work that is redone after a crash.
func (b *Batch) CommitNoSync() (err error) {
	if b.s.closed.Load() {
		return ErrClosed
	}
	if b.applied {
		return errors.New("store: batch applied twice")
	}
	if err := b.s.writable(); err != nil {
		return err
	}
	b.applied, b.waited = true, true
	b.mergeCounters()
	b.s.dirty.Store(true)
	b.beginTagWrites()
	b.s.begun.Add(1)
	defer b.endTagWrites()
	defer b.s.committed()
	defer b.recoverCommit(&err)
	if err := b.s.db.Apply(b.b, pebble.NoSync); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	b.s.logged(b.b.Len())
	return nil
}

// recoverCommit, deferred around a commit, turns a panic of pebble's
// commit pipeline into the store's failure. Pebble panics when it cannot
// write its log, in the committing goroutine, with the pipeline locked:
// from then on no commit can go through, nor can pebble close. So the
// store fails (ErrLogFailed, and every call is refused), Close leaves
// pebble as it is (the process's exit releases the data dir), and the
// batch, which pebble may still reference, is not released.
func (b *Batch) recoverCommit(err *error) {
	if r := recover(); r != nil {
		b.waited, b.b = true, nil
		*err = b.s.commitPanicked(r)
	}
}

// Commit applies the batch and waits until it is as durable as the store's
// sync mode promises.
func (b *Batch) Commit() error {
	if err := b.Apply(); err != nil {
		return err
	}
	return b.Wait()
}

// Apply makes the batch visible to readers and orders it in the WAL, but
// under SyncAlways does not wait for the fsync: a later Apply is ordered
// after it, so its durability implies this one's. Callers release per-key
// locks between Apply and Wait, letting the next write of the same key join
// the same group commit.
func (b *Batch) Apply() (err error) {
	if b.s.closed.Load() {
		return ErrClosed
	}
	if b.applied {
		return errors.New("store: batch applied twice")
	}
	if err := b.s.writable(); err != nil {
		return err
	}
	b.applied = true
	b.mergeCounters()
	b.beginTagWrites()
	b.s.begun.Add(1)
	defer b.endTagWrites()
	defer b.s.committed()
	defer b.recoverCommit(&err)
	if b.s.sync == SyncAlways {
		b.s.synced.Add(int64(b.b.Count()))
		err = b.s.db.ApplyNoSyncWait(b.b, b.s.wo)
	} else {
		err = b.s.db.Apply(b.b, b.s.wo)
		b.waited = true
		b.s.dirty.Store(true)
		if err == nil {
			b.s.logged(b.b.Len())
		}
	}
	if err != nil {
		b.waited = true
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// Wait blocks until an applied batch is durable per the sync mode.
func (b *Batch) Wait() error {
	if !b.applied {
		return errors.New("store: Wait before Apply")
	}
	if b.waited {
		return nil
	}
	b.waited = true
	if err := b.b.SyncWait(); err != nil {
		b.s.failed.fail(err)
		return b.s.failed.check()
	}
	return nil
}

// Close releases the batch. An applied batch is waited for first, as
// pebble requires.
func (b *Batch) Close() {
	if b.applied && !b.waited {
		_ = b.Wait()
	}
	if b.b != nil {
		_ = b.b.Close()
	}
	// The batch goes back to the store's pool, as pebble's own batch to
	// pebble's: nothing may use it after Close.
	s := b.s
	*b = Batch{counters: b.counters[:0], tagSlots: b.tagSlots[:0]}
	s.batches.Put(b)
}

const metaPartitions = "partitions"

// counterMerger sums 8-byte big-endian two's-complement operands; it keeps
// the partition count without a read-modify-write on every new partition.
var counterMerger = &pebble.Merger{
	Name: "legion.counter.v1",
	Merge: func(key, value []byte) (pebble.ValueMerger, error) {
		m := &counterValue{}
		return m, m.add(value)
	},
}

type counterValue struct{ n int64 }

func (c *counterValue) add(v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("%w: counter operand of %d bytes", ErrCorrupt, len(v))
	}
	c.n += int64(binary.BigEndian.Uint64(v))
	return nil
}

func (c *counterValue) MergeNewer(v []byte) error { return c.add(v) }
func (c *counterValue) MergeOlder(v []byte) error { return c.add(v) }
func (c *counterValue) Finish(bool) ([]byte, io.Closer, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(c.n)), nil, nil
}
