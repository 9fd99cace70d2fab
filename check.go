package legion

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/legiondb/legion/index"
	"github.com/legiondb/legion/scripting"
	"github.com/legiondb/legion/store"
)

var (
	// ErrReindexing is returned by Check while a re-index is running.
	ErrReindexing = errors.New("legion: a re-index is in progress; run the check when it completes (see INFO legion)")
	// ErrBackupInMemory is returned by Backup on an in-memory database.
	ErrBackupInMemory = errors.New("legion: an in-memory database has no files to back up")
)

// maxCheckProblems bounds the problems a CheckReport lists one by one.
const maxCheckProblems = 20

// CheckReport is what Check found (and, with repair, fixed).
type CheckReport struct {
	Partitions    int64    // partitions examined
	DecodeErrors  int64    // partitions whose records do not decode or replay
	TagMismatches int64    // partitions whose stored tags differ from what the active handler's index gives
	IndexMissing  int64    // (tag, key) records a partition's tags need that the index lacks
	IndexOrphans  int64    // index records that no partition's tags name
	Repaired      int64    // index records added or removed, and tags records rewritten
	Problems      []string // the first few problems, described
}

func (r *CheckReport) problem(format string, args ...any) {
	if len(r.Problems) < maxCheckProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check verifies that every stored power state decodes and replays, and
// that the tag index holds exactly the tags the active handler's index
// function gives each partition. With repair it fixes the index (not the
// states). It works one partition at a time under that partition's lock,
// in bounded batches over fresh views of the store, so traffic goes on.
func (db *DB) Check(repair bool) (CheckReport, error) {
	var rep CheckReport
	if err := db.enter(); err != nil {
		return rep, err
	}
	defer db.leave()
	active := db.handlers.active.Load()
	if st := db.ReindexStatus(); st.Running {
		return rep, ErrReindexing
	}

	var fromSlot uint16
	var fromKey []byte
	started := false
	for {
		keys, slots, next, more, err := db.reindex.nextBatch(fromSlot, fromKey, started)
		if err != nil {
			return rep, err
		}
		started = true
		for i, key := range keys {
			if err := db.checkPartition(&rep, active, slots[i], key, repair); err != nil {
				return rep, err
			}
		}
		if !more {
			break
		}
		fromSlot, fromKey = next.slot, next.key
	}
	if err := db.checkOrphans(&rep, repair); err != nil {
		return rep, err
	}
	return rep, nil
}

// checkPartition examines one partition under its key's lock, reading its
// records from the store (not the cache: the check is of what is stored).
func (db *DB) checkPartition(rep *CheckReport, active *handler, slot uint16, key []byte, repair bool) error {
	mu := db.lockKey(key)
	defer mu.Unlock()
	recs, ok, err := db.store.ReadPartition(slot, key)
	if err != nil || !ok {
		return err
	}
	rep.Partitions++
	p := newPartition(slot, key)
	if err := db.restore(p, recs); err != nil {
		rep.DecodeErrors++
		rep.problem("partition %q does not decode: %v", key, err)
		return nil
	}
	if active == nil {
		return nil
	}
	replay, fatal := db.replayApply(key)
	state := p.ps.Projected(replay)
	if *fatal != nil {
		rep.DecodeErrors++
		rep.problem("partition %q does not replay: %v", key, *fatal)
		return nil
	}
	want, err := db.engine.Index(active.h, state, scripting.Call{Key: key})
	if err != nil {
		rep.problem("partition %q: index function fails: %v", key, err)
		return nil
	}
	mismatch := !index.Equal(want, p.tags.Tags)
	if mismatch {
		rep.TagMismatches++
		rep.problem("partition %q: stored tags %q, the handler gives %q", key, p.tags.Tags, want)
	}
	var missing []string
	for _, tag := range want {
		has, err := db.store.HasTag([]byte(tag), key)
		if err != nil {
			return err
		}
		if !has {
			missing = append(missing, tag)
			rep.IndexMissing++
			rep.problem("index lacks (%q, %q)", tag, key)
		}
	}
	if !repair || (!mismatch && len(missing) == 0) {
		return nil
	}
	b := db.store.NewBatch()
	defer b.Close()
	index.Update(b, key, p.tags.Tags, want)
	for _, tag := range missing {
		b.PutTag([]byte(tag), key)
	}
	newTags := index.Tags{SHA: active.sha, Tags: want}
	b.PutTags(slot, key, newTags.AppendBinary(nil))
	if err := b.Commit(); err != nil {
		return err
	}
	if cached := db.cache.get(key); cached != nil {
		cached.tags, cached.tagsRec = newTags, true
		db.cache.put(cached)
	}
	rep.Repaired += int64(len(missing)) + 1
	return nil
}

// checkOrphans walks the index and finds records whose partition's tags
// do not name them.
func (db *DB) checkOrphans(rep *CheckReport, repair bool) error {
	var fromTag, fromKey []byte
	after := false
	for {
		it, err := db.store.SeekTags(fromTag, fromKey, after, false)
		if err != nil {
			return err
		}
		var batch []index.Hit
		for len(batch) < reindexBatch && it.Next() {
			batch = append(batch, index.Hit{Tag: append([]byte(nil), it.Tag()...), Key: append([]byte(nil), it.Key()...)})
		}
		if err := it.Close(); err != nil {
			return err
		}
		for _, h := range batch {
			if err := db.checkEntry(rep, h, repair); err != nil {
				return err
			}
		}
		if len(batch) < reindexBatch {
			return nil
		}
		last := batch[len(batch)-1]
		fromTag, fromKey, after = last.Tag, last.Key, true
	}
}

func (db *DB) checkEntry(rep *CheckReport, h index.Hit, repair bool) error {
	mu := db.lockKey(h.Key)
	defer mu.Unlock()
	has, err := db.store.HasTag(h.Tag, h.Key)
	if err != nil || !has {
		return err // changed meanwhile: the partition check covered it
	}
	slot := store.Slot(h.Key)
	rec, ok, err := db.store.PartitionTags(slot, h.Key)
	if err != nil {
		return err
	}
	if ok {
		tags, err := index.DecodeTags(rec)
		if err != nil {
			rep.problem("partition %q: tags record does not decode: %v", h.Key, err)
		} else {
			for _, t := range tags.Tags {
				if bytes.Equal([]byte(t), h.Tag) {
					return nil
				}
			}
		}
	}
	rep.IndexOrphans++
	rep.problem("index holds (%q, %q), which no partition's tags name", h.Tag, h.Key)
	if !repair {
		return nil
	}
	b := db.store.NewBatch()
	defer b.Close()
	b.DeleteTag(h.Tag, h.Key)
	if err := b.Commit(); err != nil {
		return err
	}
	rep.Repaired++
	return nil
}

// Backup writes a consistent point-in-time copy of the database (a pebble
// checkpoint) into dir, which must not exist, while writes go on. Starting
// legion-server with --data-dir dir serves exactly the backed-up states,
// tags and handlers.
func (db *DB) Backup(dir string) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.leave()
	if db.cfg.InMemory || db.cfg.FS != nil {
		return ErrBackupInMemory
	}
	if dir == "" {
		return errors.New("legion: backup needs a directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	data, _ := filepath.Abs(db.cfg.DataDir)
	if abs == data || len(abs) > len(data) && abs[:len(data)+1] == data+string(filepath.Separator) {
		return fmt.Errorf("legion: the backup directory must be outside the data dir %s", data)
	}
	return db.store.Checkpoint(abs)
}

// ScriptUsage returns the handler calls run since Open and the
// instruction-budget units they used.
func (db *DB) ScriptUsage() (calls, units int64) { return db.engine.Usage() }

// PebbleMetrics returns the storage engine's metrics.
func (db *DB) PebbleMetrics() *pebble.Metrics { return db.store.Pebble().Metrics() }
