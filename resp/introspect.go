package resp

import (
	"fmt"
	"os"
	"path"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"time"
)

// --- COMMAND, generated from the command table ---

// aclCategories derives Redis ACL categories from a command's flags and group.
func (cmd *command) aclCategories() []string {
	var cats []string
	for _, f := range cmd.flags {
		switch f {
		case "write":
			cats = append(cats, "@write")
		case "readonly":
			cats = append(cats, "@read")
		case "admin":
			cats = append(cats, "@admin", "@dangerous")
		}
	}
	if cmd.has("fast") {
		cats = append(cats, "@fast")
	} else {
		cats = append(cats, "@slow")
	}
	switch cmd.group {
	case "connection", "scripting", "server", "keyspace":
		cats = append(cats, "@"+cmd.group)
	case "legion":
		cats = append(cats, "@legion")
	}
	return cats
}

func (cmd *command) has(flag string) bool {
	for _, f := range cmd.flags {
		if f == flag {
			return true
		}
	}
	return false
}

// sortedSubcommands returns a container's subcommands by name.
func (cmd *command) sortedSubcommands() []*command { return byName(cmd.subcommands) }

// byName returns the commands of a table ordered by name.
func byName(table map[string]*command) []*command {
	cmds := make([]*command, 0, len(table))
	for _, cmd := range table {
		cmds = append(cmds, cmd)
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

// writeInfo writes one COMMAND INFO entry (Redis 7 layout).
func (w *writer) commandInfo(cmd *command) {
	w.array(10)
	w.bulkString(cmd.fullName())
	w.integer(int64(cmd.arity))
	w.setHeader(len(cmd.flags))
	for _, f := range cmd.flags {
		w.status(f)
	}
	w.integer(int64(cmd.firstKey))
	w.integer(int64(cmd.lastKey))
	w.integer(int64(cmd.keyStep))
	cats := cmd.aclCategories()
	w.setHeader(len(cats))
	for _, c := range cats {
		w.status(c)
	}
	w.array(0) // tips
	if cmd.firstKey > 0 {
		access := []string{"RO", "ACCESS"}
		if cmd.has("write") {
			access = []string{"RW", "UPDATE"}
		}
		w.array(1)
		w.mapHeader(3)
		w.bulkString("flags")
		w.setHeader(len(access))
		for _, a := range access {
			w.status(a)
		}
		w.bulkString("begin_search")
		w.mapHeader(2)
		w.bulkString("type")
		w.bulkString("index")
		w.bulkString("spec")
		w.mapHeader(1)
		w.bulkString("index")
		w.integer(int64(cmd.firstKey))
		w.bulkString("find_keys")
		w.mapHeader(2)
		w.bulkString("type")
		w.bulkString("range")
		w.bulkString("spec")
		w.mapHeader(3)
		w.bulkString("lastkey")
		w.integer(int64(cmd.lastKey - cmd.firstKey))
		w.bulkString("keystep")
		w.integer(int64(cmd.keyStep))
		w.bulkString("limit")
		w.integer(0)
	} else {
		w.array(0)
	}
	subs := cmd.sortedSubcommands()
	w.array(len(subs))
	for _, sc := range subs {
		w.commandInfo(sc)
	}
}

// commandDocs writes one COMMAND DOCS value.
func (w *writer) commandDocs(cmd *command) {
	n := 3
	if cmd.syntax != "" {
		n++
	}
	subs := cmd.sortedSubcommands()
	if len(subs) > 0 {
		n++
	}
	w.mapHeader(n)
	w.bulkString("summary")
	w.bulkString(cmd.summary)
	w.bulkString("since")
	w.bulkString("0.1.0")
	w.bulkString("group")
	w.bulkString(cmd.group)
	if cmd.syntax != "" {
		w.bulkString("syntax")
		w.bulkString(strings.ToUpper(strings.ReplaceAll(cmd.fullName(), "|", " ")) + " " + cmd.syntax)
	}
	if len(subs) > 0 {
		w.bulkString("subcommands")
		w.mapHeader(len(subs))
		for _, sc := range subs {
			w.bulkString(sc.fullName())
			w.commandDocs(sc)
		}
	}
}

func (s *Server) sortedCommands() []*command { return byName(s.commands) }

// lookup finds a command by its name or "container|sub" full name.
func (s *Server) lookup(name string) *command {
	name = strings.ToLower(name)
	if i := strings.IndexByte(name, '|'); i >= 0 {
		if parent := s.commands[name[:i]]; parent != nil && parent.subcommands != nil {
			return parent.subcommands[name[i+1:]]
		}
		return nil
	}
	return s.commands[name]
}

func cmdCommand(s *Server, c *client, args [][]byte, w *writer) {
	cmds := s.sortedCommands()
	w.array(len(cmds))
	for _, cmd := range cmds {
		w.commandInfo(cmd)
	}
}

func cmdCommandCount(s *Server, c *client, args [][]byte, w *writer) {
	w.integer(int64(len(s.commands)))
}

func cmdCommandInfo(s *Server, c *client, args [][]byte, w *writer) {
	if len(args) == 2 {
		cmdCommand(s, c, args, w)
		return
	}
	w.array(len(args) - 2)
	for _, a := range args[2:] {
		if cmd := s.lookup(string(a)); cmd != nil {
			w.commandInfo(cmd)
		} else {
			w.nullArray()
		}
	}
}

func cmdCommandDocs(s *Server, c *client, args [][]byte, w *writer) {
	var cmds []*command
	if len(args) == 2 {
		cmds = s.sortedCommands()
	} else {
		for _, a := range args[2:] {
			if cmd := s.lookup(string(a)); cmd != nil {
				cmds = append(cmds, cmd)
			}
		}
	}
	w.mapHeader(len(cmds))
	for _, cmd := range cmds {
		w.bulkString(cmd.fullName())
		w.commandDocs(cmd)
	}
}

func cmdCommandList(s *Server, c *client, args [][]byte, w *writer) {
	keep := func(*command) bool { return true }
	if len(args) > 2 {
		if len(args) != 5 || strings.ToUpper(string(args[2])) != "FILTERBY" {
			w.syntaxError()
			return
		}
		v := string(args[4])
		switch strings.ToUpper(string(args[3])) {
		case "MODULE":
			keep = func(*command) bool { return false }
		case "ACLCAT":
			keep = func(cmd *command) bool {
				for _, cat := range cmd.aclCategories() {
					if strings.EqualFold(cat, "@"+v) {
						return true
					}
				}
				return false
			}
		case "PATTERN":
			keep = func(cmd *command) bool { return globMatch(strings.ToLower(v), cmd.fullName()) }
		default:
			w.syntaxError()
			return
		}
	}
	var names []string
	for _, cmd := range s.sortedCommands() {
		if keep(cmd) {
			names = append(names, cmd.fullName())
		}
		for _, sc := range cmd.sortedSubcommands() {
			if keep(sc) {
				names = append(names, sc.fullName())
			}
		}
	}
	w.array(len(names))
	for _, n := range names {
		w.bulkString(n)
	}
}

// keyArgs returns the key arguments of a command line per the table.
func (cmd *command) keyArgs(args [][]byte) [][]byte {
	if cmd.firstKey <= 0 || cmd.firstKey >= len(args) {
		return nil
	}
	last := cmd.lastKey
	if last < 0 {
		last = len(args) + last
	}
	var keys [][]byte
	for i := cmd.firstKey; i <= last && i < len(args); i += cmd.keyStep {
		keys = append(keys, args[i])
	}
	return keys
}

func cmdCommandGetKeys(s *Server, c *client, args [][]byte, w *writer) {
	line := args[2:]
	cmd := s.commands[strings.ToLower(string(line[0]))]
	if cmd != nil && cmd.subcommands != nil && len(line) > 1 {
		cmd = cmd.subcommands[strings.ToLower(string(line[1]))]
	}
	if cmd == nil {
		w.errorLine("ERR Invalid command specified")
		return
	}
	if !cmd.arityOK(len(line)) {
		w.errorLine("ERR Invalid number of arguments specified for command")
		return
	}
	keys := cmd.keyArgs(line)
	if len(keys) == 0 {
		w.errorLine("ERR The command has no key arguments")
		return
	}
	w.array(len(keys))
	for _, k := range keys {
		w.bulk(k)
	}
}

// globMatch matches Redis-style glob patterns (*, ?, [...], \x).
func globMatch(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}

// --- INFO ---

var defaultInfoSections = []string{"server", "clients", "memory", "persistence", "stats", "replication", "cpu", "keyspace", "legion"}

func cmdInfo(s *Server, c *client, args [][]byte, w *writer) {
	want := map[string]bool{}
	for _, a := range args[1:] {
		sec := strings.ToLower(string(a))
		switch sec {
		case "all", "everything", "default":
			for _, d := range defaultInfoSections {
				want[d] = true
			}
		default:
			want[sec] = true
		}
	}
	if len(want) == 0 {
		for _, d := range defaultInfoSections {
			want[d] = true
		}
	}
	var b strings.Builder
	for _, sec := range defaultInfoSections {
		if !want[sec] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		s.infoSection(&b, sec)
	}
	w.verbatim(b.String())
}

func (s *Server) infoSection(b *strings.Builder, sec string) {
	kv := func(k string, v any) { fmt.Fprintf(b, "%s:%v\r\n", k, v) }
	switch sec {
	case "server":
		b.WriteString("# Server\r\n")
		kv("redis_version", "7.2.0")
		kv("legion_version", s.cfg.Version)
		kv("redis_mode", "standalone")
		kv("os", runtime.GOOS+" "+runtime.GOARCH)
		kv("arch_bits", strconv.IntSize)
		kv("go_version", runtime.Version())
		kv("process_id", os.Getpid())
		kv("run_id", s.runID)
		kv("node_id", s.db.NodeID())
		kv("tcp_port", s.cfg.Port)
		s.lnMu.Lock()
		loops := len(s.loops)
		s.lnMu.Unlock()
		if loops > 0 {
			kv("multiplexing_api", "epoll")
		} else {
			kv("multiplexing_api", "goroutines")
		}
		kv("event_loops", loops)
		up := time.Since(s.started)
		kv("server_time_usec", time.Now().UnixMicro())
		kv("uptime_in_seconds", int64(up.Seconds()))
		kv("uptime_in_days", int64(up.Hours()/24))
		if exe, err := os.Executable(); err == nil {
			kv("executable", exe)
		}
	case "clients":
		b.WriteString("# Clients\r\n")
		s.clientsMu.Lock()
		n := len(s.clients)
		s.clientsMu.Unlock()
		kv("connected_clients", n)
		// Served by a goroutine of their own: every client without event
		// loops, and those that left their loop for a command that waits.
		kv("goroutine_clients", s.ownGoroutines.Load())
		kv("maxclients", s.maxClients.Load())
		kv("blocked_clients", 0)
	case "memory":
		b.WriteString("# Memory\r\n")
		heap, total := goMemory()
		kv("used_memory", heap)
		kv("used_memory_human", human(heap))
		kv("used_memory_runtime", total)
		rss := processRSS()
		kv("used_memory_rss", rss)
		kv("used_memory_rss_human", human(rss))
		st := s.db.Stats()
		kv("partition_cache_bytes", st.CachedBytes)
		kv("state_cache_bytes", st.StateCacheBytes)
		ss := s.db.StorageStats()
		kv("storage_memtable_bytes", ss.MemtableBytes)
		kv("storage_block_cache_bytes", ss.BlockCacheBytes)
		kv("search_cache_bytes", ss.SearchCacheBytes)
		kv("partition_filter_bytes", ss.PartitionFilterBytes)
		kv("maxmemory", 0)
		kv("maxmemory_policy", "noeviction")
	case "persistence":
		b.WriteString("# Persistence\r\n")
		ss := s.db.StorageStats()
		kv("loading", 0)
		kv("async_loading", 0)
		kv("storage_engine", "pebble")
		kv("fsync", ss.Fsync.String())
		kv("log_sync_io_uring", boolInt(ss.LogSyncsIOUring))
		kv("log_direct_io", boolInt(ss.LogDirectIO))
		kv("table_io_uring", boolInt(ss.TablesIOUring))
		kv("log_syncs", ss.LogSyncs)
		kv("log_sync_usec", ss.LogSyncTime.Microseconds())
		perSync := 0.0
		if ss.LogSyncs > 0 {
			perSync = float64(ss.LogSyncTime.Microseconds()) / float64(ss.LogSyncs)
		}
		kv("log_sync_usec_per_sync", strconv.FormatFloat(perSync, 'f', 2, 64))
		kv("log_presyncs", ss.LogPresyncs)
		kv("in_memory", boolInt(ss.InMemory))
		if !ss.InMemory {
			kv("data_dir", ss.DataDir)
		}
		kv("disk_bytes", ss.DiskBytes)
		kv("disk_human", human(ss.DiskBytes))
		kv("disk_full", boolInt(ss.DiskFull != nil))
		if ss.DiskFull != nil {
			kv("disk_full_reason", sanitize(ss.DiskFull.Error()))
		}
		kv("writes_refused_disk_full", ss.WritesRefusedDiskFull)
		kv("storage_failed", boolInt(ss.Failed != nil))
		kv("aof_enabled", 0)
		kv("rdb_changes_since_last_save", 0)
	case "stats":
		b.WriteString("# Stats\r\n")
		kv("total_connections_received", s.stats.connections.Load())
		kv("total_commands_processed", s.stats.commands.Load())
		kv("rejected_connections", s.stats.rejected.Load())
		kv("total_error_replies", s.stats.errors.Load())
		ss := s.db.StorageStats()
		kv("search_cache_hits", ss.SearchCacheHits)
		kv("search_cache_misses", ss.SearchCacheMisses)
		st := s.db.Stats()
		kv("state_cache_hits", st.StateCacheHits)
		kv("state_cache_misses", st.StateCacheMisses)
	case "replication":
		b.WriteString("# Replication\r\n")
		kv("role", "master")
		kv("connected_slaves", 0)
	case "cpu":
		b.WriteString("# CPU\r\n")
		kv("goroutines", runtime.NumGoroutine())
		kv("gomaxprocs", runtime.GOMAXPROCS(0))
	case "keyspace":
		b.WriteString("# Keyspace\r\n")
		if n, err := s.db.PartitionCount(); err == nil && n > 0 {
			fmt.Fprintf(b, "db0:keys=%d,expires=0,avg_ttl=0\r\n", n)
		}
	case "legion":
		b.WriteString("# Legion\r\n")
		active := s.db.ActiveHandler()
		kv("active_handler", active)
		n, _ := s.db.PartitionCount()
		kv("partitions", n)
		st := s.db.Stats()
		kv("events_applied", st.EventsApplied)
		kv("script_errors", st.ScriptErrors)
		kv("deltas_replayed", st.DeltasReplayed)
		kv("snapshots_stored", st.SnapshotsStored)
		kv("cached_partitions", st.CachedEntries)
		kv("cached_partition_bytes", st.CachedBytes)
		ss := s.db.StorageStats()
		kv("partition_filter_ready", boolInt(ss.PartitionFilterReady))
		kv("partition_reads_skipped", ss.PartitionReadsSkipped)
		ri := s.db.ReindexStatus()
		kv("reindex_in_progress", boolInt(ri.Running))
		kv("reindex_target", ri.Target)
		kv("reindex_total", ri.Total)
		kv("reindex_scanned", ri.Scanned)
		kv("reindex_updated", ri.Updated)
		kv("reindex_errors", ri.Errors)
		kv("reindex_completed", ri.Passes)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// goMemory returns the live heap and all memory the Go runtime holds.
func goMemory() (heap, total uint64) {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(samples)
	var v [3]uint64
	for i, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	// Released memory is mapped but returned to the system.
	return v[0], v[1] - min(v[2], v[1])
}

// processRSS reads the resident set size from /proc (0 where unavailable).
func processRSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

func human(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.2fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
