package legion

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/legiondb/legion/crdt"
	"github.com/legiondb/legion/index"
	"github.com/legiondb/legion/scripting"
	"github.com/legiondb/legion/store"
)

// partition is the loaded form of one key: its power state, its current
// tags, and the ids of folded deltas whose records still follow the stored
// snapshot (the log). A partition is only touched under its key's lock.
type partition struct {
	slot   uint16
	key    []byte // in keyBuf when it fits
	keyBuf [24]byte
	ps     *crdt.PowerState // often &state
	state  crdt.PowerState
	// valueBuf holds the value of state's infimum when it is small (most
	// are) and decoded from the cache.
	valueBuf [32]byte
	tags     index.Tags
	// tagsRec reports a separate tags record in the store, newer than the
	// tags the snapshot carries (see store.SplitSnapshot).
	tagsRec bool
	log     []logEntry // folded deltas stored as records after the snapshot
	logLen  int        // their encoded bytes
	exists  bool       // the store holds records for it
}

// newPartition returns a partition of key with nothing else set; it holds
// a copy of key, inside itself when the key is short.
func newPartition(slot uint16, key []byte) *partition {
	p := &partition{slot: slot}
	p.key = append(p.keyBuf[:0], key...)
	return p
}

// logEntry is a folded delta whose record still follows the snapshot.
type logEntry struct {
	id  crdt.ID
	sha [20]byte // handler of an Event delta; zero for Join/Unjoin
}

// deltaSHA returns the handler SHA an Event delta references.
func deltaSHA(d crdt.Delta) ([20]byte, bool) {
	if d.Kind != crdt.KindEvent {
		return [20]byte{}, false
	}
	ev, err := decodeEvent(d.Payload)
	if err != nil {
		return [20]byte{}, false
	}
	return ev.sha, true
}

// refCounter names the persistent count of stored deltas that reference
// handler sha; SCRIPT FLUSH never drops a version whose count is not 0.
func refCounter(sha [20]byte) string { return "refs/" + shaHex(sha) }

// countRef adjusts the reference count of the handler of d by n.
func countRef(b *store.Batch, d crdt.Delta, n int64) {
	if sha, ok := deltaSHA(d); ok {
		b.AddCounter(refCounter(sha), n)
	}
}

// size estimates the memory the partition holds, for the cache bound:
// TestCachedPartitionSize keeps the fixed part honest against the heap a
// small cached partition really uses (structs, the cache's map entry and
// list element, the key twice).
func (p *partition) size() int64 {
	n := 400 + 2*len(p.key) + len(p.ps.Infimum().Value) + 24*len(p.log)
	for _, d := range p.ps.Pending() {
		n += 64 + len(d.Delta.Payload) + 16*len(d.Acks)
	}
	for _, t := range p.tags.Tags {
		n += 16 + len(t)
	}
	return int64(n)
}

// logLimit bounds the folded deltas kept as records after a snapshot of
// stateLen bytes, and so the replay work of loading the partition after a
// crash. Rewriting the snapshot costs about its size several times over
// (the log, the flush, compactions), so the limit grows with the state to
// keep that cost near 1 KB per event: 256 records up to 256 KiB, then one
// per KiB of state, at most 4096.
func logLimit(stateLen int) int {
	return min(max(stateLen/1024, 256), 4096)
}

// load returns the partition of key, from the cache or the store. The
// caller holds the key's lock.
func (db *DB) load(slot uint16, key []byte) (*partition, error) {
	return db.loadPartition(slot, key, true)
}

// loadPartition is load; with cache false a partition read from the store
// is not added to the cache (background scans must not evict hot data).
func (db *DB) loadPartition(slot uint16, key []byte, cache bool) (*partition, error) {
	if p := db.cache.get(key); p != nil {
		return p, nil
	}
	recs, ok, err := db.store.ReadPartition(slot, key)
	if err != nil {
		return nil, err
	}
	p := newPartition(slot, key)
	if !ok {
		p.ps = crdt.New([]crdt.NodeID{db.self}, scripting.NilValue())
		return p, nil
	}
	if err := db.restore(p, recs); err != nil {
		return nil, fmt.Errorf("partition %q: %w", key, err)
	}
	if cache {
		db.cache.put(p)
	}
	return p, nil
}

// restore rebuilds a partition from its records, refolding the log.
func (db *DB) restore(p *partition, recs store.PartitionRecords) error {
	if recs.Snapshot == nil {
		return fmt.Errorf("%w: partition without a snapshot record", ErrCorrupt)
	}
	tagBytes, infRec, tagged, err := store.SplitSnapshot(recs.Snapshot)
	if err != nil {
		return err
	}
	inf, err := crdt.DecodeInfimum(infRec)
	if err != nil {
		return fmt.Errorf("%w: snapshot: %v", ErrCorrupt, err)
	}
	// The separate tags record, if any, is the newer.
	if recs.Tags != nil {
		tagBytes, tagged = recs.Tags, true
		p.tagsRec = true
	}
	pending := make([]crdt.Pending, 0, len(recs.Deltas))
	type stored struct {
		size int
		sha  [20]byte
	}
	byID := make(map[crdt.ID]stored, len(recs.Deltas))
	for _, r := range recs.Deltas {
		d, err := crdt.DecodePending(r.Value)
		if err != nil {
			return fmt.Errorf("%w: delta: %v", ErrCorrupt, err)
		}
		pending = append(pending, d)
		sha, _ := deltaSHA(d.Delta)
		byID[d.ID] = stored{len(r.Value), sha}
	}
	replay, fatal := db.replayApply(p.key)
	ps, folded, err := crdt.Restore(inf, pending, replay)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if *fatal != nil {
		return *fatal
	}
	for _, f := range folded {
		st := byID[f.ID]
		p.log = append(p.log, logEntry{id: f.ID, sha: st.sha})
		p.logLen += st.size
		if f.Err != nil {
			db.logger.Warn("replayed event failed again", "key", p.key, "id", f.ID.String(), "err", f.Err)
		}
	}
	db.stats.replayed.Add(int64(len(folded)))
	if tagged {
		if p.tags, err = index.DecodeTags(tagBytes); err != nil {
			return err
		}
	}
	p.ps = ps
	p.exists = true
	return nil
}

// replayApply returns the ApplyFunc that refolds stored events with the
// handler version that accepted each one and only the deterministic limits.
// Failures that say nothing about the event (a handler missing from the
// store, a corrupt payload, a transient limit) are not results: they are
// reported through *fatal and the caller must discard the power state.
func (db *DB) replayApply(key []byte) (crdt.ApplyFunc, *error) {
	fatal := new(error)
	return func(state []byte, id crdt.ID, payload []byte) ([]byte, []byte, error) {
		ev, err := decodeEvent(payload)
		if err == nil {
			var h *handler
			if h, err = db.handler(ev.sha); err == nil {
				var newState, out []byte
				newState, out, err = db.engine.Apply(h.h, state, ev.data, scripting.Call{Key: key, Time: ev.time, Seq: id.Counter, Node: string(id.Node)})
				if err == nil || !scripting.Transient(err) {
					return newState, out, err
				}
			}
		}
		if *fatal == nil {
			*fatal = fmt.Errorf("replaying event %s: %w", id, err)
		}
		return nil, nil, err
	}, fatal
}

// Apply runs the active handler's apply on the state of key with event,
// stores the new state with its tags in one batch, and returns the output.
// If apply or index raises an error nothing is stored and the error (a
// *scripting.Error) is returned. mode is how long to wait: on a single node
// both modes answer as soon as the event is durable.
func (db *DB) Apply(ctx context.Context, key, ev []byte, mode Mode) (Output, error) {
	out, wait, err := db.ApplyDeferred(ctx, key, ev, mode)
	if err != nil {
		return nil, err
	}
	if err := wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// ApplyDeferred is Apply without the wait for durability: when it returns
// the event is applied and visible, and wait (which must be called exactly
// once) blocks until it is as durable as the fsync mode promises. A server
// answering a pipeline applies every write of it and waits once, for the
// last: the write-ahead log is ordered, so the last write's sync covers the
// earlier ones, and no reply is sent before.
func (db *DB) ApplyDeferred(ctx context.Context, key, ev []byte, mode Mode) (out Output, wait func() error, err error) {
	var res [1]Result
	wait = db.ApplyBatch(ctx, []Write{{Key: key, Event: ev, Mode: mode}}, res[:])
	if res[0].Err != nil {
		// The event may be stored with an error as its final output: wait
		// for it all the same before answering.
		wait()
		return nil, nil, res[0].Err
	}
	return res[0].Out, wait, nil
}

// Write is one event of ApplyBatch.
type Write struct {
	Key, Event []byte
	Mode       Mode
}

// Result is the outcome of one Write: its output, or why it failed.
type Result struct {
	Out Output
	Err error
}

// ApplyBatch applies writes in order, each as Apply would, and commits
// them with as few commits as it can: one commit and one wait for
// durability for the whole batch, which is what a pipeline of writes should
// cost. The outcome of writes[i] goes to results[i]; results must be as
// long as writes. A write refused by the handler changes nothing and does
// not affect the others; a later write on the same key sees the state an
// earlier one left.
//
// The batch never waits for a key while it holds others: when a key is
// locked by another writer, the writes before it are committed first and
// their keys released, so writers never queue behind each other's
// pipelines. Each commit is atomic (other writers see all of it or none of
// it) but a batch is not a transaction: it may be committed in several
// parts. If a commit fails, its writes and every later one fail with its
// error and nothing of them is stored.
//
// wait must be called exactly once, before any result is reported: it
// blocks until the stored writes are as durable as the fsync mode promises
// and returns an error if they could not be made durable, in which case no
// write may be reported as done.
func (db *DB) ApplyBatch(ctx context.Context, writes []Write, results []Result) (wait func() error) {
	if len(results) != len(writes) {
		panic("legion: ApplyBatch needs one result per write")
	}
	if err := db.enter(); err != nil {
		for i := range results {
			results[i] = Result{Err: err}
		}
		return func() error { return nil }
	}
	// Until wait owns the in-flight registration, leave it on every way
	// out, a panic included, so Close is never kept waiting for it.
	handedOff := false
	defer func() {
		if !handedOff {
			db.leave()
		}
	}()
	var batchesBuf [1]*store.Batch
	batches, stored := db.applyBatch(ctx, writes, results, batchesBuf[:0])
	if len(batches) == 0 {
		return func() error { return nil }
	}
	handedOff = true
	if len(batches) == 1 {
		b := batches[0]
		return func() error {
			defer db.leave()
			defer b.Close()
			if err := b.Wait(); err != nil {
				return err
			}
			db.stats.applied.Add(stored)
			return nil
		}
	}
	all := slices.Clone(batches)
	return func() error {
		defer db.leave()
		var err error
		for _, b := range all {
			// Each applied batch must be waited for before it is closed;
			// the log is ordered, so after the first the waits are short.
			if werr := b.Wait(); werr != nil && err == nil {
				err = werr
			}
			b.Close()
		}
		if err != nil {
			return err
		}
		db.stats.applied.Add(stored)
		return nil
	}
}

// batchPartition is a partition written by a batch of writes.
type batchPartition struct {
	p      *partition
	stripe uint32 // of p's key
	dirty  bool   // an event of the batch changed it
	fatal  error  // set when p had to be discarded: later writes fail with it
}

// applyBatch does the work of ApplyBatch: it runs the writes in order and
// sets every result. The writes go in parts, each run into one store batch
// and committed under the stripes of its keys; a part ends where its next
// key's stripe is held by another writer, so a batch never waits for a key
// while holding others. It returns the applied store batches, in commit
// order (appended to batches, which the caller must Wait for and Close),
// and how many events they store.
func (db *DB) applyBatch(ctx context.Context, writes []Write, results []Result, batches []*store.Batch) ([]*store.Batch, int64) {
	failFrom := func(i int, err error) {
		for ; i < len(writes); i++ {
			results[i] = Result{Err: err}
		}
	}
	if err := ctx.Err(); err != nil {
		failFrom(0, err)
		return batches, 0
	}
	// Hold the handler versions in use until the batches that reference
	// the active one are applied, so FlushHandlers cannot drop it meanwhile.
	db.handlers.inUse.RLock()
	defer db.handlers.inUse.RUnlock()
	active, err := db.activeHandler()
	if err != nil {
		failFrom(0, err)
		return batches, 0
	}

	// The part being run: its store batch, the stripes it holds (sorted),
	// and the partitions it loaded under them, in order of first use
	// (found by their stripes, or by a map in long parts).
	var (
		b          *store.Batch
		heldBuf    [16]uint32
		held       = heldBuf[:0]
		partsBuf   [16]*batchPartition
		parts      = partsBuf[:0]
		slab       []batchPartition // where parts are allocated, a few at a time
		byKey      map[string]*batchPartition
		partStored int64
		stored     int64
	)
	release := func() {
		for _, s := range held {
			db.locks[s].Unlock()
		}
		held = held[:0]
	}
	// A panic (a bug) must not leave stripes locked.
	defer func() {
		release()
		if b != nil {
			b.Close()
		}
	}()
	// lock takes stripe s for the part unless the part holds it, and
	// reports false, holding nothing new, when another writer has it.
	lock := func(s uint32) bool {
		i, found := slices.BinarySearch(held, s)
		if found {
			return true
		}
		if !db.locks[s].TryLock() {
			return false
		}
		held = slices.Insert(held, i, s)
		return true
	}
	find := func(key []byte, stripe uint32) (*batchPartition, error) {
		if byKey != nil {
			if x := byKey[string(key)]; x != nil {
				return x, nil
			}
		} else {
			for _, x := range parts {
				if x.stripe == stripe && bytes.Equal(x.p.key, key) {
					return x, nil
				}
			}
		}
		p, err := db.load(store.Slot(key), key)
		if err != nil {
			return nil, err
		}
		if len(slab) == 0 {
			slab = make([]batchPartition, min(len(writes), 16))
		}
		x := &slab[0]
		slab = slab[1:]
		x.p, x.stripe = p, stripe
		parts = append(parts, x)
		switch {
		case byKey != nil:
			byKey[string(p.key)] = x
		case len(parts) > 64:
			byKey = make(map[string]*batchPartition, 2*len(parts))
			for _, y := range parts {
				byKey[string(y.p.key)] = y
			}
		}
		return x, nil
	}
	// finish commits the part (if it stored anything), brings the cache in
	// line with the outcome, releases the part's stripes and starts the
	// next part empty.
	finish := func() error {
		defer func() {
			release()
			clear(parts)
			parts, byKey, partStored = parts[:0], nil, 0
		}()
		if partStored == 0 {
			for _, x := range parts {
				if x.fatal != nil {
					db.cache.remove(x.p.key)
				}
			}
			if b != nil {
				b.Close()
				b = nil
			}
			return nil
		}
		pb := b
		b = nil
		if err := pb.Apply(); err != nil {
			pb.Close()
			// The partitions in memory are ahead of the store now: drop them.
			for _, x := range parts {
				db.cache.remove(x.p.key)
			}
			return err
		}
		batches = append(batches, pb)
		stored += partStored
		for _, x := range parts {
			switch {
			case x.fatal != nil:
				db.cache.remove(x.p.key)
			case x.dirty:
				db.cache.put(x.p)
			}
		}
		return nil
	}

	buf, _ := db.scratches.Get().(*scratch)
	if buf == nil {
		buf = new(scratch)
	}
	defer buf.release(&db.scratches)
	partFrom := 0 // the first write of the part being run
	for i, w := range writes {
		results[i] = Result{}
		if err := checkKey(w.Key); err != nil {
			results[i].Err = err
			continue
		}
		s := db.stripe(w.Key)
		if !lock(s) {
			// Another writer has this key: commit what came before and
			// release it, then wait for the key holding nothing.
			if err := finish(); err != nil {
				failFrom(partFrom, err)
				return batches, stored
			}
			db.locks[s].Lock()
			held = append(held, s)
			partFrom = i
		}
		x, err := find(w.Key, s)
		if err != nil {
			results[i].Err = err
			continue
		}
		if x.fatal != nil {
			results[i].Err = x.fatal
			continue
		}
		if b == nil {
			b = db.store.NewBatch()
		}
		out, ok, fatal, err := db.applyEvent(b, buf, active, x.p, w)
		if fatal {
			x.fatal = err
		}
		if ok {
			partStored++
			x.dirty = true
		}
		results[i] = Result{Out: out, Err: err}
	}
	if err := finish(); err != nil {
		failFrom(partFrom, err)
	}
	return batches, stored
}

// scratch holds buffers the events of one batch reuse: the batch copies
// every record it is given. A buffer that grew past maxScratch is not
// kept for the next batch.
type scratch struct{ payload, record, tags []byte }

const maxScratch = 64 << 10

// release puts sc in pool, without the buffers that grew past maxScratch
// (a large state's).
func (sc *scratch) release(pool *sync.Pool) {
	for _, b := range []*[]byte{&sc.payload, &sc.record, &sc.tags} {
		if cap(*b) > maxScratch {
			*b = nil
		}
	}
	pool.Put(sc)
}

// applyEvent runs the active handler on p with w's event and writes into
// b what it changes; p then matches the store as it will be once b is
// applied. stored reports an event written to b, whose output may still
// be an error (err). fatal reports a failure after which p must be
// discarded.
func (db *DB) applyEvent(b *store.Batch, buf *scratch, active *handler, p *partition, w Write) (out Output, stored, fatal bool, err error) {
	key, ev := w.Key, w.Event
	// The power state keeps no reference to the payload once Event returns
	// (it copies one that stays pending), nor does the batch: the buffer is
	// the next event's.
	now := db.cfg.Now().UnixMilli()
	payload := event{sha: active.sha, time: now, data: ev}.appendBinary(buf.payload[:0])
	buf.payload = payload
	newID := p.ps.NextID(db.self)
	replay, fatalErr := db.replayApply(key)
	var (
		accepted bool
		newTags  = p.tags
	)
	// The first call for newID is the acceptance run: the wall-clock limits
	// apply and the new projected state's tags are computed. A failure of
	// either refuses the event.
	apply := func(state []byte, id crdt.ID, payload []byte) ([]byte, []byte, error) {
		if id != newID || accepted {
			return replay(state, id, payload)
		}
		accepted = true
		// The payload is the one built above: its time is now.
		call := scripting.Call{Key: key, Time: now, Seq: id.Counter, Node: string(id.Node), Accept: true}
		newState, out, err := db.engine.Apply(active.h, state, ev, call)
		if err != nil {
			return nil, nil, err
		}
		// Without index, a handler's tags are none whatever the state.
		if p.tags.SHA != active.sha || active.h.HasIndex() && !bytes.Equal(newState, state) {
			tags, err := db.engine.Index(active.h, newState, scripting.Call{Key: key})
			if err != nil {
				return nil, nil, err
			}
			newTags = index.Tags{SHA: active.sha, Tags: tags}
		}
		return newState, out, nil
	}
	// A copy: Pending shares the power state's slice, which the operation
	// may rearrange in place.
	before := slices.Clone(p.ps.Pending())
	id, o, folded, err := p.ps.Event(db.self, payload, apply)
	if *fatalErr != nil {
		return nil, false, true, *fatalErr
	}
	if err != nil {
		var se *scripting.Error
		if errors.As(err, &se) {
			db.stats.scriptErrors.Add(1)
		}
		return nil, false, false, err
	}

	wroteSnapshot := db.persist(b, buf, p, newTags, before, id, crdt.Delta{Kind: crdt.KindEvent, Payload: payload}, folded)
	if !index.Equal(p.tags.Tags, newTags.Tags) || p.tags.SHA != newTags.SHA || !p.exists {
		if !wroteSnapshot {
			// The snapshot stays: the tags get a record of their own.
			buf.record = newTags.AppendBinary(buf.record[:0])
			b.PutTags(p.slot, key, buf.record)
			p.tagsRec = true
		}
		index.Update(b, key, p.tags.Tags, newTags.Tags)
	}
	if !p.exists {
		b.AddPartitions(1)
	}
	p.tags = newTags
	p.exists = true

	if w.Mode == Consistent {
		for _, f := range folded {
			if f.ID == id {
				return Output(f.Output), true, false, f.Err
			}
		}
	}
	return Output(o), true, false, nil
}

// persist writes into b what makes the stored partition match p.ps after
// an operation that created delta d with id created (if any), given the
// pending deltas before it and the deltas it folded. Folded deltas become
// log records (with every participant's ack, so a reload refolds them)
// until the log outgrows the state, when a snapshot replaces the log. Every
// delta record added or removed adjusts its handler's reference count.
// A snapshot carries tags, the partition's tags after the operation, and
// replaces a separate tags record; persist reports whether it wrote one.
// Records are encoded into sc, which b copies.
func (db *DB) persist(b *store.Batch, sc *scratch, p *partition, tags index.Tags, before []crdt.Pending, created crdt.ID, d crdt.Delta, folded []crdt.Folded) (wroteSnapshot bool) {
	buf := &sc.record
	inf := p.ps.Infimum()
	var wasPending map[crdt.ID]crdt.Pending
	if len(before) > 0 {
		wasPending = make(map[crdt.ID]crdt.Pending, len(before))
		for _, pd := range before {
			wasPending[pd.ID] = pd
		}
	}
	// Every participant at any point of the fold has acknowledged it.
	acks := inf.Participants
	type logRec struct {
		pd        crdt.Pending
		wasStored bool
	}
	var recsBuf [4]logRec // an event usually folds one delta: no allocation
	recs := recsBuf[:0]
	logLen := 0
	for _, f := range folded {
		pd, ok := wasPending[f.ID]
		switch {
		case ok:
		case f.ID == created:
			pd = crdt.Pending{ID: created, Delta: d}
		default:
			continue
		}
		pd.Acks = unionNodes(pd.Acks, acks)
		if f.Kind != crdt.KindEvent {
			pd.Acks = unionNodes(pd.Acks, []crdt.NodeID{pd.Delta.Node})
		}
		recs = append(recs, logRec{pd, ok})
		logLen += pd.BinaryLen()
	}

	keyBuf := make([]byte, 0, 32)
	if !p.exists || len(p.log)+len(recs) > logLimit(len(inf.Value)) || p.logLen+logLen >= len(inf.Value) {
		wroteSnapshot = true
		db.putSnapshot(b, sc, p, inf, tags)
		for _, e := range p.log {
			b.DeleteDelta(p.slot, p.key, crdt.AppendIDKey(keyBuf[:0], e.id))
			if e.sha != ([20]byte{}) {
				b.AddCounter(refCounter(e.sha), -1)
			}
		}
		for _, r := range recs {
			if r.wasStored {
				b.DeleteDelta(p.slot, p.key, crdt.AppendIDKey(keyBuf[:0], r.pd.ID))
				countRef(b, r.pd.Delta, -1)
			}
		}
		p.log, p.logLen = p.log[:0], 0
	} else {
		for _, r := range recs {
			*buf = r.pd.AppendBinary((*buf)[:0])
			b.PutDelta(p.slot, p.key, crdt.AppendIDKey(keyBuf[:0], r.pd.ID), *buf)
			if !r.wasStored {
				countRef(b, r.pd.Delta, 1)
			}
			sha, _ := deltaSHA(r.pd.Delta)
			p.log = append(p.log, logEntry{id: r.pd.ID, sha: sha})
		}
		p.logLen += logLen
	}
	// Deltas still pending that are new or gained acks.
	for _, pd := range p.ps.Pending() {
		old, ok := wasPending[pd.ID]
		if ok && len(old.Acks) == len(pd.Acks) {
			continue
		}
		*buf = pd.AppendBinary((*buf)[:0])
		b.PutDelta(p.slot, p.key, crdt.AppendIDKey(keyBuf[:0], pd.ID), *buf)
		if !ok {
			countRef(b, pd.Delta, 1)
		}
	}
	return wroteSnapshot
}

// putSnapshot writes into b p's snapshot record of infimum inf carrying
// tags, and drops p's separate tags record, which it replaces. Records are
// encoded into sc, which b copies.
func (db *DB) putSnapshot(b *store.Batch, sc *scratch, p *partition, inf crdt.Infimum, tags index.Tags) {
	sc.tags = tags.AppendBinary(sc.tags[:0])
	sc.record = inf.AppendBinary(store.AppendSnapshotTags(sc.record[:0], sc.tags))
	if p.exists {
		b.ReplaceSnapshot(p.slot, p.key, sc.record)
	} else {
		b.PutSnapshot(p.slot, p.key, sc.record) // notes the new partition
	}
	if p.tagsRec {
		b.DeleteTags(p.slot, p.key)
		p.tagsRec = false
	}
	db.stats.snapshots.Add(1)
}

func unionNodes(a, b []crdt.NodeID) []crdt.NodeID {
	// The common cases share a slice (the result is only read).
	switch {
	case len(a) == 0:
		return b
	case len(b) == 0:
		return a
	}
	out := make([]crdt.NodeID, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i] < b[j]:
			out = append(out, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}

// compactCached writes a snapshot for every cached partition with a log,
// so the next start replays nothing. Close calls it with no calls in
// flight; nothing uses the cache after.
func (db *DB) compactCached() error {
	var errs []error
	db.cache.eachLogged(func(p *partition) {
		if len(p.log) == 0 {
			return
		}
		b := db.store.NewBatch()
		defer b.Close()
		var sc scratch
		tagsRec := p.tagsRec
		db.putSnapshot(b, &sc, p, p.ps.Infimum(), p.tags)
		keyBuf := make([]byte, 0, 32)
		for _, e := range p.log {
			b.DeleteDelta(p.slot, p.key, crdt.AppendIDKey(keyBuf[:0], e.id))
			if e.sha != ([20]byte{}) {
				b.AddCounter(refCounter(e.sha), -1)
			}
		}
		if err := b.Commit(); err != nil {
			p.tagsRec = tagsRec
			errs = append(errs, err)
			return
		}
		p.log, p.logLen = nil, 0
	})
	return errors.Join(errs...)
}

// read returns the projected state of key (nil if the partition does not
// exist) and the id the next event would get, under the key's lock, so it
// never sees half an Apply.
func (db *DB) read(key []byte) (state []byte, next crdt.ID, exists bool, err error) {
	if err := checkKey(key); err != nil {
		return nil, next, false, err
	}
	mu := db.lockKey(key)
	defer mu.Unlock()
	p, err := db.load(store.Slot(key), key)
	if err != nil {
		return nil, next, false, err
	}
	next = p.ps.NextID(db.self)
	if !p.exists {
		return nil, next, false, nil
	}
	replay, fatal := db.replayApply(key)
	state = p.ps.Projected(replay)
	if *fatal != nil {
		return nil, next, false, *fatal
	}
	return state, next, true, nil
}

// Get returns the state of key as JSON text; ok is false if the key was
// never written.
func (db *DB) Get(key []byte) (json []byte, ok bool, err error) {
	if err := db.enter(); err != nil {
		return nil, false, err
	}
	defer db.leave()
	state, _, ok, err := db.read(key)
	if err != nil || !ok {
		return nil, ok, err
	}
	json, err = scripting.AppendJSON(nil, state)
	return json, true, err
}

// Query runs the active handler's read-only query(request, state, ctx).
func (db *DB) Query(key, request []byte) (Output, error) {
	if err := db.enter(); err != nil {
		return nil, err
	}
	defer db.leave()
	active, err := db.activeHandler()
	if err != nil {
		return nil, err
	}
	state, _, _, err := db.read(key)
	if err != nil {
		return nil, err
	}
	out, err := db.engine.Query(active.h, state, request, scripting.Call{Key: key, Time: db.cfg.Now().UnixMilli(), Accept: true})
	if err != nil {
		db.countScriptError(err)
		return nil, err
	}
	return Output(out), nil
}

// DryRun runs the active handler's apply on the state of key and returns
// the output and the new state as JSON, storing nothing.
func (db *DB) DryRun(key, ev []byte) (Output, []byte, error) {
	if err := db.enter(); err != nil {
		return nil, nil, err
	}
	defer db.leave()
	active, err := db.activeHandler()
	if err != nil {
		return nil, nil, err
	}
	state, next, _, err := db.read(key)
	if err != nil {
		return nil, nil, err
	}
	// The id the event would get, so math.random draws what Apply would.
	newState, out, err := db.engine.Apply(active.h, state, ev, scripting.Call{Key: key, Time: db.cfg.Now().UnixMilli(), Seq: next.Counter, Node: string(next.Node), Accept: true})
	if err != nil {
		db.countScriptError(err)
		return nil, nil, err
	}
	json, err := scripting.AppendJSON(nil, newState)
	return Output(out), json, err
}

func (db *DB) countScriptError(err error) {
	var se *scripting.Error
	if errors.As(err, &se) {
		db.stats.scriptErrors.Add(1)
	}
}
