// Package server runs a legion-server process: it opens the DB, serves it
// over RESP, and shuts down in order on SIGINT or SIGTERM.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/legiondb/legion"
	"github.com/legiondb/legion/admin"
	"github.com/legiondb/legion/resp"
	"github.com/legiondb/legion/store"
)

// Config is everything a legion-server process is started with.
type Config struct {
	// DB configures the database.
	DB legion.Config
	// Bind is the address the client and admin ports listen on.
	Bind string
	// Port is the client (RESP) port; 0 picks a free port.
	Port int
	// AdminPort is the HTTP port of /metrics, /healthz and the JSON API;
	// 0 picks a free port, -1 disables it.
	AdminPort int
	// RequirePass is the default user's password ("" = none).
	RequirePass string
	// ProtectedMode refuses non-loopback clients while no password is set.
	ProtectedMode bool
	// MaxClients bounds simultaneous client connections.
	MaxClients int
	// IdleTimeout closes client connections idle this many seconds (0 never).
	IdleTimeout int
	// EventLoops is how many event loops serve client connections on
	// Linux: 0 one per CPU, -1 none (a goroutine per connection).
	EventLoops int
	// MaxBulkBytes bounds one protocol argument.
	MaxBulkBytes int64
	// SlowlogThreshold is the SLOWLOG threshold in microseconds (-1 off).
	SlowlogThreshold int
	// SlowlogMaxLen is the number of SLOWLOG entries kept.
	SlowlogMaxLen int
	// LogLevel and LogFormat ("text" or "json") shape the log on LogOutput
	// (default stderr) when Logger is nil.
	LogLevel  slog.Level
	LogFormat string
	LogOutput io.Writer
	// Logger, if set, is used as is.
	Logger *slog.Logger
	// ConfigFile is the file the settings were read from, if any.
	ConfigFile string
	// HeapFloor is the Go heap size below which the garbage collector
	// does not run (0 leaves it to GOGC alone). Run applies it: it is a
	// setting of the whole process.
	HeapFloor int64
}

// DefaultConfig returns the configuration of a plain `legion-server`.
func DefaultConfig() Config {
	db := legion.DefaultConfig()
	if mem := physicalMemory(); mem > 0 {
		db.Limits.MaxMemoryBytes = mem / 2
	}
	return Config{
		DB:               db,
		Bind:             "127.0.0.1",
		Port:             7379,
		AdminPort:        7380,
		ProtectedMode:    true,
		MaxClients:       10000,
		MaxBulkBytes:     512 << 20,
		SlowlogThreshold: 10000,
		SlowlogMaxLen:    128,
		LogLevel:         slog.LevelInfo,
		LogFormat:        "text",
		HeapFloor:        32 << 20,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("port %d out of range 0-65535", c.Port)
	}
	if c.AdminPort < -1 || c.AdminPort > 65535 {
		return fmt.Errorf("admin-port %d out of range -1-65535", c.AdminPort)
	}
	if c.AdminPort == c.Port && c.Port != 0 {
		return fmt.Errorf("port and admin-port are both %d", c.Port)
	}
	if net.ParseIP(c.Bind) == nil && c.Bind != "localhost" {
		return fmt.Errorf("bind %q is not an IP address", c.Bind)
	}
	if c.MaxClients < 1 {
		return fmt.Errorf("maxclients must be at least 1")
	}
	if c.MaxBulkBytes < 1<<20 {
		return fmt.Errorf("proto-max-bulk-len must be at least 1mb")
	}
	if c.LogFormat != "" && c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log-format must be text or json")
	}
	if !c.DB.InMemory && c.DB.DataDir == "" {
		return fmt.Errorf("data-dir must not be empty (or use --in-memory)")
	}
	return c.DB.Validate()
}

// newLogger builds the logger the configuration describes.
func (c Config) newLogger() *slog.Logger {
	out := c.LogOutput
	if out == nil {
		out = os.Stderr
	}
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// Server is a running legion-server.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	db      *legion.DB
	resp    *resp.Server
	ln      net.Listener
	admin   *admin.Server
	adminLn net.Listener
	adminCh chan error // the admin server's Serve result

	serveErr chan error // Serve's result
	stopOnce sync.Once
	stopErr  error
}

// Start opens the DB and starts serving. It returns once the port is
// listening.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = cfg.newLogger()
	}
	cfg.DB.Logger = cfg.Logger
	db, err := legion.Open(cfg.DB)
	if err != nil {
		return nil, explainOpenError(cfg, err)
	}
	addr := net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot listen on %s: %w (is another server using the port? choose one with --port)", addr, err)
	}
	s := &Server{
		cfg:      cfg,
		logger:   cfg.Logger,
		db:       db,
		ln:       ln,
		serveErr: make(chan error, 1),
	}
	var metrics *admin.Metrics
	if cfg.AdminPort >= 0 {
		metrics = admin.NewMetrics(db, func() int { return s.resp.Clients() })
	}
	slow := time.Duration(cfg.SlowlogThreshold) * time.Microsecond
	switch {
	case cfg.SlowlogThreshold < 0:
		slow = -1
	case cfg.SlowlogThreshold == 0:
		slow = time.Nanosecond // every command takes at least that: log all
	}
	rcfg := resp.Config{
		Logger:           cfg.Logger,
		RequirePass:      cfg.RequirePass,
		ProtectedMode:    cfg.ProtectedMode,
		MaxClients:       cfg.MaxClients,
		MaxBulkBytes:     cfg.MaxBulkBytes,
		IdleTimeout:      time.Duration(cfg.IdleTimeout) * time.Second,
		EventLoops:       cfg.EventLoops,
		Port:             ln.Addr().(*net.TCPAddr).Port,
		Bind:             cfg.Bind,
		SlowlogThreshold: slow,
		SlowlogMaxLen:    cfg.SlowlogMaxLen,
		Settings: map[string]string{
			"admin-port":  strconv.Itoa(cfg.AdminPort),
			"event-loops": strconv.Itoa(cfg.EventLoops),
			"config-file": cfg.ConfigFile,
			"in-memory":   strconv.FormatBool(cfg.DB.InMemory),
		},
	}
	if metrics != nil {
		rcfg.Observe = metrics.ObserveCommand
	}
	s.resp = resp.New(db, rcfg)
	adminAddr := "disabled"
	if cfg.AdminPort >= 0 {
		aaddr := net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.AdminPort))
		s.adminLn, err = net.Listen("tcp", aaddr)
		if err != nil {
			ln.Close()
			db.Close()
			return nil, fmt.Errorf("cannot listen on %s for the admin HTTP port: %w (choose one with --admin-port, or -1 to disable it)", aaddr, err)
		}
		s.admin = admin.New(db, metrics, admin.Config{Logger: cfg.Logger, Clients: s.resp.Clients, ClientAddr: ln.Addr().String()})
		s.adminCh = make(chan error, 1)
		go func() { s.adminCh <- s.admin.Serve(s.adminLn) }()
		adminAddr = s.adminLn.Addr().String()
	}
	go func() { s.serveErr <- s.resp.Serve(ln) }()
	if s.admin != nil {
		s.admin.SetReady(true)
	}
	where := cfg.DB.DataDir
	if cfg.DB.InMemory {
		where = "memory"
	}
	s.logger.Info("legion-server ready", "addr", ln.Addr().String(), "admin", adminAddr, "node", db.NodeID(),
		"data", where, "fsync", cfg.DB.Fsync.String(), "version", legion.Version)
	return s, nil
}

// explainOpenError turns a failure to open the data dir into a message
// that says what is wrong and what to do. Nothing was written in any case.
func explainOpenError(cfg Config, err error) error {
	dir := cfg.DB.DataDir
	switch {
	case errors.Is(err, store.ErrLocked):
		return fmt.Errorf("data dir %s is locked by another process — is another legion-server running on it? Stop that one or choose another --data-dir. (%v)", dir, err)
	case errors.Is(err, store.ErrNewerFormat):
		return fmt.Errorf("%v. Nothing was changed", err)
	case errors.Is(err, store.ErrNotLegion):
		return fmt.Errorf("%v. Legion will not write into it: choose an empty directory or an existing Legion data dir with --data-dir", err)
	case errors.Is(err, store.ErrCorrupt), errors.Is(err, legion.ErrCorrupt):
		return fmt.Errorf("data dir %s is corrupt: %v. Nothing was changed. Restore it from a backup (LEGION.BACKUP; see the README) or move it aside and start with an empty --data-dir", dir, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot access data dir %s: %v. Check that the user running legion-server (uid %d) may read and write it", dir, err, os.Getuid())
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("data dir %s is not a directory (%v): point --data-dir at a directory", dir, err)
	}
	return fmt.Errorf("cannot open data dir %s: %w", dir, err)
}

// Addr returns the client port's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// DB returns the server's database.
func (s *Server) DB() *legion.DB { return s.db }

// Shutdown stops accepting connections, finishes in-flight commands,
// closes the connections and then the DB (which flushes and closes pebble).
func (s *Server) Shutdown() error {
	s.stopOnce.Do(func() {
		s.logger.Info("shutting down")
		if s.admin != nil {
			s.admin.SetReady(false)
		}
		err := s.resp.Shutdown()
		if serr := <-s.serveErr; serr != nil {
			err = errors.Join(err, serr)
		}
		if s.admin != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = errors.Join(err, s.admin.Shutdown(ctx))
			cancel()
			if aerr := <-s.adminCh; aerr != nil {
				err = errors.Join(err, aerr)
			}
		}
		s.stopErr = errors.Join(err, s.db.Close())
		if s.stopErr != nil {
			s.logger.Error("shutdown finished with errors", "err", s.stopErr)
		} else {
			s.logger.Info("shutdown complete")
		}
	})
	return s.stopErr
}

// failedShutdownWait bounds the shutdown after the storage failed.
const failedShutdownWait = 10 * time.Second

// Wait blocks until the server stops serving on its own (an accept error)
// or ctx is done, then shuts down.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return s.Shutdown()
	case err := <-s.serveErr:
		s.serveErr <- err // Shutdown reads it again
		return errors.Join(fmt.Errorf("server: stopped serving: %w", err), s.Shutdown())
	case <-s.db.StorageFailed():
		// Every command would be refused: stop, so that a restart (by
		// the supervisor) recovers what the log holds. A command caught
		// in the storage engine's failed commit may never return, so the
		// shutdown gets a deadline; the process's exit ends the rest.
		err := fmt.Errorf("server: %w", s.db.StorageStats().Failed)
		s.logger.Error("storage failed: shutting down; restarting recovers every acknowledged write from the log", "err", err.Error())
		done := make(chan error, 1)
		go func() { done <- s.Shutdown() }()
		select {
		case serr := <-done:
			return errors.Join(err, serr)
		case <-time.After(failedShutdownWait):
			s.logger.Error("the shutdown did not finish in time after the storage failed; stopping anyway", "waited", failedShutdownWait)
			return err
		}
	}
}

// Run starts the server and runs it until SIGINT or SIGTERM.
func Run(cfg Config) error {
	s, err := Start(cfg)
	if err != nil {
		return err
	}
	stopFloor := startHeapFloor(uint64(cfg.HeapFloor), time.Second)
	defer stopFloor()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return s.Wait(ctx)
}
