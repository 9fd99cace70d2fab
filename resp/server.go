// Package resp serves a legion.DB over the Redis protocol (RESP2 and
// RESP3) on redcon. One command table drives dispatch, arity checks, the
// COMMAND replies and routing metadata; one function maps errors to RESP
// error lines.
package resp

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/legiondb/legion"
	"github.com/tidwall/redcon"
)

// Config configures a Server.
type Config struct {
	// Logger receives connection and command failures. Default: discard.
	Logger *slog.Logger
	// Version is reported by HELLO and INFO.
	Version string
	// ShutdownTimeout bounds how long Shutdown waits for in-flight
	// commands. Default 10s.
	ShutdownTimeout time.Duration
}

// Server serves one DB over RESP. Create it with New, run it with Serve,
// stop it with Shutdown.
type Server struct {
	db       *legion.DB
	cfg      Config
	logger   *slog.Logger
	commands map[string]*command // by lower-case name; built per server
	started  time.Time

	rs       *redcon.Server
	lnMu     sync.Mutex
	ln       net.Listener
	nextID   atomic.Int64
	inflight sync.WaitGroup
	closing  atomic.Bool

	clientsMu sync.Mutex
	clients   map[int64]*client // guarded by clientsMu

	stats serverStats
}

type serverStats struct {
	connections atomic.Int64 // accepted since start
	commands    atomic.Int64 // processed since start
	rejected    atomic.Int64 // connections refused
}

// New returns a server for db.
func New(db *legion.DB, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Version == "" {
		cfg.Version = legion.Version
	}
	s := &Server{
		db:      db,
		cfg:     cfg,
		logger:  cfg.Logger,
		started: time.Now(),
		clients: make(map[int64]*client),
	}
	s.commands = buildCommands()
	return s
}

// client is the per-connection state.
type client struct {
	id      int64
	conn    redcon.Conn
	addr    string
	created time.Time
	w       writer

	mu      sync.Mutex // guards the fields below, read by CLIENT LIST from other connections
	name    string
	lastCmd string
	lastAt  time.Time
}

// Serve accepts connections on ln until Shutdown. It returns nil after a
// Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.lnMu.Lock()
	if s.closing.Load() {
		s.lnMu.Unlock()
		return nil
	}
	s.ln = ln
	s.rs = redcon.NewServerNetwork(ln.Addr().Network(), ln.Addr().String(), s.serveRESP, s.accept, s.closed)
	rs := s.rs
	s.lnMu.Unlock()
	err := rs.Serve(ln)
	if s.closing.Load() {
		return nil
	}
	return err
}

// Addr returns the listening address once Serve has been called.
func (s *Server) Addr() net.Addr {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

func (s *Server) accept(conn redcon.Conn) bool {
	c := &client{
		id:      s.nextID.Add(1),
		conn:    conn,
		addr:    conn.RemoteAddr(),
		created: time.Now(),
	}
	c.lastAt = c.created
	conn.SetContext(c)
	s.clientsMu.Lock()
	s.clients[c.id] = c
	s.clientsMu.Unlock()
	s.stats.connections.Add(1)
	return true
}

func (s *Server) closed(conn redcon.Conn, err error) {
	c, _ := conn.Context().(*client)
	if c == nil {
		return
	}
	s.clientsMu.Lock()
	delete(s.clients, c.id)
	s.clientsMu.Unlock()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.logger.Debug("connection closed", "client", c.id, "addr", c.addr, "err", err)
	}
}

// serveRESP runs one command. A panic in a command is recovered, logged
// with its stack, and answered with an error; the connection and the
// server live on.
func (s *Server) serveRESP(conn redcon.Conn, cmd redcon.Command) {
	c, _ := conn.Context().(*client)
	if c == nil || len(cmd.Args) == 0 {
		return
	}
	s.inflight.Add(1)
	defer s.inflight.Done()
	s.stats.commands.Add(1)
	w := &c.w
	w.reset()
	s.run(c, cmd.Args, w)
	conn.WriteRaw(w.b)
	if s.closing.Load() {
		// Shutdown waits for in-flight commands and then closes the
		// connections: flush this reply before saying we are done.
		redcon.BaseWriter(conn).Flush()
	}
}

func (s *Server) run(c *client, args [][]byte, w *writer) {
	name := strings.ToLower(string(args[0]))
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("command panicked", "command", name, "client", c.id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			w.reset()
			w.errorf("ERR internal error while running '%s'; the server logged the details", name)
		}
	}()
	c.mu.Lock()
	c.lastCmd, c.lastAt = name, time.Now()
	c.mu.Unlock()
	if s.closing.Load() {
		w.errorLine("ERR server is shutting down")
		return
	}
	s.dispatch(c, args, w)
}

// dispatch finds the command (or subcommand) for args, checks its arity
// and runs it. Subcommands see the whole argument list, as in Redis.
func (s *Server) dispatch(c *client, args [][]byte, w *writer) {
	cmd, ok := s.commands[strings.ToLower(string(args[0]))]
	if !ok {
		w.errorLine(unknownCommand(args))
		return
	}
	if cmd.subcommands != nil {
		if len(args) < 2 {
			w.errorf("ERR wrong number of arguments for '%s' command", cmd.name)
			return
		}
		sub, ok := cmd.subcommands[strings.ToLower(string(args[1]))]
		if !ok {
			w.errorf("ERR unknown subcommand '%.128s'. Try %s HELP.", args[1], strings.ToUpper(cmd.name))
			return
		}
		cmd = sub
	}
	if !cmd.arityOK(len(args)) {
		w.errorf("ERR wrong number of arguments for '%s' command", cmd.fullName())
		return
	}
	cmd.run(s, c, args, w)
}

// unknownCommand words the error exactly as Redis does.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	for _, a := range args[1:] {
		if b.Len() >= 128 {
			break
		}
		fmt.Fprintf(&b, "'%.*s' ", 128-b.Len(), a)
	}
	return fmt.Sprintf("ERR unknown command '%.128s', with args beginning with: %s", args[0], b.String())
}

// Shutdown stops accepting connections, lets in-flight commands finish
// (up to Config.ShutdownTimeout), answers new ones with an error, and
// closes every connection.
func (s *Server) Shutdown() error {
	s.lnMu.Lock()
	if s.closing.Swap(true) {
		s.lnMu.Unlock()
		return nil
	}
	rs := s.rs
	s.lnMu.Unlock()
	done := make(chan struct{})
	go func() {
		s.inflight.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownTimeout):
		err = fmt.Errorf("resp: %d s passed with commands still running", int(s.cfg.ShutdownTimeout/time.Second))
	}
	if rs != nil {
		// Closes the listener; redcon then closes every connection.
		if cerr := rs.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = errors.Join(err, cerr)
		}
	}
	return err
}
