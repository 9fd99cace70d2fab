// Package admin serves a node's operator HTTP interface: /healthz and
// /readyz for orchestrators, /metrics for Prometheus, a JSON API
// (/api/v1/info, /api/v1/partitions/{key}, /api/v1/search) and a small
// dashboard at /.
package admin

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/legiondb/legion"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures a Server.
type Config struct {
	// Logger receives request failures. Default: discard.
	Logger *slog.Logger
	// Clients reports the connected RESP clients.
	Clients func() int
	// ClientAddr is the RESP address, shown by /api/v1/info.
	ClientAddr string
}

// Server is the admin HTTP server of one node.
type Server struct {
	db      *legion.DB
	metrics *Metrics
	cfg     Config
	logger  *slog.Logger
	http    *http.Server
	started time.Time
	ready   atomic.Bool
}

//go:embed dashboard.html
var dashboard []byte

// New returns the admin server of db.
func New(db *legion.DB, m *Metrics, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Clients == nil {
		cfg.Clients = func() int { return 0 }
	}
	s := &Server{db: db, metrics: m, cfg: cfg, logger: cfg.Logger, started: time.Now()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /api/v1/info", s.info)
	mux.HandleFunc("GET /api/v1/partitions/{key...}", s.partition)
	mux.HandleFunc("GET /api/v1/search", s.search)
	// Go's profiler, for operators chasing CPU or memory (go tool pprof).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(dashboard)
	})
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return s
}

// SetReady says whether the node serves clients (/readyz).
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Serve serves HTTP on ln until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server, letting requests in flight finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "not ready\n")
		return
	}
	io.WriteString(w, "ready\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, status int, err error) {
	if status >= 500 {
		s.logger.Error("admin request failed", "err", err)
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	n, err := s.db.PartitionCount()
	if err != nil {
		s.fail(w, http.StatusInternalServerError, err)
		return
	}
	st := s.db.Stats()
	ss := s.db.StorageStats()
	calls, units := s.db.ScriptUsage()
	ri := s.db.ReindexStatus()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	writeJSON(w, http.StatusOK, map[string]any{
		"version":        legion.Version,
		"node_id":        s.db.NodeID(),
		"client_addr":    s.cfg.ClientAddr,
		"uptime_seconds": int64(time.Since(s.started).Seconds()),
		"ready":          s.ready.Load(),
		"clients":        s.cfg.Clients(),
		"partitions":     n,
		"active_handler": s.db.ActiveHandler(),
		"events_applied": st.EventsApplied,
		"handler": map[string]any{
			"calls": calls, "instructions": units, "errors": st.ScriptErrors,
		},
		"storage": map[string]any{
			"fsync": ss.Fsync.String(), "data_dir": ss.DataDir, "in_memory": ss.InMemory, "disk_bytes": ss.DiskBytes,
		},
		"cache": map[string]any{"bytes": st.CachedBytes, "partitions": st.CachedEntries},
		"reindex": map[string]any{
			"running": ri.Running, "target": ri.Target, "total": ri.Total, "scanned": ri.Scanned,
			"updated": ri.Updated, "errors": ri.Errors, "completed": ri.Passes,
		},
		"memory": map[string]any{"heap_bytes": ms.HeapAlloc, "sys_bytes": ms.Sys},
	})
}

func (s *Server) partition(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	doc, ok, err := s.db.Inspect([]byte(key))
	switch {
	case errors.Is(err, legion.ErrKeySize):
		s.fail(w, http.StatusBadRequest, err)
	case err != nil:
		s.fail(w, http.StatusInternalServerError, err)
	case !ok:
		s.fail(w, http.StatusNotFound, errors.New("no such partition"))
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	}
}

func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sq := legion.SearchQuery{Tag: []byte(q.Get("tag"))}
	if after, ok := q["after"]; ok {
		sq.After, sq.AfterKey = true, []byte(after[0])
	}
	if c := q.Get("count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 || n > 100000 {
			s.fail(w, http.StatusBadRequest, errors.New("count must be an integer from 1 to 100000"))
			return
		}
		sq.Count = n
	}
	switch q.Get("exact") {
	case "", "0", "false":
	case "1", "true":
		sq.Exact = true
	default:
		s.fail(w, http.StatusBadRequest, errors.New("exact must be true or false"))
		return
	}
	hits, err := s.db.Search(sq)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, err)
		return
	}
	type hit struct {
		Tag string `json:"tag"`
		Key string `json:"key"`
	}
	out := make([]hit, 0, len(hits))
	for _, h := range hits {
		out = append(out, hit{string(h.Tag), string(h.Key)})
	}
	writeJSON(w, http.StatusOK, out)
}
