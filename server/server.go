// Package server runs a legion-server process: it opens the DB, serves it
// over RESP, and shuts down in order on SIGINT or SIGTERM.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/legiondb/legion"
	"github.com/legiondb/legion/resp"
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
	cfg    Config
	logger *slog.Logger
	db     *legion.DB
	resp   *resp.Server
	ln     net.Listener

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
		return nil, err
	}
	addr := net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("server: listen on %s: %w", addr, err)
	}
	s := &Server{
		cfg:    cfg,
		logger: cfg.Logger,
		db:     db,
		resp: resp.New(db, resp.Config{
			Logger:        cfg.Logger,
			RequirePass:   cfg.RequirePass,
			ProtectedMode: cfg.ProtectedMode,
			MaxClients:    cfg.MaxClients,
			MaxBulkBytes:  cfg.MaxBulkBytes,
			IdleTimeout:   time.Duration(cfg.IdleTimeout) * time.Second,
			Port:          ln.Addr().(*net.TCPAddr).Port,
			Bind:          cfg.Bind,
		}),
		ln:       ln,
		serveErr: make(chan error, 1),
	}
	go func() { s.serveErr <- s.resp.Serve(ln) }()
	where := cfg.DB.DataDir
	if cfg.DB.InMemory {
		where = "memory"
	}
	s.logger.Info("legion-server ready", "addr", ln.Addr().String(), "node", db.NodeID(),
		"data", where, "fsync", cfg.DB.Fsync.String(), "version", legion.Version)
	return s, nil
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
		err := s.resp.Shutdown()
		if serr := <-s.serveErr; serr != nil {
			err = errors.Join(err, serr)
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

// Wait blocks until the server stops serving on its own (an accept error)
// or ctx is done, then shuts down.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return s.Shutdown()
	case err := <-s.serveErr:
		s.serveErr <- err // Shutdown reads it again
		return errors.Join(fmt.Errorf("server: stopped serving: %w", err), s.Shutdown())
	}
}

// Run starts the server and runs it until SIGINT or SIGTERM.
func Run(cfg Config) error {
	s, err := Start(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return s.Wait(ctx)
}
