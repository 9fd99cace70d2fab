// Package store keeps Legion's records in one pebble database: partition
// snapshots, pending deltas and tags (slot-prefixed, so a slot is one
// contiguous key range), the global tag index, handler sources and node
// metadata.
//
// The store knows the key layout and durability, nothing of Lua or of the
// power state: record values are opaque bytes encoded by the layers above.
// Every write of an event is one Batch, so a crash never separates a state
// from its tags.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	dto "github.com/prometheus/client_model/go"
)

// FormatVersion is the on-disk format this code writes and reads. A data
// dir written by a newer version is refused rather than misread; one of an
// older version is read as it is and stamped with this version when first
// opened for writing, since what is written then may use the newer format.
//
//  1. The first format.
//  2. Snapshot records may carry the partition's tags (see SplitSnapshot).
//  3. pebble splits the keys of partition records after the partition's
//     prefix (partitionComparer). Only a new data dir gets it: one of
//     format 1 or 2 keeps pebble's default comparer and format 2.
const FormatVersion = 3

// formatDefaultComparer is the newest format of a data dir on pebble's
// default comparer.
const formatDefaultComparer = 2

var (
	// ErrCorrupt reports bytes in the store that this code did not write.
	ErrCorrupt = errors.New("store: corrupt record")
	// ErrNewerFormat reports a data dir written by a newer Legion.
	ErrNewerFormat = errors.New("store: data dir has a newer format")
	// ErrNotLegion reports a pebble database that Legion did not create.
	ErrNotLegion = errors.New("store: data dir is not a Legion data dir")
	// ErrLocked reports a data dir in use by another process.
	ErrLocked = errors.New("store: data dir is locked by another process")
	// ErrClosed reports use of a closed store.
	ErrClosed = errors.New("store: closed")
)

// SyncMode says when a committed write reaches stable storage.
type SyncMode int

const (
	// SyncAlways makes a commit wait until its WAL record is fsynced;
	// pebble's commit pipeline groups concurrent commits into one sync.
	SyncAlways SyncMode = iota
	// SyncEverySecond fsyncs the WAL once a second: a crash of the machine
	// loses at most about a second of acknowledged writes.
	SyncEverySecond
	// SyncNever leaves flushing to the operating system.
	SyncNever
)

func (m SyncMode) String() string {
	switch m {
	case SyncAlways:
		return "always"
	case SyncEverySecond:
		return "everysec"
	case SyncNever:
		return "no"
	}
	return fmt.Sprintf("SyncMode(%d)", int(m))
}

// ParseSyncMode parses "always", "everysec" or "no".
func ParseSyncMode(s string) (SyncMode, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "everysec":
		return SyncEverySecond, nil
	case "no":
		return SyncNever, nil
	}
	return 0, fmt.Errorf("store: unknown fsync mode %q (want always, everysec or no)", s)
}

// Options configures Open. The zero value of a field means its default.
type Options struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// FS is the filesystem; nil means the operating system's. Tests and
	// --in-memory pass vfs.NewMem().
	FS vfs.FS
	// Sync is the durability mode of commits.
	Sync SyncMode
	// CacheBytes is the size of pebble's block cache; 0 means 64 MiB.
	CacheBytes int64
	// MemtableBytes is the largest size of a memtable; 0 means 8 MiB.
	MemtableBytes int64
	// SyncMinInterval is the least time between the end of one log sync
	// and the start of the next: the commits arriving meanwhile share the
	// next. 0 (SyncPaced) spaces syncs only after large groups (see
	// syncInterval); SyncUnpaced syncs as soon as a commit asks.
	SyncMinInterval time.Duration
	// TagPageBytes bounds the cache of the first keys of exact tags
	// (CachedTagKeys); 0 means 4 MiB, negative disables it.
	TagPageBytes int64
	// Logger receives pebble's and the store's messages; nil discards them.
	Logger *slog.Logger
	// ReadOnly opens the store for reading only.
	ReadOnly bool
	// NoIOUring makes plain system calls, as where the kernel refuses
	// io_uring, of the log's syncs and the tables' syncs and removals,
	// rather than send them through rings (see syncRing).
	NoIOUring bool
	// NoDirectLog, with SyncAlways and io_uring, writes the log through
	// the page cache and syncs it with fdatasync, rather than sync it with
	// direct writes of whole sectors where the file system allows them
	// (see directFile).
	NoDirectLog bool

	// testScanning, if set, runs inside the scan of the partitions at
	// open, with its first view of the store taken; testScanView, if set,
	// replaces filterRescan.
	testScanning func(*Store)
	testScanView int
	// comparer is pebble's comparer; Open sets it (comparerOf) unless a
	// test did, to make a data dir of an older format.
	comparer *pebble.Comparer
}

// Store is an open pebble database with Legion's layout. It is safe for
// concurrent use.
type Store struct {
	events *engineEvents
	space  *spaceGuard // refuses writes while the disk is full
	failed *logFailure // set once the log could not be made durable
	wedged atomic.Bool // pebble's commit pipeline panicked: it cannot close
	db     *pebble.DB
	ring   *syncRing // the log's syncs go through it, if not nil
	yields *yielder  // tables yield, sync and are removed through it, if not nil
	fs     vfs.FS
	dir    string
	sync   SyncMode
	wo     *pebble.WriteOptions
	logger *slog.Logger

	dirty   atomic.Bool // writes since the last background sync (SyncEverySecond)
	stop    chan struct{}
	stopped sync.WaitGroup
	closed  atomic.Bool

	// begun and done count the commits of visible writes that have
	// started and finished: between two reads of equal values nothing
	// became visible. They let idle tag iterators be reused (tagIters).
	begun, done atomic.Uint64
	tagIters    tagIterCache
	tagPages    tagPages
	// syncMin is the least time between log syncs (ns), SyncPaced or
	// SyncUnpaced; pebble asks syncInterval after every sync, so a change
	// applies from the next one. synced counts the entries of commits
	// waiting for a sync since the last one.
	syncMin *atomic.Int64
	// stamped is set when opening recorded FormatVersion (a new or older
	// data dir), so the marker is rewritten.
	stamped bool
	synced  *atomic.Int64
	batches sync.Pool // closed Batches, reused by NewBatch
	// splitPartitions tells that pebble splits partition records' keys
	// (partitionComparer): the data dir is of format 3 or later.
	splitPartitions bool
	// filter knows which partitions the store cannot hold (nil when read
	// only); its scan reads scanView partitions through one view, and
	// testScanning runs inside it (see scanPartitions).
	filter       *partitionFilter
	scanView     int
	testScanning func(*Store)
}

// Values of Options.SyncMinInterval besides a positive interval.
const (
	// SyncPaced spaces syncs after large groups only (the default).
	SyncPaced time.Duration = 0
	// SyncUnpaced syncs as soon as a commit asks.
	SyncUnpaced time.Duration = -1
)

const (
	// pacedEntries is the size of a group (entries of the commits a sync
	// made durable) from which SyncPaced spaces the next sync.
	pacedEntries = 48
	// pacedInterval is how long SyncPaced holds the next sync back: about
	// a loopback round trip and the handling of a pipeline.
	pacedInterval = 100 * time.Microsecond
)

// syncInterval is pebble's WALMinSyncInterval, asked after every sync.
//
// Right after a large group, the connections it answered are sending
// their next commands. Syncing again at once would leave them for the
// sync after, and make many small syncs, each costing tens of
// microseconds of CPU in the kernel and hand-offs between threads. So
// SyncPaced holds the next sync back briefly after a large group. After a
// small group (a few clients, each waiting for its reply) it does not, so
// their latency stays the device's.
func syncInterval(syncMin, synced *atomic.Int64) time.Duration {
	n := synced.Swap(0)
	switch d := time.Duration(syncMin.Load()); {
	case d > 0:
		return d
	case d == SyncPaced && n >= pacedEntries:
		return pacedInterval
	}
	return 0
}

// Open opens or creates the store in opts.Dir.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("store: no data dir given")
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	// pebble cleans the paths it opens; the in-memory filesystem only
	// finds directories created under the same clean name.
	opts.Dir = filepath.Clean(opts.Dir)
	if opts.CacheBytes == 0 {
		opts.CacheBytes = 64 << 20
	}
	if opts.MemtableBytes == 0 {
		opts.MemtableBytes = 8 << 20
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// Validate before anything is written: a refused data dir is left
	// exactly as it was.
	if opts.comparer == nil {
		var err error
		if opts.comparer, err = comparerOf(opts.FS, opts.Dir); err != nil {
			return nil, err
		}
	}
	fresh, err := precheck(opts)
	if err != nil {
		return nil, err
	}
	if !opts.ReadOnly {
		if err := opts.FS.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, classifyOpenError(opts.Dir, err)
		}
	}
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	// Room to flush both memtables, and a margin, counts as room again
	// after the disk filled (see spaceGuard).
	space := newSpaceGuard(opts.FS, opts.Dir, logger, uint64(2*opts.MemtableBytes+16<<20))
	events := &engineEvents{logger: logger, space: space}
	if opts.Sync != SyncAlways && !opts.ReadOnly {
		events.presync = newLogPresync()
	}
	popts := pebbleOptions(opts, cache, logger, events)
	syncMin, synced := new(atomic.Int64), new(atomic.Int64)
	syncMin.Store(int64(opts.SyncMinInterval))
	popts.WALMinSyncInterval = func() time.Duration { return syncInterval(syncMin, synced) }
	var ring *syncRing
	if opts.Sync == SyncAlways && !opts.ReadOnly && !opts.NoIOUring && opts.FS == vfs.Default {
		var rerr error
		if popts.FS, ring, rerr = withSyncRing(popts.FS, !opts.NoDirectLog); rerr != nil {
			logger.Info("the log syncs with plain system calls", "reason", rerr)
		}
	}
	var yields *yielder
	if !opts.ReadOnly {
		var rerr error
		if popts.FS, yields, rerr = withYields(popts.FS, !opts.NoIOUring && opts.FS == vfs.Default); rerr != nil {
			logger.Info("the tables sync and are removed with plain system calls", "reason", rerr)
		}
	}
	if !opts.ReadOnly {
		popts.FS = spaceFS{popts.FS, space}
	}
	opened := false
	defer func() {
		if !opened {
			close(space.stop)
			ring.close()
			yields.close()
		}
	}()
	space.opening.Store(true)
	db, err := pebble.Open(opts.Dir, popts)
	space.opening.Store(false)
	if err != nil {
		return nil, classifyOpenError(opts.Dir, err)
	}
	if err := ring.directRefused(); err != nil {
		logger.Info("the log syncs through the page cache, not with direct writes", "reason", err)
	}
	s := &Store{
		space:   space,
		failed:  newLogFailure(logger),
		ring:    ring,
		yields:  yields,
		syncMin: syncMin,
		synced:  synced,
		events:  events,
		db:      db,
		fs:      opts.FS,
		dir:     opts.Dir,
		sync:    opts.Sync,
		logger:  logger,
		stop:    make(chan struct{}),

		splitPartitions: opts.comparer == partitionComparer,
	}
	switch {
	case opts.TagPageBytes == 0:
		s.tagPages.init(4 << 20)
	case opts.TagPageBytes > 0:
		s.tagPages.init(opts.TagPageBytes)
	}
	s.wo = pebble.NoSync
	if opts.Sync == SyncAlways {
		s.wo = pebble.Sync
	}
	if err := s.checkFormat(opts.ReadOnly); err != nil {
		db.Close()
		return nil, err
	}
	if !opts.ReadOnly && (fresh || s.stamped || !s.hasMarker()) {
		if err := s.writeMarker(); err != nil {
			db.Close()
			return nil, err
		}
	}
	var partitions int64
	if !opts.ReadOnly {
		if partitions, err = s.Counter(metaPartitions); err != nil {
			db.Close()
			return nil, err
		}
	}
	if opts.Sync == SyncEverySecond && !opts.ReadOnly {
		s.stopped.Add(1)
		go s.syncLoop(time.Second)
	}
	if events.presync != nil {
		s.stopped.Add(1)
		go s.presyncLoop(events.presync)
	}
	if !opts.ReadOnly {
		// Room for the partitions there are and as many again.
		s.filter = newPartitionFilter(2 * partitions)
		s.scanView, s.testScanning = filterRescan, opts.testScanning
		if opts.testScanView > 0 {
			s.scanView = opts.testScanView
		}
		s.stopped.Add(1)
		go s.scanPartitions(s.filter)
	}
	opened = true
	return s, nil
}

// pebbleOptions returns the pebble options every open of a data dir uses;
// events, if not nil, follows pebble's events.
func pebbleOptions(opts Options, cache *pebble.Cache, logger *slog.Logger, events *engineEvents) *pebble.Options {
	popts := &pebble.Options{
		FS:           opts.FS,
		Cache:        cache,
		Merger:       counterMerger,
		Comparer:     opts.comparer,
		ReadOnly:     opts.ReadOnly,
		Logger:       pebbleLogger{logger},
		MemTableSize: uint64(opts.MemtableBytes),
		// Partitions are small and written at random across the whole
		// key space, so every flushed table overlaps all of the level
		// below it, and a compaction of L0 rewrites that level. Letting
		// 16 tables (rather than 4) gather first merges the many versions
		// of hot keys in one pass: the pipelined counter gains about a
		// quarter and its tail shrinks. Point reads pay a bloom filter
		// check per table, and the partition cache answers most of them.
		L0CompactionThreshold: 16,
		L0StopWritesThreshold: 32,
		// Without syncs per commit (fsync no or everysec), the log's
		// pages would stay dirty until the memtable fills, and closing
		// the log then syncs all of them at once while every commit
		// waits. Starting their write-back as the log grows leaves that
		// sync little to do.
		WALBytesPerSync: 512 << 10,
	}
	if events != nil {
		popts.EventListener = &pebble.EventListener{
			WriteStallBegin: events.begin,
			WriteStallEnd:   events.end,
			BackgroundError: events.space.background,
			FlushEnd: func(info pebble.FlushInfo) {
				events.space.flushed(info.Err)
				events.released()
			},
			CompactionEnd: func(info pebble.CompactionInfo) {
				if info.Err == nil {
					events.space.compacted()
				}
				events.released()
			},
		}
		if events.presync != nil {
			popts.EventListener.WALCreated = func(pebble.WALCreateInfo) { events.presync.switched() }
		}
	}
	// Bloom filters answer "no such partition" (a point lookup of its
	// snapshot record) without reading data blocks, at every level: the
	// first write of each new key asks, and most data sits in the lowest
	// level. They cost about 1.25 bytes per record.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	popts.EnsureDefaults()
	return popts
}

// markerFile names the small file that marks a Legion data dir and holds
// its format version, readable without opening pebble. (The format record
// inside pebble is authoritative; backups carry only that one, and the
// marker is rewritten on their first start.)
const markerFile = "LEGION"

func markerText(version int) string {
	return fmt.Sprintf("Legion data dir, format %d. Do not edit; back it up with LEGION.BACKUP.\n", version)
}

// precheck refuses, without writing anything, a data dir that is from a
// newer format, not Legion's, or unreadable. fresh reports a directory
// that is missing or empty.
func precheck(opts Options) (fresh bool, err error) {
	names, err := opts.FS.List(opts.Dir)
	if err != nil {
		if oserror.IsNotExist(err) {
			return true, nil
		}
		return false, classifyOpenError(opts.Dir, err)
	}
	if len(names) == 0 {
		return true, nil
	}
	if f, err := opts.FS.Open(opts.FS.PathJoin(opts.Dir, markerFile)); err == nil {
		b, rerr := io.ReadAll(io.LimitReader(f, 512))
		f.Close()
		if rerr != nil {
			return false, classifyOpenError(opts.Dir, rerr)
		}
		var v int
		if _, err := fmt.Sscanf(string(b), "Legion data dir, format %d.", &v); err != nil {
			return false, fmt.Errorf("%w: %s/%s is damaged: %q", ErrCorrupt, opts.Dir, markerFile, b)
		}
		if v > FormatVersion {
			return false, newerFormat(opts.Dir, uint32(v))
		}
		return false, nil
	} else if !oserror.IsNotExist(err) {
		return false, classifyOpenError(opts.Dir, err)
	}
	// No marker: a backup, or not ours. Look inside without writing.
	ro := opts
	ro.ReadOnly = true
	cache := pebble.NewCache(1 << 20)
	defer cache.Unref()
	db, err := pebble.Open(opts.Dir, pebbleOptions(ro, cache, slog.New(slog.NewTextHandler(io.Discard, nil)), nil))
	if err != nil {
		if strings.Contains(err.Error(), "merger name") {
			return false, fmt.Errorf("%w: %s holds a pebble database of another program", ErrNotLegion, opts.Dir)
		}
		if strings.Contains(err.Error(), "no such file") || strings.Contains(err.Error(), "does not exist") {
			return false, fmt.Errorf("%w: %s holds files but no database", ErrNotLegion, opts.Dir)
		}
		return false, classifyOpenError(opts.Dir, err)
	}
	defer db.Close()
	v, closer, err := db.Get(metaKey("format"))
	if err != nil {
		// A first start that stopped before stamping the format leaves an
		// empty database: that one is ours to use.
		if it, ierr := db.NewIter(nil); ierr == nil {
			empty := !it.First()
			it.Close()
			if empty {
				return true, nil
			}
		}
		return false, fmt.Errorf("%w: %s holds pebble data without a Legion format record", ErrNotLegion, opts.Dir)
	}
	defer closer.Close()
	if len(v) == 4 && binary.BigEndian.Uint32(v) > FormatVersion {
		return false, newerFormat(opts.Dir, binary.BigEndian.Uint32(v))
	}
	return false, nil
}

func newerFormat(dir string, v uint32) error {
	return fmt.Errorf("%w: %s was written by format version %d; this legion-server reads up to %d — upgrade legion-server", ErrNewerFormat, dir, v, FormatVersion)
}

func (s *Store) hasMarker() bool {
	_, err := s.fs.Stat(s.fs.PathJoin(s.dir, markerFile))
	return err == nil
}

// writeMarker writes the marker atomically (a temporary file renamed).
func (s *Store) writeMarker() error {
	tmp := s.fs.PathJoin(s.dir, markerFile+".tmp")
	f, err := s.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("store: writing %s: %w", markerFile, err)
	}
	if _, err := io.WriteString(f, markerText(int(s.format()))); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return s.fs.Rename(tmp, s.fs.PathJoin(s.dir, markerFile))
}

func classifyOpenError(dir string, err error) error {
	switch {
	// The OS reports a held flock as EWOULDBLOCK; pebble's in-memory
	// filesystem reports it in words.
	case errors.Is(err, syscall.EWOULDBLOCK), strings.Contains(err.Error(), "lock held by current process"):
		return fmt.Errorf("%w: %s (is another legion-server running on it?): %v", ErrLocked, dir, err)
	case pebble.IsCorruptionError(err):
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, dir, err)
	}
	return fmt.Errorf("store: open %s: %w", dir, err)
}

// checkFormat stamps a new data dir with its format (s.format()), and an
// older one opened for writing, and refuses one that is from a newer
// version or not Legion's.
func (s *Store) checkFormat(readOnly bool) error {
	v, ok, err := s.GetMeta("format")
	if err != nil {
		return err
	}
	if ok {
		if len(v) != 4 {
			return fmt.Errorf("%w: format record of %d bytes", ErrCorrupt, len(v))
		}
		got := binary.BigEndian.Uint32(v)
		switch {
		case got > FormatVersion:
			return newerFormat(s.dir, got)
		case got > s.format():
			return fmt.Errorf("%w: %s is of format %d on pebble's default comparer", ErrCorrupt, s.dir, got)
		case got < s.format() && !readOnly:
			return s.stampFormat()
		}
		return nil
	}
	empty, err := s.isEmpty()
	if err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("%w: %s holds pebble data without a Legion format record", ErrNotLegion, s.dir)
	}
	if readOnly {
		return nil
	}
	return s.stampFormat()
}

// format returns the format this data dir gets: FormatVersion, or
// formatDefaultComparer on pebble's default comparer.
func (s *Store) format() uint32 {
	if s.splitPartitions {
		return FormatVersion
	}
	return formatDefaultComparer
}

// stampFormat records the data dir's format in the store, durably, and
// in the marker file.
func (s *Store) stampFormat() error {
	b := s.NewBatch()
	defer b.Close()
	b.SetMeta("format", binary.BigEndian.AppendUint32(nil, s.format()))
	if err := b.Commit(); err != nil {
		return err
	}
	s.stamped = true
	return nil
}

func (s *Store) isEmpty() (bool, error) {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return false, err
	}
	defer it.Close()
	return !it.First(), it.Error()
}

func (s *Store) syncLoop(every time.Duration) {
	defer s.stopped.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.syncNow(); err != nil {
				s.failed.fail(err)
			}
		}
	}
}

func (s *Store) syncNow() error {
	if !s.dirty.Swap(false) {
		return nil
	}
	return s.logData()
}

// SetSyncMinInterval changes the least time between the end of one log
// sync and the start of the next (or SyncPaced, SyncUnpaced), from the
// next sync on.
func (s *Store) SetSyncMinInterval(d time.Duration) { s.syncMin.Store(int64(d)) }

// SyncMinInterval returns the least time between log syncs, SyncPaced or
// SyncUnpaced.
func (s *Store) SyncMinInterval() time.Duration { return time.Duration(s.syncMin.Load()) }

// Sync forces every committed write to stable storage.
func (s *Store) Sync() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.failed.check(); err != nil {
		return err
	}
	s.dirty.Store(false)
	if err := s.logData(); err != nil {
		s.failed.fail(err)
		return s.failed.check()
	}
	return nil
}

// logData syncs the log through pebble's commit pipeline.
func (s *Store) logData() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.commitPanicked(r)
		}
	}()
	return s.db.LogData(nil, pebble.Sync)
}

// commitPanicked fails the store after pebble's commit pipeline panicked
// with r (see Batch.recoverCommit) and returns the failure.
func (s *Store) commitPanicked(r any) error {
	perr, ok := r.(error)
	if !ok {
		perr = fmt.Errorf("pebble: commit panicked: %v", r)
	}
	s.wedged.Store(true)
	s.failed.fail(perr)
	return s.failed.check()
}

// SyncMode returns the store's durability mode.
func (s *Store) SyncMode() SyncMode { return s.sync }

// Close syncs and closes the store. It must not be called while other
// calls are in flight.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	s.stopped.Wait()
	s.tagIters.drop()
	if s.wedged.Load() {
		// Pebble's Close would wait for its commit pipeline's lock
		// forever. The process's exit releases the data dir.
		close(s.space.stop)
		s.ring.close()
		s.yields.close()
		s.events.close()
		return fmt.Errorf("store: left open: %w", s.failed.check())
	}
	var err error
	if s.sync != SyncNever && s.failed.check() == nil {
		s.dirty.Store(true)
		if err = s.syncNow(); err != nil {
			s.failed.fail(err)
		}
	}
	if s.failed.check() == nil {
		err = errors.Join(err, s.flushForClose())
	}
	// A flush or compaction held back for want of space stops waiting.
	close(s.space.stop)
	err = errors.Join(err, s.db.Close())
	s.ring.close()
	s.yields.close()
	s.events.close()
	return err
}

// flushForClose flushes the memtables so the next start has no log to
// replay, unless the disk is full or writes are stalled: then the flush
// could not finish, or asking for it would wait for the stall (which a
// full disk makes endless), and the log holds what they hold.
func (s *Store) flushForClose() error {
	if s.space.fullErr() != nil || s.Stalled() {
		s.logger.Warn("closing without flushing the memtables: the disk is full or writes are stalled; the next start replays the log", "dir", s.dir)
		return nil
	}
	done, err := s.db.AsyncFlush()
	if errors.Is(err, pebble.ErrReadOnly) {
		return nil
	}
	if err != nil {
		return err
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if s.space.fullErr() != nil {
			s.logger.Warn("closing without flushing the memtables: the disk is full; the next start replays the log", "dir", s.dir)
			return nil
		}
		select {
		case <-done:
			return nil
		case <-t.C:
		}
	}
}

// NoSpace returns what found the disk full while writes are refused for
// want of space (see ErrNoSpace), else nil. While it is full, it checks
// the free space, at most once per retryInterval.
func (s *Store) NoSpace() error {
	if s.space.fullErr() != nil {
		s.space.probe()
	}
	return s.space.fullErr()
}

// RefusedNoSpace returns how many writes were refused for want of space
// since the store opened.
func (s *Store) RefusedNoSpace() int64 { return s.space.refused.Load() }

// Failed returns ErrLogFailed, with its cause, once the log could not be
// made durable; nil before.
func (s *Store) Failed() error { return s.failed.check() }

// FailedC is closed once the log could not be made durable (see Failed).
func (s *Store) FailedC() <-chan struct{} { return s.failed.done }

// writable returns why a commit must be refused, or nil.
func (s *Store) writable() error {
	if err := s.failed.check(); err != nil {
		return err
	}
	return s.space.check()
}

// committed ends a commit counted in begun. Idle tag iterators are stale
// from now on: close them rather than let them pin memtables and files.
func (s *Store) committed() {
	s.done.Add(1)
	s.tagIters.drop()
}

// TablesThroughRing reports whether the tables' syncs and removals go
// through io_uring (see withYields).
func (s *Store) TablesThroughRing() bool { return s.yields.hasRing() }

// LogDirect reports that the log's syncs are direct writes of whole
// sectors (see directFile).
func (s *Store) LogDirect() bool { return s.ring.directLog() }

// SyncsThroughRing reports whether the log's syncs go through io_uring
// (see syncRing).
func (s *Store) SyncsThroughRing() bool { return s.ring != nil }

// Pebble returns the underlying database, for metrics and checkpoints.
func (s *Store) Pebble() *pebble.DB { return s.db }

// GetMeta reads a node metadata record.
func (s *Store) GetMeta(name string) ([]byte, bool, error) {
	return s.get(metaKey(name))
}

func (s *Store) get(key []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	return out, true, closer.Close()
}

// releaseInterval spaces the returns of free memory to the system.
const releaseInterval = time.Second

// released follows a flush or compaction, which free memtables and block
// buffers: it hands the free memory to the system, at once if the last
// release is a releaseInterval old, else when it is (so the memory freed
// by the last of a burst is returned too).
func (st *engineEvents) released() {
	st.releaseMu.Lock()
	defer st.releaseMu.Unlock()
	if st.closed || st.releaseDue != nil {
		return
	}
	wait := releaseInterval - time.Since(st.lastRelease)
	if wait <= 0 {
		st.releaseNow()
		return
	}
	st.releaseDue = time.AfterFunc(wait, func() {
		st.releaseMu.Lock()
		defer st.releaseMu.Unlock()
		if st.releaseDue != nil && !st.closed {
			st.releaseDue = nil
			st.releaseNow()
		}
	})
}

// releaseNow releases free memory; the caller holds releaseMu.
func (st *engineEvents) releaseNow() {
	releaseFreeMemory()
	st.lastRelease = time.Now()
	st.releases.Add(1)
}

// close cancels a release due; none is made after.
func (st *engineEvents) close() {
	st.releaseMu.Lock()
	defer st.releaseMu.Unlock()
	st.closed = true
	if st.releaseDue != nil {
		st.releaseDue.Stop()
		st.releaseDue = nil
	}
}

// engineEvents follows pebble's events: it counts the times pebble held
// writes back because flushes or compactions fell behind, and for how
// long, and releases free memory after flushes and compactions.
type engineEvents struct {
	logger  *slog.Logger
	space   *spaceGuard
	presync *logPresync // nil with fsync always
	count   atomic.Int64
	nanos   atomic.Int64
	since   atomic.Int64 // start of the stall in progress (UnixNano), 0 if none

	releaseMu   sync.Mutex
	lastRelease time.Time   // guarded by releaseMu
	releaseDue  *time.Timer // a release waiting for the interval; guarded by releaseMu
	closed      bool        // guarded by releaseMu
	releases    atomic.Int64
}

func (st *engineEvents) begin(info pebble.WriteStallBeginInfo) {
	st.count.Add(1)
	st.since.Store(time.Now().UnixNano())
	st.logger.Warn("writes stalled: the storage engine is behind with flushes or compactions", "reason", info.Reason)
}

func (st *engineEvents) end() {
	if since := st.since.Swap(0); since != 0 {
		d := time.Duration(time.Now().UnixNano() - since)
		st.nanos.Add(int64(d))
		st.logger.Info("writes resumed", "stalled", d.Round(time.Microsecond))
	}
}

// LogSyncs returns how many syncs of the write-ahead log pebble had made
// since the store opened, and how long they took in all, as of m (pebble's
// metrics, from its own histogram of them). With fsync always, every
// commit waits for one. Pebble counts a sync just after it releases the
// commits that waited for it, so a count read right after a commit may
// not include that commit's sync yet.
func LogSyncs(m *pebble.Metrics) (count int64, total time.Duration) {
	h := m.LogWriter.FsyncLatency
	if h == nil {
		return 0, 0
	}
	var d dto.Metric
	if err := h.Write(&d); err != nil || d.Histogram == nil {
		return 0, 0
	}
	// Pebble observes nanoseconds.
	return int64(d.Histogram.GetSampleCount()), time.Duration(d.Histogram.GetSampleSum())
}

// WriteStalls returns how many times writes were stalled and for how long
// in all, the stall in progress included.
func (s *Store) WriteStalls() (count int64, total time.Duration) {
	total = time.Duration(s.events.nanos.Load())
	if since := s.events.since.Load(); since != 0 {
		total += time.Duration(max(0, time.Now().UnixNano()-since))
	}
	return s.events.count.Load(), total
}

// Stalled reports whether writes are held back right now because
// flushes or compactions fell behind.
func (s *Store) Stalled() bool { return s.events.since.Load() != 0 }

// pebbleLogger routes pebble's messages to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...interface{}) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Errorf(format string, args ...interface{}) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Fatalf(format string, args ...interface{}) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}
