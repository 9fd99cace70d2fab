package legion

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legiondb/legion/index"
	"github.com/legiondb/legion/scripting"
	"github.com/legiondb/legion/store"
)

// reindexBatch is how many partitions the re-indexer visits per pass over
// a fresh view of the store; between passes it yields to other work and
// notices a newer active handler.
const reindexBatch = 256

// reindexer recomputes every partition's tags with the active handler
// after the active handler changed. Each partition is updated atomically
// under its key's lock (index diff and tags record in one batch), so a
// search is correct for every partition at every moment: it sees the tags
// of the old handler or of the new one, never a mixture. Its goroutine is
// started by Open and stopped by Close.
type reindexer struct {
	db      *DB
	wakeC   chan struct{}
	stop    chan struct{}
	stopped sync.WaitGroup

	running atomic.Bool
	target  atomic.Pointer[string] // SHA being indexed for
	total   atomic.Int64           // partitions when the pass began
	scanned atomic.Int64
	updated atomic.Int64
	errors  atomic.Int64
	passes  atomic.Int64 // completed re-indexes since start
}

func (r *reindexer) start(db *DB) {
	r.db = db
	r.wakeC = make(chan struct{}, 1)
	r.stop = make(chan struct{})
	r.stopped.Add(1)
	go r.loop()
}

// wake asks for a re-index against the current active handler.
func (r *reindexer) wake() {
	select {
	case r.wakeC <- struct{}{}:
	default:
	}
}

func (r *reindexer) close() {
	close(r.stop)
	r.stopped.Wait()
}

func (r *reindexer) loop() {
	defer r.stopped.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-r.wakeC:
		}
		for {
			restart, err := r.run()
			if errors.Is(err, store.ErrNoSpace) {
				r.db.logger.Warn("re-index paused: the disk is full; it goes on once space is freed")
				if !r.waitForSpace() {
					return
				}
				restart = true
			} else if err != nil {
				r.db.logger.Error("re-index failed; it will run again after the next handler change or restart", "err", err)
			}
			if !restart {
				break
			}
		}
		r.running.Store(false)
	}
}

// waitForSpace waits until writes are taken again after the disk filled;
// it returns false if the re-indexer is stopped first.
func (r *reindexer) waitForSpace() bool {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for r.db.store.NoSpace() != nil {
		select {
		case <-r.stop:
			return false
		case <-t.C:
		}
	}
	return true
}

// run re-indexes every partition for the active handler. It returns
// restart=true if the active handler changed meanwhile.
func (r *reindexer) run() (restart bool, err error) {
	db := r.db
	active := db.handlers.active.Load()
	if active == nil {
		return false, nil
	}
	done, _, err := db.store.GetMeta("reindexed")
	if err != nil {
		return false, err
	}
	if bytes.Equal(done, active.sha[:]) {
		return false, nil
	}
	target := shaHex(active.sha)
	r.target.Store(&target)
	total, _ := db.store.PartitionCount()
	r.total.Store(total)
	r.scanned.Store(0)
	r.updated.Store(0)
	r.errors.Store(0)
	r.running.Store(true)
	db.logger.Info("re-indexing partitions for the new active handler", "sha", target, "partitions", total)
	began := time.Now()

	var fromSlot uint16
	var fromKey []byte
	started := false
	for {
		select {
		case <-r.stop:
			return false, nil
		default:
		}
		if db.handlers.active.Load() != active {
			return true, nil
		}
		keys, slots, next, more, err := r.nextBatch(fromSlot, fromKey, started)
		if err != nil {
			return false, err
		}
		started = true
		for i, key := range keys {
			if err := r.one(active, slots[i], key); errors.Is(err, store.ErrNoSpace) {
				return false, err // the loop pauses until there is room
			} else if err != nil {
				r.errors.Add(1)
				db.logger.Warn("re-index of a partition failed; its tags stay as they were", "key", key, "err", err)
			}
			r.scanned.Add(1)
		}
		if !more {
			break
		}
		fromSlot, fromKey = next.slot, next.key
	}
	b := db.store.NewBatch()
	defer b.Close()
	b.SetMeta("reindexed", active.sha[:])
	if err := b.CommitNoSync(); err != nil {
		return false, err
	}
	r.passes.Add(1)
	db.logger.Info("re-index complete", "sha", target, "partitions", r.scanned.Load(), "updated", r.updated.Load(),
		"errors", r.errors.Load(), "took", time.Since(began).Round(time.Millisecond))
	return false, nil
}

type partitionPos struct {
	slot uint16
	key  []byte
}

// nextBatch lists up to reindexBatch partitions from (slot, key) on (after
// it, once started), from a fresh view of the store.
func (r *reindexer) nextBatch(slot uint16, key []byte, after bool) (keys [][]byte, slots []uint16, next partitionPos, more bool, err error) {
	it, err := r.db.store.Partitions(slot, key, store.Slots-1)
	if err != nil {
		return nil, nil, next, false, err
	}
	for it.Next() {
		if after && it.Slot() == slot && bytes.Equal(it.Key(), key) {
			continue
		}
		if len(keys) == reindexBatch {
			return keys, slots, next, true, it.Close()
		}
		k := append([]byte(nil), it.Key()...)
		keys, slots = append(keys, k), append(slots, it.Slot())
		next = partitionPos{it.Slot(), k}
	}
	return keys, slots, next, false, it.Close()
}

// one re-indexes one partition under its key's lock.
func (r *reindexer) one(active *handler, slot uint16, key []byte) error {
	db := r.db
	if err := db.enter(); err != nil {
		return nil // closing
	}
	defer db.leave()
	mu := db.lockKey(key)
	defer mu.Unlock()
	p, err := db.loadPartition(slot, key, false)
	if err != nil || !p.exists {
		return err
	}
	if p.tags.SHA == active.sha {
		return nil
	}
	replay, fatal := db.replayApply(key)
	state := p.ps.Projected(replay)
	if *fatal != nil {
		return *fatal
	}
	tags, err := db.engine.Index(active.h, state, scripting.Call{Key: key})
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	if index.Equal(tags, p.tags.Tags) {
		return nil
	}
	newTags := index.Tags{SHA: active.sha, Tags: tags}
	b := db.store.NewBatch()
	defer b.Close()
	index.Update(b, key, p.tags.Tags, tags)
	b.PutTags(slot, key, newTags.AppendBinary(nil))
	if err := b.CommitNoSync(); err != nil {
		return err
	}
	p.tags, p.tagsRec = newTags, true
	db.cache.replace(p)
	r.updated.Add(1)
	return nil
}

// ReindexStatus reports the background re-index.
type ReindexStatus struct {
	Running bool
	Target  string // the handler SHA partitions are being indexed for
	Total   int64  // partitions when the pass began
	Scanned int64
	Updated int64 // partitions whose tags changed
	Errors  int64 // partitions whose index function failed
	Passes  int64 // re-indexes completed since Open
}

// ReindexStatus returns the state of the background re-index.
func (db *DB) ReindexStatus() ReindexStatus {
	r := &db.reindex
	st := ReindexStatus{
		Running: r.running.Load(),
		Total:   r.total.Load(),
		Scanned: r.scanned.Load(),
		Updated: r.updated.Load(),
		Errors:  r.errors.Load(),
		Passes:  r.passes.Load(),
	}
	if t := r.target.Load(); t != nil {
		st.Target = *t
	}
	return st
}
