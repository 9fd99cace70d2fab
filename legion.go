// Package legion is the embeddable Legion runtime: a database whose data
// model is a Lua handler. Every partition key holds one state; Apply runs
// the handler's apply(event, state, ctx) next to the data and stores the
// new state durably in pebble together with the tags its index(state, key)
// names; Search scrolls the global tag index.
//
// The legion-server command serves a DB over the Redis protocol; a Go
// program can also use it directly:
//
//	db, err := legion.Open(legion.DefaultConfig())
//	sha, err := db.LoadScript(src)
//	out, err := db.Apply(ctx, []byte("key"), []byte("event"), legion.Consistent)
package legion

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/legiondb/legion/crdt"
	"github.com/legiondb/legion/scripting"
	"github.com/legiondb/legion/store"
)

var (
	// ErrNoHandler is returned by Apply, DryRun and Query before any
	// handler was loaded.
	ErrNoHandler = errors.New("legion: no handler loaded; load one with SCRIPT LOAD")
	// ErrClosed is returned by calls on a DB that is closing or closed.
	ErrClosed = errors.New("legion: database closed")
	// ErrBadSHA reports a malformed handler SHA.
	ErrBadSHA = errors.New("legion: malformed handler SHA (want 40 hex digits)")
	// ErrUnknownHandler reports a handler SHA that is not stored.
	ErrUnknownHandler = errors.New("legion: no such handler")
	// ErrKeySize reports a key over MaxKeyBytes.
	ErrKeySize = errors.New("legion: key too large")
	// ErrCorrupt reports stored data that does not decode.
	ErrCorrupt = errors.New("legion: corrupt stored data")
	// ErrNoSpace is returned by writes refused because the data dir's
	// disk is full (a flush or compaction could not write its table).
	// Reads go on, and writes are taken again once space is freed.
	ErrNoSpace = store.ErrNoSpace
	// ErrStorageFailed is returned by every call once the log could not
	// be written or synced: what was applied since may be visible without
	// being durable. Reopening the data dir recovers exactly what the log
	// holds.
	ErrStorageFailed = store.ErrLogFailed
)

// MaxKeyBytes bounds partition keys.
const MaxKeyBytes = 64 << 10

// FsyncMode says when an acknowledged write is on stable storage.
type FsyncMode = store.SyncMode

// The fsync modes.
const (
	FsyncAlways   = store.SyncAlways
	FsyncEverySec = store.SyncEverySecond
	FsyncNo       = store.SyncNever
)

// Config configures a DB. Open fills zero fields with defaults and never
// modifies the caller's Config.
type Config struct {
	// DataDir is the directory of the node's pebble database and metadata.
	// Default "./legion-data".
	DataDir string
	// InMemory keeps everything in pebble's in-memory filesystem: fast,
	// and nothing survives Close.
	InMemory bool
	// FS, if set, is the filesystem to use instead (tests inject faults
	// with it); it overrides InMemory.
	FS vfs.FS
	// Fsync is the durability of acknowledged writes. Default FsyncAlways.
	Fsync FsyncMode
	// NodeID names this node in power states. Empty means: the one stored
	// in the data dir, or a new random one for a new data dir. A NodeID
	// that differs from the stored one is an error.
	NodeID string
	// Limits bound what a handler may do; zero fields take the defaults of
	// scripting.DefaultLimits.
	Limits scripting.Limits
	// CacheBytes bounds the cache of loaded partitions, which lives
	// outside the Go heap. Default 32 MiB (about 250,000 small
	// partitions).
	CacheBytes int64
	// BlockCacheBytes is pebble's block cache. Default 32 MiB.
	BlockCacheBytes int64
	// MemtableBytes is the most a pebble memtable grows to (it starts
	// small and doubles). Writes collect there until it is flushed to a
	// table; a larger one absorbs more overwrites of the same keys and
	// compacts less, at the cost of up to twice this much memory (one
	// memtable filling, one flushing or kept for reuse). Default 8 MiB;
	// from 1 MiB to 1 GiB.
	MemtableBytes int64
	// FsyncMinInterval, with FsyncAlways, is the least time from the end
	// of one sync to the start of the next, so that more commits share
	// each: fewer syncs cost less CPU under many concurrent writers, but a
	// lone writer waits up to this long more per write. At most 10ms.
	// FsyncPaced (0, the default) holds a sync back 100µs only after a
	// sync of a large group (48 entries or more: many writers, or long
	// pipelines); FsyncUnpaced syncs as soon as a commit asks.
	FsyncMinInterval time.Duration
	// NoIOUring makes plain system calls of what on Linux otherwise goes
	// through io_uring, where the waiting goroutine parks instead of
	// blocking a thread (see store.syncRing): the log's syncs with
	// FsyncAlways, and the tables' syncs and removals. Where the kernel
	// refuses io_uring the calls are plain anyway.
	NoIOUring bool
	// NoLogDirectIO, with FsyncAlways and io_uring, writes the log
	// through the page cache and syncs it with fdatasync. Otherwise a
	// sync of the log is one direct write (O_DIRECT|O_DSYNC) of the
	// sectors holding the bytes written since the last one, where the
	// file system allows it: a lone writer's sync then writes 512 bytes
	// or a few sectors, not a 4 KiB page.
	NoLogDirectIO bool
	// SearchCacheBytes bounds the cache of pages of exact tags (on the Go
	// heap): the first page of a tag, and a page after a key once it has
	// been read twice; such a search is answered from it while no write has
	// changed the tag since. Default 4 MiB; negative disables it.
	SearchCacheBytes int64
	// StateCacheBytes bounds the cache of decoded states (Lua tables, on
	// the Go heap) of partitions whose state encodes to 512 bytes or more:
	// an event or query on such a state just written or read uses the
	// table instead of decoding the state again. It never changes what a
	// handler sees: a table is kept only if it is exactly what a decode
	// would build. Default 32 MiB; negative disables it.
	StateCacheBytes int64
	// Logger receives the DB's messages. Default: discard.
	Logger *slog.Logger
	// Now is the clock that stamps accepted events (ctx.time). Default
	// time.Now. Only acceptance reads it; replays use the stamped time.
	Now func() time.Time
}

// DefaultConfig returns the configuration legion-server starts with.
func DefaultConfig() Config {
	return Config{
		DataDir:          "./legion-data",
		Fsync:            FsyncAlways,
		Limits:           scripting.DefaultLimits(),
		CacheBytes:       32 << 20,
		BlockCacheBytes:  32 << 20,
		MemtableBytes:    8 << 20,
		SearchCacheBytes: 4 << 20,
		StateCacheBytes:  32 << 20,
	}
}

// withDefaults returns a copy of c with zero fields defaulted.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	orDefault(&c.DataDir, d.DataDir)
	c.Limits = mergeLimits(c.Limits, d.Limits)
	orDefault(&c.CacheBytes, d.CacheBytes)
	orDefault(&c.BlockCacheBytes, d.BlockCacheBytes)
	orDefault(&c.MemtableBytes, d.MemtableBytes)
	orDefault(&c.SearchCacheBytes, d.SearchCacheBytes)
	orDefault(&c.StateCacheBytes, d.StateCacheBytes)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// mergeLimits fills the zero fields of l from d.
func mergeLimits(l, d scripting.Limits) scripting.Limits {
	orDefault(&l.InstructionBudget, d.InstructionBudget)
	orDefault(&l.Timeout, d.Timeout)
	orDefault(&l.MaxCallDepth, d.MaxCallDepth)
	orDefault(&l.MaxStringBytes, d.MaxStringBytes)
	orDefault(&l.MaxStateBytes, d.MaxStateBytes)
	orDefault(&l.MaxOutputBytes, d.MaxOutputBytes)
	orDefault(&l.MaxEventBytes, d.MaxEventBytes)
	orDefault(&l.MaxTags, d.MaxTags)
	orDefault(&l.MaxTagBytes, d.MaxTagBytes)
	orDefault(&l.MaxMemoryBytes, d.MaxMemoryBytes)
	return l
}

// orDefault sets *v to d if *v is the zero value.
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Validate reports the first invalid field of c (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	switch c.Fsync {
	case FsyncAlways, FsyncEverySec, FsyncNo:
	default:
		return fmt.Errorf("legion: invalid fsync mode %d", c.Fsync)
	}
	if c.CacheBytes < 0 || c.BlockCacheBytes < 0 {
		return errors.New("legion: cache sizes must not be negative")
	}
	if c.MemtableBytes != 0 && (c.MemtableBytes < 1<<20 || c.MemtableBytes > 1<<30) {
		return fmt.Errorf("legion: memtable size %d is out of range (1 MiB to 1 GiB)", c.MemtableBytes)
	}
	if err := checkFsyncMinInterval(c.FsyncMinInterval); err != nil {
		return err
	}
	if len(c.NodeID) > 255 {
		return errors.New("legion: node id longer than 255 bytes")
	}
	return c.Limits.Validate()
}

// lockStripes is the number of per-key mutexes: commands on one key run one
// at a time; different keys rarely share a stripe. A stripe is held across
// the storage commit, where a writer may queue behind others, so a shared
// stripe costs a whole commit's wait: 64Ki stripes (512 KiB) keep that
// rare with thousands of writes in flight.
const lockStripes = 1 << 16

// DB is an open Legion database. All methods are safe for concurrent use.
type DB struct {
	cfg    Config
	logger *slog.Logger
	store  *store.Store
	engine *scripting.Engine
	self   crdt.NodeID

	handlers handlerRegistry
	cache    *partitionCache
	reindex  reindexer

	seed  maphash.Seed
	locks [lockStripes]sync.Mutex
	// scratches holds the *scratch buffers of batches not running, so an
	// unpipelined write does not grow new ones.
	scratches sync.Pool

	// inflight counts calls between enter and leave; Close waits for it
	// after setting closing.
	inflight sync.WaitGroup
	closing  atomic.Bool
	closeMu  sync.RWMutex // Close holds it to set closing; enter reads under it, so no call enters after Close waits

	stats stats
}

// stats are monotonically increasing counters for INFO and metrics.
type stats struct {
	applied      atomic.Int64 // events stored
	scriptErrors atomic.Int64 // apply/index/query calls that raised errors
	replayed     atomic.Int64 // deltas refolded while loading partitions
	snapshots    atomic.Int64 // snapshot records written
}

// Open opens (creating if needed) the database described by cfg.
func Open(cfg Config) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	fs := cfg.FS
	if fs == nil && cfg.InMemory {
		fs = vfs.NewMem()
	}
	st, err := store.Open(store.Options{
		Dir:             cfg.DataDir,
		FS:              fs,
		Sync:            cfg.Fsync,
		CacheBytes:      cfg.BlockCacheBytes,
		MemtableBytes:   cfg.MemtableBytes,
		SyncMinInterval: cfg.FsyncMinInterval,
		TagPageBytes:    cfg.SearchCacheBytes,
		Logger:          cfg.Logger,
		NoIOUring:       cfg.NoIOUring,
		NoDirectLog:     cfg.NoLogDirectIO,
	})
	if err != nil {
		return nil, err
	}
	db := &DB{
		cfg:    cfg,
		logger: cfg.Logger,
		store:  st,
		engine: scripting.NewEngine(cfg.Limits),
		seed:   maphash.MakeSeed(),
		cache:  newPartitionCache(cfg.CacheBytes),
	}
	db.engine.SetStateCache(cfg.StateCacheBytes)
	db.handlers.init()
	if err := db.openNode(); err != nil {
		db.engine.Close()
		st.Close()
		return nil, err
	}
	db.cache.known = []crdt.NodeID{db.self}
	if err := db.loadActiveHandler(); err != nil {
		db.engine.Close()
		st.Close()
		return nil, err
	}
	db.reindex.start(db)
	// Resume a re-index that a restart interrupted (run returns at once
	// if the last one finished for the active handler).
	db.reindex.wake()
	return db, nil
}

// openNode reads or creates the persistent node id.
func (db *DB) openNode() error {
	stored, ok, err := db.store.GetMeta("node-id")
	if err != nil {
		return err
	}
	switch {
	case ok && db.cfg.NodeID != "" && string(stored) != db.cfg.NodeID:
		return fmt.Errorf("legion: data dir %s belongs to node %q, not %q", db.cfg.DataDir, stored, db.cfg.NodeID)
	case ok:
		db.self = crdt.NodeID(stored)
		return nil
	}
	id := db.cfg.NodeID
	if id == "" {
		var b [10]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id = hex.EncodeToString(b[:])
	}
	b := db.store.NewBatch()
	defer b.Close()
	b.SetMeta("node-id", []byte(id))
	if err := b.Commit(); err != nil {
		return err
	}
	db.self = crdt.NodeID(id)
	return nil
}

// NodeID returns this node's id.
func (db *DB) NodeID() string { return string(db.self) }

// enter registers an in-flight call; it fails once Close has begun.
func (db *DB) enter() error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closing.Load() {
		return ErrClosed
	}
	if err := db.store.Failed(); err != nil {
		return err
	}
	db.inflight.Add(1)
	return nil
}

func (db *DB) leave() { db.inflight.Done() }

// Close waits for in-flight calls, writes snapshots of partitions whose
// logs are not yet compacted, and closes the store. Calls made after Close
// begins return ErrClosed.
func (db *DB) Close() error {
	db.closeMu.Lock()
	if db.closing.Swap(true) {
		db.closeMu.Unlock()
		return nil
	}
	db.closeMu.Unlock()
	db.inflight.Wait()
	db.reindex.close()
	err := db.compactCached()
	db.cache.close()
	db.engine.Close()
	return errors.Join(err, db.store.Close())
}

// stripe returns the index of key's lock stripe.
func (db *DB) stripe(key []byte) uint32 {
	return uint32(maphash.Bytes(db.seed, key) % lockStripes)
}

// lockKey locks the stripe of key and returns its unlock.
func (db *DB) lockKey(key []byte) *sync.Mutex {
	mu := &db.locks[db.stripe(key)]
	mu.Lock()
	return mu
}

func checkKey(key []byte) error {
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrKeySize, len(key), MaxKeyBytes)
	}
	return nil
}

// Slot returns the hash slot of key (CRC16 mod 16384 with Redis Cluster's
// {hashtag} rule).
func Slot(key []byte) uint16 { return store.Slot(key) }

// PartitionCount returns the number of partitions stored.
func (db *DB) PartitionCount() (int64, error) {
	if err := db.enter(); err != nil {
		return 0, err
	}
	defer db.leave()
	return db.store.PartitionCount()
}

// Mode is how long Apply waits before answering.
type Mode int

const (
	// Consistent answers with the event's final output, once every
	// participant of the partition has it. On one node this is immediate.
	Consistent Mode = iota
	// Fast answers with the output computed on the accepting replica's
	// projected state once the event is durable there.
	Fast
)

// Output is a handler's return value in Legion's canonical value encoding.
type Output []byte

// AppendRESP appends the output as one RESP reply, converted by Redis's
// Lua rules (RESP3 forms when resp3 is true).
func (o Output) AppendRESP(dst []byte, resp3 bool) ([]byte, error) {
	return scripting.AppendRESP(dst, o, resp3)
}

// JSON returns the output as JSON text.
func (o Output) JSON() ([]byte, error) { return scripting.AppendJSON(nil, o) }

// Stats is a snapshot of the DB's counters.
type Stats struct {
	EventsApplied   int64
	ScriptErrors    int64
	DeltasReplayed  int64
	SnapshotsStored int64
	CachedBytes     int64
	CachedEntries   int
	// StateCacheHits and StateCacheMisses count the handler calls on a
	// state of 512 bytes or more that found its decoded table in the
	// state cache, and that did not; StateCacheBytes estimates what the
	// cache holds.
	StateCacheHits, StateCacheMisses, StateCacheBytes int64
}

// Stats returns the DB's counters.
func (db *DB) Stats() Stats {
	bytes, entries := db.cache.usage()
	sc := db.engine.StateCacheStats()
	return Stats{
		StateCacheHits:   sc.Hits,
		StateCacheMisses: sc.Misses,
		StateCacheBytes:  sc.Bytes,
		EventsApplied:    db.stats.applied.Load(),
		ScriptErrors:     db.stats.scriptErrors.Load(),
		DeltasReplayed:   db.stats.replayed.Load(),
		SnapshotsStored:  db.stats.snapshots.Load(),
		CachedBytes:      bytes,
		CachedEntries:    entries,
	}
}

// StorageStats describes the node's stored data.
type StorageStats struct {
	DiskBytes uint64 // bytes used by pebble on disk (or in memory)
	Fsync     FsyncMode
	DataDir   string
	InMemory  bool
	// LogSyncsIOUring reports that the log's syncs go through io_uring.
	LogSyncsIOUring bool
	// LogDirectIO reports that a sync of the log is a direct write of
	// the sectors written since the last one (see Config.NoLogDirectIO).
	LogDirectIO bool
	// TablesIOUring reports that the tables' syncs and removals go
	// through io_uring.
	TablesIOUring bool
	// WriteStalls counts the times the storage engine held writes back
	// because flushes or compactions fell behind; WriteStallTime is how
	// long in all.
	WriteStalls    int64
	WriteStallTime time.Duration
	// LogSyncs counts the syncs of the write-ahead log since the node
	// started, and LogSyncTime is how long they took in all. With fsync
	// always every write waits for one (shared by the writes that
	// gathered meanwhile), so a sync's time bounds how fast a client that
	// waits for each reply can go.
	LogSyncs    int64
	LogSyncTime time.Duration
	// LogPresyncs counts the syncs of the log made in the background,
	// with fsync no or everysec, as it neared the size at which pebble
	// switches to a new log (they are among LogSyncs too).
	LogPresyncs int64
	// PartitionFilterBytes is the memory of the filter that tells new
	// partitions from stored ones without a read of the store;
	// PartitionFilterReady reports that it has scanned the partitions
	// stored when the node started (until then a new partition's first
	// event reads the store), and PartitionReadsSkipped counts the reads
	// of partitions it answered.
	PartitionFilterBytes  int64
	PartitionFilterReady  bool
	PartitionReadsSkipped uint64
	// MemtableBytes and BlockCacheBytes are the memory pebble holds
	// outside the Go heap: its memtables and its cache of blocks.
	MemtableBytes   uint64
	BlockCacheBytes int64
	// SearchCacheHits and SearchCacheMisses count the searches of an
	// exact tag (COUNT up to 256) that the search cache answered and that
	// it could not; SearchCacheBytes is what it holds.
	SearchCacheHits, SearchCacheMisses, SearchCacheBytes int64
	// DiskFull is what found the disk full while writes are refused for
	// want of space (ErrNoSpace), else nil; WritesRefusedDiskFull counts
	// the writes refused so since the node started.
	DiskFull              error
	WritesRefusedDiskFull int64
	// Failed is ErrStorageFailed, with its cause, once the log could not
	// be made durable, else nil.
	Failed error
}

// StorageStats returns the node's storage figures.
func (db *DB) StorageStats() StorageStats {
	stalls, stallTime := db.store.WriteStalls()
	m := db.store.Pebble().Metrics()
	hits, misses, cached := db.store.TagPageStats()
	syncs, syncTime := store.LogSyncs(m)
	filterBytes, filterReady, skipped := db.store.PartitionFilterStats()
	return StorageStats{
		PartitionFilterBytes:  filterBytes,
		PartitionFilterReady:  filterReady,
		PartitionReadsSkipped: skipped,
		LogSyncs:              syncs,
		LogSyncTime:           syncTime,
		LogPresyncs:           db.store.LogPresyncs(),
		SearchCacheHits:       hits,
		SearchCacheMisses:     misses,
		SearchCacheBytes:      cached,
		WriteStalls:           stalls,
		WriteStallTime:        stallTime,
		MemtableBytes:         m.MemTable.Size,
		BlockCacheBytes:       m.BlockCache.Size,
		DiskBytes:             m.DiskSpaceUsage(),
		Fsync:                 db.cfg.Fsync,
		DataDir:               db.cfg.DataDir,
		InMemory:              db.cfg.InMemory || db.cfg.FS != nil,
		LogSyncsIOUring:       db.store.SyncsThroughRing(),
		LogDirectIO:           db.store.LogDirect(),
		TablesIOUring:         db.store.TablesThroughRing(),
		DiskFull:              db.store.NoSpace(),
		WritesRefusedDiskFull: db.store.RefusedNoSpace(),
		Failed:                db.store.Failed(),
	}
}

// StorageFailed is closed once the log could not be made durable: from
// then on every call returns ErrStorageFailed, and reopening the data
// dir recovers exactly what the log holds.
func (db *DB) StorageFailed() <-chan struct{} { return db.store.FailedC() }

// WritesStalled reports whether writes are held back right now because
// the storage engine fell behind with flushes or compactions: a write
// started now may wait until it catches up.
func (db *DB) WritesStalled() bool { return db.store.Stalled() }

// Limits returns the handler limits in force.
func (db *DB) Limits() scripting.Limits { return db.engine.Limits() }

// Values of Config.FsyncMinInterval besides an interval.
const (
	FsyncPaced   = store.SyncPaced   // space syncs after large groups only
	FsyncUnpaced = store.SyncUnpaced // sync as soon as a commit asks
)

// MaxFsyncMinInterval bounds Config.FsyncMinInterval.
const MaxFsyncMinInterval = 10 * time.Millisecond

func checkFsyncMinInterval(d time.Duration) error {
	if d != FsyncUnpaced && (d < 0 || d > MaxFsyncMinInterval) {
		return fmt.Errorf("legion: fsync min interval %v is out of range (auto, off, or up to 10ms)", d)
	}
	return nil
}

// ParseFsyncMinInterval reads a FsyncMinInterval as written in settings:
// "auto" (FsyncPaced), "off" or "0" (FsyncUnpaced), or a duration such as
// "250us" or "2ms".
func ParseFsyncMinInterval(v string) (time.Duration, error) {
	switch v = strings.ToLower(strings.TrimSpace(v)); v {
	case "auto":
		return FsyncPaced, nil
	case "off":
		return FsyncUnpaced, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("want auto, off or a duration such as 100us, got %q", v)
	}
	if d == 0 {
		return FsyncUnpaced, nil
	}
	return d, checkFsyncMinInterval(d)
}

// FormatFsyncMinInterval writes d as ParseFsyncMinInterval reads it.
func FormatFsyncMinInterval(d time.Duration) string {
	switch {
	case d == FsyncPaced:
		return "auto"
	case d < 0:
		return "off"
	case d%time.Millisecond == 0:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	return strconv.FormatInt(d.Microseconds(), 10) + "us"
}

// FsyncMinInterval returns the least time between syncs (see
// Config.FsyncMinInterval).
func (db *DB) FsyncMinInterval() time.Duration { return db.store.SyncMinInterval() }

// SetFsyncMinInterval changes the least time between syncs, from the next
// sync on.
func (db *DB) SetFsyncMinInterval(d time.Duration) error {
	if err := checkFsyncMinInterval(d); err != nil {
		return err
	}
	db.store.SetSyncMinInterval(d)
	return nil
}

// SetLimits changes the handler limits for calls that start afterwards.
// Deterministic limits (instruction budget, sizes, depth) decide what an
// event does on replay: every replica of a partition must use the same.
func (db *DB) SetLimits(l scripting.Limits) error { return db.engine.SetLimits(l) }
