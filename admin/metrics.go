package admin

import (
	"strconv"
	"time"

	"github.com/legiondb/legion"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are a node's Prometheus collectors, on a registry of their own
// (no global registry).
type Metrics struct {
	reg   *prometheus.Registry
	stats *commandStats
}

// NewMetrics registers the node's collectors. clients reports the number of
// connected clients; it is called at scrape time.
func NewMetrics(db *legion.DB, clients func() int) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), stats: newCommandStats()}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		m.stats,
		// Beyond the defaults, the scheduler's: go_sched_latencies_seconds
		// is how long goroutines waited to run once runnable, the part of
		// a command's latency that is waiting for a CPU.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		counter("legion_events_applied_total", "Events stored.", func() float64 { return float64(db.Stats().EventsApplied) }),
		counter("legion_handler_errors_total", "Handler calls (apply, index, query) that raised an error or hit a limit.", func() float64 { return float64(db.Stats().ScriptErrors) }),
		counter("legion_handler_calls_total", "Handler calls run.", func() float64 { c, _ := db.ScriptUsage(); return float64(c) }),
		counter("legion_handler_instructions_total", "Instruction-budget units used by handler calls (Lua VM instructions plus library work).", func() float64 { _, u := db.ScriptUsage(); return float64(u) }),
		counter("legion_deltas_replayed_total", "Logged deltas refolded while loading partitions.", func() float64 { return float64(db.Stats().DeltasReplayed) }),
		counter("legion_snapshots_written_total", "Partition snapshot records written.", func() float64 { return float64(db.Stats().SnapshotsStored) }),
		gauge("legion_partitions", "Partitions stored.", func() float64 { n, _ := db.PartitionCount(); return float64(n) }),
		gauge("legion_stored_bytes", "Bytes the storage engine uses on disk.", func() float64 { return float64(db.StorageStats().DiskBytes) }),
		counter("legion_write_stalls_total", "Times the storage engine held writes back because flushes or compactions fell behind.", func() float64 { return float64(db.StorageStats().WriteStalls) }),
		counter("legion_write_stall_seconds_total", "Time writes were held back by the storage engine.", func() float64 { return db.StorageStats().WriteStallTime.Seconds() }),
		gauge("legion_disk_full", "1 while writes are refused because the data dir's disk is full, else 0.", func() float64 { return boolFloat(db.StorageStats().DiskFull != nil) }),
		counter("legion_writes_refused_disk_full_total", "Writes refused because the data dir's disk was full.", func() float64 { return float64(db.StorageStats().WritesRefusedDiskFull) }),
		gauge("legion_storage_failed", "1 once the log could not be made durable and every command is refused until a restart, else 0.", func() float64 { return boolFloat(db.StorageStats().Failed != nil) }),
		counter("legion_search_cache_hits_total", "Searches of an exact tag (COUNT up to 256) answered by the search cache.", func() float64 { return float64(db.StorageStats().SearchCacheHits) }),
		counter("legion_search_cache_misses_total", "Searches of an exact tag (COUNT up to 256) the search cache could not answer.", func() float64 { return float64(db.StorageStats().SearchCacheMisses) }),
		counter("legion_state_cache_hits_total", "Handler calls on a state of 512 bytes or more that found its decoded table in the state cache.", func() float64 { return float64(db.Stats().StateCacheHits) }),
		counter("legion_state_cache_misses_total", "Handler calls on a state of 512 bytes or more that had to decode it.", func() float64 { return float64(db.Stats().StateCacheMisses) }),
		gauge("legion_state_cache_bytes", "Estimated memory the state cache holds (on the Go heap).", func() float64 { return float64(db.Stats().StateCacheBytes) }),
		gauge("legion_partition_filter_bytes", "Memory the filter of stored partitions holds (on the Go heap).", func() float64 { return float64(db.StorageStats().PartitionFilterBytes) }),
		gauge("legion_partition_filter_ready", "1 once the filter of stored partitions has scanned the partitions stored at start, else 0.", func() float64 { return boolFloat(db.StorageStats().PartitionFilterReady) }),
		counter("legion_partition_reads_skipped_total", "Reads of partitions the filter of stored partitions answered without the store (the first events of new partitions).", func() float64 { return float64(db.StorageStats().PartitionReadsSkipped) }),
		gauge("legion_connected_clients", "Client connections open.", func() float64 { return float64(clients()) }),
		gauge("legion_partition_cache_bytes", "Bytes the partition cache holds (outside the Go heap but for large partitions).", func() float64 { return float64(db.Stats().CachedBytes) }),
		gauge("legion_partition_cache_entries", "Loaded partitions in the cache.", func() float64 { return float64(db.Stats().CachedEntries) }),
		gauge("legion_reindex_in_progress", "1 while partitions are re-indexed for a new handler.", func() float64 {
			if db.ReindexStatus().Running {
				return 1
			}
			return 0
		}),
		pebbleCollector{db},
	)
	return m
}

// ObserveCommand records one command; resp calls it after every command.
func (m *Metrics) ObserveCommand(command string, d time.Duration, failed bool) {
	m.stats.observe(command, d, failed)
}

// Registry returns the registry the collectors are on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// pebbleCollector exports the storage engine's own metrics at scrape time.
type pebbleCollector struct{ db *legion.DB }

var (
	pebbleDescs = map[string]*prometheus.Desc{
		"wal_bytes":         prometheus.NewDesc("legion_pebble_wal_bytes_written_total", "Bytes written to the write-ahead log.", nil, nil),
		"wal_files":         prometheus.NewDesc("legion_pebble_wal_files", "Live write-ahead log files.", nil, nil),
		"flushes":           prometheus.NewDesc("legion_pebble_flushes_total", "Memtable flushes.", nil, nil),
		"compactions":       prometheus.NewDesc("legion_pebble_compactions_total", "Compactions.", nil, nil),
		"compaction_debt":   prometheus.NewDesc("legion_pebble_compaction_debt_bytes", "Estimated bytes compactions still have to write.", nil, nil),
		"memtable_bytes":    prometheus.NewDesc("legion_pebble_memtable_bytes", "Bytes in memtables.", nil, nil),
		"read_amp":          prometheus.NewDesc("legion_pebble_read_amplification", "Sorted runs a point read may consult.", nil, nil),
		"block_cache_bytes": prometheus.NewDesc("legion_pebble_block_cache_bytes", "Bytes in the block cache.", nil, nil),
		"block_cache_hits":  prometheus.NewDesc("legion_pebble_block_cache_hits_total", "Block cache hits.", nil, nil),
		"block_cache_miss":  prometheus.NewDesc("legion_pebble_block_cache_misses_total", "Block cache misses.", nil, nil),
		"level_files":       prometheus.NewDesc("legion_pebble_level_sstables", "SSTables per LSM level.", []string{"level"}, nil),
		"level_bytes":       prometheus.NewDesc("legion_pebble_level_bytes", "Bytes per LSM level.", []string{"level"}, nil),
		"wal_sync":          prometheus.NewDesc("legion_pebble_wal_sync_seconds", "Time the write-ahead log's syncs took; with fsync always every write waits for one.", nil, nil),
	}
)

// walSyncBuckets are the upper bounds, in seconds, of the buckets
// legion_pebble_wal_sync_seconds reports. Pebble's own histogram has 100
// (every 0.1 ms up to 5 ms, then 50 more up to 10 s); each of these is the
// first of its bounds at or above a bound here, so the counts are exact.
var walSyncBuckets = []float64{0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// walSyncHistogram converts pebble's histogram of the log's syncs (in
// nanoseconds, with fine buckets) to seconds over fewer buckets.
func walSyncHistogram(h *dto.Histogram) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(walSyncBuckets))
	bs := h.GetBucket()
	i := 0
	for _, want := range walSyncBuckets {
		for i < len(bs) && bs[i].GetUpperBound()/1e9 < want*(1-1e-9) {
			i++
		}
		if i == len(bs) {
			break
		}
		buckets[bs[i].GetUpperBound()/1e9] = bs[i].GetCumulativeCount()
	}
	return h.GetSampleCount(), h.GetSampleSum() / 1e9, buckets
}

func (c pebbleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range pebbleDescs {
		ch <- d
	}
}

func (c pebbleCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.db.PebbleMetrics()
	emit := func(name string, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(pebbleDescs[name], t, v, labels...)
	}
	emit("wal_bytes", prometheus.CounterValue, float64(m.WAL.BytesWritten))
	emit("wal_files", prometheus.GaugeValue, float64(m.WAL.Files))
	emit("flushes", prometheus.CounterValue, float64(m.Flush.Count))
	emit("compactions", prometheus.CounterValue, float64(m.Compact.Count))
	emit("compaction_debt", prometheus.GaugeValue, float64(m.Compact.EstimatedDebt))
	emit("memtable_bytes", prometheus.GaugeValue, float64(m.MemTable.Size))
	emit("read_amp", prometheus.GaugeValue, float64(m.ReadAmp()))
	emit("block_cache_bytes", prometheus.GaugeValue, float64(m.BlockCache.Size))
	emit("block_cache_hits", prometheus.CounterValue, float64(m.BlockCache.Hits))
	emit("block_cache_miss", prometheus.CounterValue, float64(m.BlockCache.Misses))
	if h := m.LogWriter.FsyncLatency; h != nil {
		var d dto.Metric
		if err := h.Write(&d); err == nil && d.Histogram != nil {
			count, sum, buckets := walSyncHistogram(d.Histogram)
			ch <- prometheus.MustNewConstHistogram(pebbleDescs["wal_sync"], count, sum, buckets)
		}
	}
	for level := range m.Levels {
		l := strconv.Itoa(level)
		emit("level_files", prometheus.GaugeValue, float64(m.Levels[level].TablesCount), l)
		emit("level_bytes", prometheus.GaugeValue, float64(m.Levels[level].TablesSize), l)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
