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

	"github.com/legiondb/legion"
	"github.com/legiondb/legion/resp"
)

// Config is everything a legion-server process is started with.
type Config struct {
	// DB configures the database.
	DB legion.Config
	// Bind is the address the client port listens on. Default 127.0.0.1.
	Bind string
	// Port is the client (RESP) port; 0 picks a free port. Default 7379
	// through DefaultConfig.
	Port int
	// Logger receives the server's messages. Default: discard.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration of a plain `legion-server`.
func DefaultConfig() Config {
	return Config{DB: legion.DefaultConfig(), Bind: "127.0.0.1", Port: 7379}
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Bind == "" {
		cfg.Bind = "127.0.0.1"
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("server: port %d out of range", cfg.Port)
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
		cfg:      cfg,
		logger:   cfg.Logger,
		db:       db,
		resp:     resp.New(db, resp.Config{Logger: cfg.Logger}),
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
