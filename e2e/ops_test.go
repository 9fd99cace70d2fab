package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/legiondb/legion/store"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/redis/go-redis/v9"
)

func httpGet(t *testing.T, rawURL string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestAdminHTTP scrapes /metrics with Prometheus's own text parser and
// reads the health endpoints and the JSON API.
func TestAdminHTTP(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.client(t)
	loadScript(t, c, counterLua(t))
	waitPartitionFilter(t, c) // the first events of m0..m4 skip the store
	for i := 0; i < 25; i++ {
		c.Do(ctx(t), "LEGION.APPLY", fmt.Sprintf("m%d", i%5), "incr")
	}
	c.Do(ctx(t), "LEGION.APPLY", "m0", "bogus")
	c.Do(ctx(t), "NOSUCH")
	// The same first page twice: read from storage, then from the cache.
	for range 2 {
		if n, err := c.Do(ctx(t), "LEGION.SEARCH", "count:5", "EXACT").Slice(); err != nil || len(n) != 5 {
			t.Fatalf("search count:5 = %v %v", n, err)
		}
	}
	if info, err := c.Info(ctx(t), "stats").Result(); err != nil || !strings.Contains(info, "search_cache_hits:1\r\n") || !strings.Contains(info, "search_cache_misses:1\r\n") {
		t.Fatalf("INFO stats = %q (%v), want one search cache hit and one miss", info, err)
	}
	base := "http://" + s.Admin

	if code, body := httpGet(t, base+"/healthz"); code != 200 || string(body) != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, body := httpGet(t, base+"/readyz"); code != 200 || string(body) != "ready\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}

	code, body := httpGet(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	var parser expfmt.TextParser
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v", err)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := families[name]
		if f == nil {
			t.Fatalf("/metrics lacks %s", name)
		}
	next:
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.Counter.GetValue()
			case dto.MetricType_GAUGE:
				return m.Gauge.GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		t.Fatalf("/metrics has no %s with %v", name, labels)
		return 0
	}
	if v := value("legion_commands_total", map[string]string{"command": "legion.apply", "result": "ok"}); v != 25 {
		t.Errorf("apply ok count = %v", v)
	}
	if v := value("legion_commands_total", map[string]string{"command": "legion.apply", "result": "error"}); v != 1 {
		t.Errorf("apply error count = %v", v)
	}
	if v := value("legion_commands_total", map[string]string{"command": "unknown", "result": "error"}); v != 1 {
		t.Errorf("unknown command count = %v", v)
	}
	if v := value("legion_command_duration_seconds", map[string]string{"command": "legion.apply"}); v != 26 {
		t.Errorf("apply latency samples = %v", v)
	}
	for name, want := range map[string]float64{"legion_partitions": 5, "legion_events_applied_total": 25, "legion_handler_errors_total": 1} {
		if v := value(name, nil); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	for _, name := range []string{"legion_handler_instructions_total", "legion_handler_calls_total", "legion_stored_bytes", "legion_pebble_wal_bytes_written_total", "legion_partition_filter_bytes"} {
		if v := value(name, nil); v <= 0 {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	for name, want := range map[string]float64{"legion_search_cache_hits_total": 1, "legion_search_cache_misses_total": 1,
		"legion_partition_filter_ready": 1, "legion_partition_reads_skipped_total": 5} {
		if v := value(name, nil); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if v := value("legion_connected_clients", nil); v < 1 {
		t.Errorf("connected clients = %v", v)
	}
	// With fsync always (the default), each of the 26 unpipelined writes
	// waited for a sync of its own; INFO counts the same syncs.
	syncs := value("legion_pebble_wal_sync_seconds", nil)
	if syncs < 26 {
		t.Errorf("legion_pebble_wal_sync_seconds has %v samples, want at least 26", syncs)
	}
	if info := c.Info(ctx(t), "persistence").Val(); !strings.Contains(info, fmt.Sprintf("log_syncs:%d\r\n", int64(syncs))) {
		t.Errorf("INFO persistence does not count the %v syncs /metrics does:\n%s", syncs, info)
	}
	for _, name := range []string{"legion_pebble_level_sstables", "legion_pebble_block_cache_hits_total", "go_goroutines", "go_sched_latencies_seconds", "process_resident_memory_bytes"} {
		if families[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	var info map[string]any
	_, body = httpGet(t, base+"/api/v1/info")
	if err := json.Unmarshal(body, &info); err != nil || info["partitions"] != float64(5) || info["node_id"] == "" || info["ready"] != true {
		t.Fatalf("/api/v1/info = %s (%v)", body, err)
	}
	code, body = httpGet(t, base+"/api/v1/partitions/"+url.PathEscape("m1"))
	if code != 200 || !strings.Contains(string(body), `"state":{"count":5}`) {
		t.Fatalf("/api/v1/partitions/m1 = %d %s", code, body)
	}
	if code, _ := httpGet(t, base+"/api/v1/partitions/nothing"); code != 404 {
		t.Fatalf("missing partition = %d", code)
	}
	var hits []map[string]string
	_, body = httpGet(t, base+"/api/v1/search?tag=count:5&exact=true&count=3")
	if err := json.Unmarshal(body, &hits); err != nil || len(hits) != 3 || hits[0]["key"] != "m0" || hits[0]["tag"] != "count:5" {
		t.Fatalf("/api/v1/search = %s (%v)", body, err)
	}
	if code, _ := httpGet(t, base+"/api/v1/search?tag=x&count=0"); code != 400 {
		t.Fatalf("bad count = %d", code)
	}
	if code, body := httpGet(t, base+"/"); code != 200 || !strings.Contains(string(body), "Legion node") {
		t.Fatalf("dashboard = %d", code)
	}
}

func TestSlowlog(t *testing.T) {
	s := startServer(t, "", "--slowlog-log-slower-than", "0", "--slowlog-max-len", "5")
	c := s.client(t, func(o *redis.Options) { o.ClientName = "slowpoke" })
	c.Do(ctx(t), "SLOWLOG", "RESET")
	c.Do(ctx(t), "ECHO", strings.Repeat("x", 300))
	args := []any{"LEGION.SEARCH"}
	for i := 0; i < 40; i++ {
		args = append(args, "a")
	}
	c.Do(ctx(t), args...)
	entries, err := c.SlowLogGet(ctx(t), -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 { // RESET, ECHO, SEARCH: newest first
		t.Fatalf("SLOWLOG GET = %+v", entries)
	}
	search, echo := entries[0], entries[1]
	// As Redis: 31 arguments, then how many more there were.
	if len(search.Args) != 32 || search.Args[31] != "... (10 more arguments)" {
		t.Fatalf("long argument list: %q", search.Args)
	}
	if echo.Args[1] != strings.Repeat("x", 128)+"... (172 more bytes)" || echo.ClientName != "slowpoke" {
		t.Fatalf("long argument: %+v", echo)
	}
	if search.ID <= echo.ID {
		t.Fatalf("ids not increasing: %d %d", echo.ID, search.ID)
	}
	for i := 0; i < 10; i++ {
		c.Ping(ctx(t))
	}
	if n, _ := c.Do(ctx(t), "SLOWLOG", "LEN").Int64(); n != 5 {
		t.Fatalf("SLOWLOG LEN after max-len = %d", n)
	}
	if err := c.ConfigSet(ctx(t), "slowlog-log-slower-than", "-1").Err(); err != nil {
		t.Fatal(err)
	}
	c.Do(ctx(t), "SLOWLOG", "RESET")
	c.Ping(ctx(t))
	if n, _ := c.Do(ctx(t), "SLOWLOG", "LEN").Int64(); n != 0 {
		t.Fatalf("SLOWLOG LEN with the log off = %d", n)
	}
}

// TestGracefulShutdown: SIGTERM under load finishes what is in flight,
// exits 0, and loses nothing acknowledged.
func TestGracefulShutdown(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.client(t)
	loadScript(t, c, counterLua(t))
	var acked [20]int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				k := (w*7 + i) % 20
				if err := c.Do(context.Background(), "LEGION.APPLY", fmt.Sprintf("g%d", k), "incr").Err(); err != nil {
					return
				}
				mu.Lock()
				acked[k]++
				mu.Unlock()
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	s.stop(syscall.SIGTERM)
	wg.Wait()
	if code := s.exitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, s.Log())
	}
	if d := time.Since(start); d > time.Minute { // bounded, generously: CI machines are slow
		t.Fatalf("shutdown took %v", d)
	}
	if !strings.Contains(s.Log(), "shutdown complete") {
		t.Fatalf("no clean shutdown in the log:\n%s", s.Log())
	}
	s.start()
	c = s.client(t)
	for k := 0; k < 20; k++ {
		var n int64
		v, _ := c.Do(ctx(t), "LEGION.GET", fmt.Sprintf("g%d", k)).Text()
		fmt.Sscanf(v, `{"count":%d}`, &n)
		if n < acked[k] || n > acked[k]+8 {
			t.Fatalf("g%d = %d after a graceful restart, %d acknowledged", k, n, acked[k])
		}
	}
	// A clean shutdown compacts every log: nothing to replay.
	if info, _ := c.Info(ctx(t), "legion").Result(); !strings.Contains(info, "deltas_replayed:0") {
		t.Fatalf("replayed after a clean shutdown:\n%s", info)
	}
}

// dirDigest hashes every file of a directory, to show nothing was written.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %x\n", strings.TrimPrefix(p, dir), sha256.Sum256(b))
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

// startFailure runs legion-server expecting it to refuse to start.
func startFailure(t *testing.T, wrap []string, args ...string) string {
	t.Helper()
	argv := append(append(append([]string(nil), wrap...), serverBin, "--port", "0", "--admin-port", "-1"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("legion-server %v did not refuse to start", args)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("legion-server %v: %v (want exit code 1)\n%s", args, err, out)
	}
	return string(out)
}

func TestStartupFailures(t *testing.T) {
	// Locked by a running server.
	dir := filepath.Join(t.TempDir(), "data")
	running := startServer(t, dir)
	before := dirDigest(t, dir)
	if out := startFailure(t, nil, "--data-dir", dir); !strings.Contains(out, "locked by another process") || !strings.Contains(out, "another legion-server") {
		t.Errorf("locked dir: %s", out)
	}
	running.stop(syscall.SIGTERM)
	_ = before

	// From a newer format version.
	st, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	b := st.NewBatch()
	b.SetMeta("format", []byte{0, 0, 0, 99})
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	st.Close()
	// A newer Legion marks the dir as its own format too.
	if err := os.WriteFile(filepath.Join(dir, "LEGION"), []byte("Legion data dir, format 99. Do not edit.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before = dirDigest(t, dir)
	if out := startFailure(t, nil, "--data-dir", dir); !strings.Contains(out, "newer format") || !strings.Contains(out, "upgrade legion-server") {
		t.Errorf("newer format: %s", out)
	}
	if dirDigest(t, dir) != before {
		t.Error("a refused start changed the data dir")
	}

	// Pebble data that is not Legion's.
	foreign := filepath.Join(t.TempDir(), "foreign")
	db, err := pebble.Open(foreign, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Set([]byte("someone"), []byte("else's"), pebble.Sync)
	db.Close()
	before = dirDigest(t, foreign)
	if out := startFailure(t, nil, "--data-dir", foreign); !strings.Contains(out, "not a Legion data dir") {
		t.Errorf("foreign dir: %s", out)
	}
	if dirDigest(t, foreign) != before {
		t.Error("a refused start changed the foreign dir")
	}

	// A corrupt data dir: a damaged MANIFEST.
	corrupt := filepath.Join(t.TempDir(), "corrupt")
	s := startServer(t, corrupt)
	c := s.client(t)
	loadScript(t, c, counterLua(t))
	c.Do(ctx(t), "LEGION.APPLY", "k", "incr")
	s.stop(syscall.SIGTERM)
	manifests, _ := filepath.Glob(filepath.Join(corrupt, "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no MANIFEST to damage")
	}
	for _, m := range manifests {
		data, _ := os.ReadFile(m)
		for i := 8; i < len(data); i += 7 {
			data[i] ^= 0x5A
		}
		os.WriteFile(m, data, 0o644)
	}
	before = dirDigest(t, corrupt)
	if out := startFailure(t, nil, "--data-dir", corrupt); !strings.Contains(out, "corrupt") || !strings.Contains(out, "backup") {
		t.Errorf("corrupt dir: %s", out)
	}
	if dirDigest(t, corrupt) != before {
		t.Error("a refused start changed the corrupt dir")
	}

	// Not a directory.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o644)
	if out := startFailure(t, nil, "--data-dir", file); !strings.Contains(out, "not a directory") {
		t.Errorf("file as data dir: %s", out)
	}

	// Unreadable: a root-only directory, opened by an unprivileged user.
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("setpriv"); err == nil {
			private := filepath.Join(t.TempDir(), "private")
			os.Mkdir(private, 0o700)
			os.Chmod(filepath.Dir(private), 0o755)
			wrap := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}
			if out := startFailure(t, wrap, "--data-dir", filepath.Join(private, "data")); !strings.Contains(out, "permission denied") || !strings.Contains(out, "may read and write it") {
				t.Errorf("unreadable dir: %s", out)
			}
		}
	}
}

// TestBackupRestore takes a backup while clients write, then starts a
// second server on the backup: it serves a consistent state, and after the
// traffic stops a second backup serves exactly what the live node has.
func TestBackupRestore(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.client(t)
	sha := loadScript(t, c, counterLua(t))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c.Do(context.Background(), "LEGION.APPLY", fmt.Sprintf("b%d", (w+i)%30), "incr")
			}
		}(w)
	}
	time.Sleep(200 * time.Millisecond)
	during := filepath.Join(t.TempDir(), "during")
	if err := c.Do(ctx(t), "LEGION.BACKUP", during).Err(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := c.Do(ctx(t), "LEGION.BACKUP", during).Err(); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("backup over an existing dir: %v", err)
	}

	// The backup taken under traffic is consistent: states and index agree,
	// and no counter is ahead of the live one.
	b := startServer(t, during)
	bc := b.client(t)
	count := func(c *redis.Client, key string) int64 {
		var n int64
		v, _ := c.Do(ctx(t), "LEGION.GET", key).Text()
		fmt.Sscanf(v, `{"count":%d}`, &n)
		return n
	}
	for i := 0; i < 30; i++ {
		got, now := count(bc, fmt.Sprintf("b%d", i)), count(c, fmt.Sprintf("b%d", i))
		if got > now {
			t.Fatalf("b%d is %d in the backup, %d live", i, got, now)
		}
		hits, _ := bc.Do(ctx(t), "LEGION.SEARCH", fmt.Sprintf("count:%d", got), "EXACT", "COUNT", 100).Slice()
		if got > 0 && !containsHit(hits, fmt.Sprintf("count:%d", got), fmt.Sprintf("b%d", i)) {
			t.Fatalf("backup index does not match b%d = %d", i, got)
		}
	}
	if rep := checkReport(t, bc, false); rep["tag_mismatches"] != 0 || rep["index_missing"] != 0 || rep["index_orphans"] != 0 || rep["decode_errors"] != 0 {
		t.Fatalf("LEGION.CHECK of the backup: %v", rep)
	}
	b.stop(syscall.SIGTERM)

	// A backup of the quiet node serves exactly the same.
	after := filepath.Join(t.TempDir(), "after")
	if err := c.Do(ctx(t), "LEGION.BACKUP", after).Err(); err != nil {
		t.Fatal(err)
	}
	b2 := startServer(t, after)
	bc2 := b2.client(t)
	for i := 0; i < 30; i++ {
		key := fmt.Sprintf("b%d", i)
		live, _ := c.Do(ctx(t), "LEGION.INSPECT", key).Text()
		restored, _ := bc2.Do(ctx(t), "LEGION.INSPECT", key).Text()
		if live != restored || live == "" {
			t.Fatalf("%s restored as\n%s\nlive\n%s", key, restored, live)
		}
	}
	liveIndex, _ := c.Do(ctx(t), "LEGION.SEARCH", "", "COUNT", 100000).Slice()
	restoredIndex, _ := bc2.Do(ctx(t), "LEGION.SEARCH", "", "COUNT", 100000).Slice()
	if fmt.Sprint(liveIndex) != fmt.Sprint(restoredIndex) {
		t.Fatalf("restored index differs:\n%v\n%v", restoredIndex, liveIndex)
	}
	if ex, _ := bc2.Do(ctx(t), "SCRIPT", "EXISTS", sha).Slice(); fmt.Sprint(ex) != "[1]" {
		t.Fatal("the handler is not in the backup")
	}
	if n, err := bc2.Do(ctx(t), "LEGION.APPLY", "b0", "incr").Int64(); err != nil || n < 2 {
		t.Fatalf("the active handler is not active in the backup: %d %v", n, err)
	}
	// Backups of an in-memory node are refused.
	m := startServer(t, "")
	if err := m.client(t).Do(ctx(t), "LEGION.BACKUP", filepath.Join(t.TempDir(), "x")).Err(); err == nil || !strings.Contains(err.Error(), "in-memory") {
		t.Fatalf("backup of an in-memory node: %v", err)
	}
}

func checkReport(t *testing.T, c *redis.Client, repair bool) map[string]int64 {
	t.Helper()
	args := []any{"LEGION.CHECK"}
	if repair {
		args = append(args, "REPAIR")
	}
	res, err := c.Do(ctx(t), args...).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	add := func(k, v any) {
		if n, ok := v.(int64); ok {
			out[k.(string)] = n
		}
	}
	switch r := res.(type) {
	case map[any]any:
		for k, v := range r {
			add(k, v)
		}
	case []any:
		for i := 0; i+1 < len(r); i += 2 {
			add(r[i], r[i+1])
		}
	}
	return out
}

// TestCheckRepair damages the index and a state on disk, and checks that
// LEGION.CHECK finds each problem and REPAIR fixes the index.
func TestCheckRepair(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	c := s.client(t)
	loadScript(t, c, counterLua(t))
	for i := 0; i < 50; i++ {
		c.Do(ctx(t), "LEGION.APPLY", fmt.Sprintf("c%d", i), "incr")
	}
	if rep := checkReport(t, c, false); rep["partitions"] != 50 || rep["index_missing"]+rep["index_orphans"]+rep["tag_mismatches"]+rep["decode_errors"] != 0 {
		t.Fatalf("check of a healthy node: %v", rep)
	}
	s.stop(syscall.SIGTERM)

	st, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// c9's snapshot keeps its tags but gets a state that does not decode.
	c9 := []byte("c9")
	tags, ok, err := st.PartitionTags(store.Slot(c9), c9)
	if err != nil || !ok {
		t.Fatalf("c9's tags: %v %v", ok, err)
	}
	b := st.NewBatch()
	b.DeleteTag([]byte("count:1"), []byte("c3")) // a missing record
	b.DeleteTag([]byte("count:1"), []byte("c4")) // another
	b.PutTag([]byte("count:77"), []byte("c5"))   // an orphan
	b.PutTag([]byte("count:1"), []byte("ghost")) // an orphan of no partition
	b.PutSnapshot(store.Slot(c9), c9, append(store.AppendSnapshotTags(nil, tags), "\x02garbage"...))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	st.Close()

	s.start()
	c = s.client(t)
	rep := checkReport(t, c, false)
	if rep["partitions"] != 50 || rep["index_missing"] != 2 || rep["index_orphans"] != 2 || rep["decode_errors"] != 1 || rep["repaired"] != 0 {
		t.Fatalf("check of the damaged node: %v", rep)
	}
	if err := c.Do(ctx(t), "LEGION.GET", "c9").Err(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("reading the damaged state: %v", err)
	}
	rep = checkReport(t, c, true)
	if rep["repaired"] < 4 {
		t.Fatalf("repair: %v", rep)
	}
	rep = checkReport(t, c, false)
	if rep["index_missing"] != 0 || rep["index_orphans"] != 0 || rep["decode_errors"] != 1 {
		t.Fatalf("check after repair: %v", rep)
	}
	hits, _ := c.Do(ctx(t), "LEGION.SEARCH", "count:1", "EXACT", "COUNT", 1000).Slice()
	// REPAIR fixes the index, not states: the damaged c9 keeps the index
	// record its tags name, and the check still reports its state.
	if len(hits) != 50 {
		t.Fatalf("count:1 after repair has %d records", len(hits))
	}
	if err := c.Do(ctx(t), "LEGION.CHECK", "FIX").Err(); err == nil || err.Error() != "ERR syntax error" {
		t.Fatalf("LEGION.CHECK FIX: %v", err)
	}
}

// TestKill9UniqueEvents sends events with unique tokens and kills the
// server at random moments: after each restart every acknowledged token is
// stored exactly once, nothing unsent appears, and the index agrees.
func TestKill9UniqueEvents(t *testing.T) {
	rounds := 4
	if testing.Short() {
		rounds = 1
	}
	s := startServer(t, t.TempDir(), "--fsync", "always")
	loadScript(t, s.client(t), `
function apply(event, state, ctx)
  state = state or { tokens = {} }
  state.tokens[#state.tokens + 1] = event
  return #state.tokens, state
end
function index(state, key) return { "len:" .. #state.tokens } end`)
	const keys, workers = 12, 12
	seed := time.Now().UnixNano()
	r := rand.New(rand.NewSource(seed))
	acked := map[string]bool{}
	sent := map[string]bool{}
	var mu sync.Mutex
	for round := 0; round < rounds; round++ {
		c := s.client(t)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				if w%2 == 1 {
					// Pipelines of 16: the server syncs once for all of
					// them before any reply, so all are acknowledged together.
					for i := 0; ; i += 16 {
						p := c.Pipeline()
						var toks []string
						for j := i; j < i+16; j++ {
							tok := fmt.Sprintf("r%dw%di%d", round, w, j)
							toks = append(toks, tok)
							p.Do(context.Background(), "LEGION.APPLY", fmt.Sprintf("u%d", (w+j)%keys), tok)
						}
						mu.Lock()
						for _, tok := range toks {
							sent[tok] = true
						}
						mu.Unlock()
						if _, err := p.Exec(context.Background()); err != nil {
							return
						}
						mu.Lock()
						for _, tok := range toks {
							acked[tok] = true
						}
						mu.Unlock()
					}
				}
				for i := 0; ; i++ {
					tok := fmt.Sprintf("r%dw%di%d", round, w, i)
					mu.Lock()
					sent[tok] = true
					mu.Unlock()
					if err := c.Do(context.Background(), "LEGION.APPLY", fmt.Sprintf("u%d", (w+i)%keys), tok).Err(); err != nil {
						return
					}
					mu.Lock()
					acked[tok] = true
					mu.Unlock()
				}
			}(w)
		}
		time.Sleep(time.Duration(100+r.Intn(900)) * time.Millisecond)
		s.stop(syscall.SIGKILL)
		wg.Wait()
		c.Close()

		s.start()
		c = s.client(t)
		seen := map[string]bool{}
		lens := map[string]string{}
		for k := 0; k < keys; k++ {
			key := fmt.Sprintf("u%d", k)
			v, err := c.Do(ctx(t), "LEGION.GET", key).Text()
			if errors.Is(err, redis.Nil) {
				continue
			}
			var st struct{ Tokens []string }
			if err := json.Unmarshal([]byte(v), &st); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			for _, tok := range st.Tokens {
				if seen[tok] {
					t.Fatalf("seed %d round %d: %s stored twice", seed, round, tok)
				}
				if !sent[tok] {
					t.Fatalf("seed %d round %d: %s was never sent", seed, round, tok)
				}
				seen[tok] = true
			}
			lens[key] = fmt.Sprintf("len:%d", len(st.Tokens))
		}
		var lost []string
		for tok := range acked {
			if !seen[tok] {
				lost = append(lost, tok)
			}
		}
		if len(lost) > 0 {
			sort.Strings(lost)
			t.Fatalf("seed %d round %d: %d acknowledged events lost, e.g. %v", seed, round, len(lost), lost[:min(5, len(lost))])
		}
		res, _ := c.Do(ctx(t), "LEGION.SEARCH", "len:", "COUNT", 100000).Slice()
		index := map[string]string{}
		for _, x := range res {
			p := x.([]any)
			index[p[1].(string)] = p[0].(string)
		}
		if fmt.Sprint(index) != fmt.Sprint(lens) {
			t.Fatalf("seed %d round %d: index %v, states %v", seed, round, index, lens)
		}
		// From now on, only what survived counts as sent.
		mu.Lock()
		sent, acked = seen, map[string]bool{}
		for tok := range seen {
			acked[tok] = true
		}
		mu.Unlock()
		t.Logf("round %d: %d events survive", round, len(seen))
	}
}

// infoField returns the value of field in an INFO reply, or "".
// waitPartitionFilter waits until the server's partition filter has
// scanned the partitions stored when it started, so that the reads after
// it trust the filter's answers.
func waitPartitionFilter(t testing.TB, c *redis.Client) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		info, err := c.Info(ctx(t), "legion").Result()
		if err != nil {
			t.Fatal(err)
		}
		if infoField(info, "partition_filter_ready") == "1" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the partition filter is not ready a minute after the start:\n%s", info)
		}
	}
}

func infoField(info, field string) string {
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return v
		}
	}
	return ""
}

// TestLogSyncPath: with fsync always on disk the log syncs through
// io_uring, and in every mode the tables sync and are removed through
// io_uring, unless --io-uring no, or the kernel refuses io_uring (which
// the log then says); INFO tells which, and acknowledged events are there
// after a restart either way.
func TestLogSyncPath(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		ring   bool // whether the log's ring is wanted
		direct bool // whether the log's direct writes are wanted (with its ring)
		tables bool // whether the tables' ring is wanted
		always bool // fsync always
	}{
		{nil, true, true, true, true},
		{[]string{"--log-direct-io", "no"}, true, false, true, true},
		{[]string{"--io-uring", "no"}, false, false, false, true},
		{[]string{"--fsync", "no"}, false, false, true, false},
	} {
		s := startServer(t, t.TempDir(), tc.args...)
		c := s.client(t)
		loadScript(t, c, counterLua(t))
		for range 5 {
			if err := c.Do(ctx(t), "LEGION.APPLY", "k", "incr").Err(); err != nil {
				t.Fatal(err)
			}
		}
		info := c.Info(ctx(t), "persistence").Val()
		// Direct writes of the log go through its ring: where the kernel
		// refuses one, there are none either.
		ringRefused := strings.Contains(s.Log(), "the log syncs with plain system calls")
		for _, r := range []struct {
			field, refusal string
			wanted         bool
		}{
			{"log_sync_io_uring", "the log syncs with plain system calls", tc.ring},
			{"log_direct_io", "the log syncs through the page cache, not with direct writes", tc.direct && !ringRefused},
			{"table_io_uring", "the tables sync and are removed with plain system calls", tc.tables},
		} {
			// The log says the kernel refused a ring exactly when one was
			// wanted, and INFO says it is used exactly when it was
			// wanted and not refused.
			refused := strings.Contains(s.Log(), r.refusal)
			if refused && !r.wanted {
				t.Fatalf("%v: the log says io_uring was refused for %s, which was not to use it", tc.args, r.field)
			}
			want := r.field + ":0"
			if r.wanted && !refused {
				want = r.field + ":1"
			}
			if !strings.Contains(info, want+"\r\n") {
				t.Fatalf("%v: INFO persistence lacks %q (io_uring refused: %v):\n%s", tc.args, want, refused, info)
			}
		}
		// Each unpipelined write of fsync always waited for a sync of its
		// own, which INFO counts and times (pebble counts a sync just
		// after the writes it covers return: the last may lag a moment);
		// with fsync no none syncs.
		syncs, _ := strconv.Atoi(infoField(info, "log_syncs"))
		usec, _ := strconv.Atoi(infoField(info, "log_sync_usec"))
		for deadline := time.Now().Add(10 * time.Second); tc.always && syncs < 5 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
			info = c.Info(ctx(t), "persistence").Val()
			syncs, _ = strconv.Atoi(infoField(info, "log_syncs"))
			usec, _ = strconv.Atoi(infoField(info, "log_sync_usec"))
		}
		if tc.always && (syncs < 5 || usec <= 0) || !tc.always && (syncs != 0 || usec != 0) {
			t.Fatalf("%v: log_syncs:%d log_sync_usec:%d after 5 writes\n%s", tc.args, syncs, usec, info)
		}
		// Nor does the first log get presyncs.
		if !strings.Contains(info, "log_presyncs:0\r\n") {
			t.Fatalf("%v: INFO persistence lacks log_presyncs:0 after 5 writes:\n%s", tc.args, info)
		}
		s.restart(syscall.SIGTERM)
		if got := s.client(t).Do(ctx(t), "LEGION.GET", "k").Val(); got != `{"count":5}` {
			t.Fatalf("%v: after a restart: %v", tc.args, got)
		}
	}
}

// TestLogPresyncs: with fsync no and everysec, a server writing through
// several logs syncs each in the background before pebble switches to the
// next (INFO persistence: log_presyncs, among log_syncs); with fsync
// always it has no need to. Every event is there after a restart.
func TestLogPresyncs(t *testing.T) {
	for _, mode := range []string{"no", "everysec", "always"} {
		t.Run(mode, func(t *testing.T) {
			s := startServer(t, t.TempDir(), "--fsync", mode, "--memtable-size", "1mb")
			c := s.client(t, func(o *redis.Options) { o.ReadTimeout = 30 * time.Second })
			loadScript(t, c, counterLua(t))
			const keys, events = 5000, 100000
			for sent := 0; sent < events; {
				p := c.Pipeline()
				for range 1000 {
					p.Do(ctx(t), "LEGION.APPLY", fmt.Sprintf("k%d", sent%keys), "incr")
					sent++
				}
				if _, err := p.Exec(ctx(t)); err != nil {
					t.Fatal(err)
				}
			}
			info := c.Info(ctx(t), "persistence").Val()
			presyncs, err := strconv.Atoi(infoField(info, "log_presyncs"))
			if err != nil {
				t.Fatalf("log_presyncs: %v\n%s", err, info)
			}
			syncs, _ := strconv.Atoi(infoField(info, "log_syncs"))
			if mode == "always" && presyncs != 0 || mode != "always" && (presyncs == 0 || syncs < presyncs) {
				t.Fatalf("fsync %s: log_presyncs:%d log_syncs:%d after %d events\n%s", mode, presyncs, syncs, events, info)
			}
			t.Logf("fsync %s: log_presyncs:%d log_syncs:%d", mode, presyncs, syncs)
			s.restart(syscall.SIGTERM)
			// Every read after the restart loads its partition from the
			// store, which under the race detector on a busy machine takes
			// near a millisecond: pipelines of 500, each given 30 s (go-redis
			// sets one deadline for all of a pipeline's replies).
			c = s.client(t, func(o *redis.Options) { o.ReadTimeout = 30 * time.Second })
			waitPartitionFilter(t, c) // the reads below go through it
			gets := make([]*redis.Cmd, keys)
			for i := 0; i < keys; i += 500 {
				p := c.Pipeline()
				for j := i; j < i+500; j++ {
					gets[j] = p.Do(ctx(t), "LEGION.GET", fmt.Sprintf("k%d", j))
				}
				if _, err := p.Exec(ctx(t)); err != nil {
					t.Fatal(err)
				}
			}
			for i, g := range gets {
				if want := fmt.Sprintf(`{"count":%d}`, events/keys); g.Val() != want {
					t.Fatalf("k%d after a restart: %v, want %s", i, g.Val(), want)
				}
			}
		})
	}
}
