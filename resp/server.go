// Package resp serves a legion.DB over the Redis protocol (RESP2 and
// RESP3), replies built with redcon's encoders. One command table drives
// dispatch, arity checks, the COMMAND replies and routing metadata; one
// function maps errors to RESP error lines.
package resp

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/legiondb/legion"
	"github.com/tidwall/redcon"
)

// Config configures a Server. Zero fields take the defaults noted.
type Config struct {
	// Logger receives connection and command failures. Default: discard.
	Logger *slog.Logger
	// Version is reported by HELLO and INFO. Default legion.Version.
	Version string
	// ShutdownTimeout bounds how long Shutdown waits for in-flight
	// commands. Default 10s.
	ShutdownTimeout time.Duration
	// RequirePass, if set, is the password of the "default" user: every
	// command but AUTH, HELLO, QUIT and RESET answers -NOAUTH until the
	// connection authenticates.
	RequirePass string
	// ProtectedMode refuses connections from non-loopback addresses while
	// no password is set, as Redis does. legion-server turns it on by
	// default (--protected-mode yes).
	ProtectedMode bool
	// MaxClients bounds simultaneous connections. Default 10000.
	MaxClients int
	// MaxBulkBytes bounds one argument (proto-max-bulk-len). Default 512 MiB.
	MaxBulkBytes int64
	// MaxMultibulk bounds the arguments of one command. Default 1048576.
	MaxMultibulk int64
	// IdleTimeout closes a connection idle this long; 0 never does.
	IdleTimeout time.Duration
	// WriteTimeout drops a client whose reply cannot be written for this
	// long (a vanished or stuck reader). Default 60s.
	WriteTimeout time.Duration
	// Port and Bind are reported by INFO and CONFIG GET.
	Port int
	Bind string
	// Settings adds read-only parameters to CONFIG GET (for example the
	// data dir and fsync mode of the process).
	Settings map[string]string
	// SlowlogThreshold: commands running at least this long go to SLOWLOG;
	// negative turns it off. Default 10ms.
	SlowlogThreshold time.Duration
	// SlowlogMaxLen is the number of SLOWLOG entries kept. Default 128.
	SlowlogMaxLen int
	// EventLoops is how many event loops serve the connections (Linux
	// only): each loop reads, runs and answers many connections in turn,
	// which costs less per request than a goroutine per connection.
	// Default (0): one per CPU the Go runtime uses. Negative: none, a
	// goroutine per connection, as on other systems.
	EventLoops int
	// Observe, if set, is called after every command with its full name
	// ("unknown" for unknown commands), how long it ran, and whether it
	// answered with an error. It must not block.
	Observe func(command string, d time.Duration, failed bool)
}

// Server serves one DB over RESP. Create it with New, run it with Serve,
// stop it with Shutdown.
type Server struct {
	db       *legion.DB
	cfg      Config
	logger   *slog.Logger
	commands map[string]*command // by lower-case name; built per server
	applyCmd *command            // LEGION.APPLY, which pipelines batch
	started  time.Time
	runID    string

	lim           limits
	maxClients    atomic.Int64
	requirePass   atomic.Pointer[string]
	protectedMode atomic.Bool

	lnMu     sync.Mutex
	ln       net.Listener
	loops    []*loop        // the event loops, if any; set by Serve under lnMu
	nextLoop int            // the loop the next connection goes to (accept loop only)
	conns    sync.WaitGroup // the open connections
	// ownGoroutines counts the connections served by a goroutine of
	// their own (INFO's goroutine_clients).
	ownGoroutines atomic.Int64
	// syncWrites: every write waits for a disk sync. An event loop waits
	// for LEGION.APPLY's off the loop (client.deferSync); other writes
	// move their connection off it (see mustWait).
	syncWrites bool
	nextID     atomic.Int64
	// closing is set by Shutdown, which then waits for every client's busy
	// flag to drop. A command raises busy before it reads closing, so
	// either it sees closing and stops, or Shutdown sees it running.
	closing atomic.Bool

	clientsMu sync.Mutex
	clients   map[int64]*client // guarded by clientsMu

	stats   serverStats
	slowlog slowlog
}

type serverStats struct {
	connections atomic.Int64 // accepted since start
	commands    atomic.Int64 // processed since start
	rejected    atomic.Int64 // connections refused (max clients, protected mode)
	errors      atomic.Int64 // error replies
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
	if cfg.MaxClients == 0 {
		cfg.MaxClients = 10000
	}
	if cfg.MaxBulkBytes == 0 {
		cfg.MaxBulkBytes = 512 << 20
	}
	if cfg.MaxMultibulk == 0 {
		cfg.MaxMultibulk = 1 << 20
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 60 * time.Second
	}
	if cfg.SlowlogThreshold == 0 {
		cfg.SlowlogThreshold = 10 * time.Millisecond
	}
	if cfg.SlowlogMaxLen == 0 {
		cfg.SlowlogMaxLen = 128
	}
	s := &Server{
		db:      db,
		cfg:     cfg,
		logger:  cfg.Logger,
		started: time.Now(),
		runID:   newRunID(),
		clients: make(map[int64]*client),
	}
	s.lim.maxBulk.Store(cfg.MaxBulkBytes)
	s.lim.maxMultibulk.Store(cfg.MaxMultibulk)
	s.lim.idle.Store(int64(cfg.IdleTimeout))
	s.lim.writeTimeout.Store(int64(cfg.WriteTimeout))
	s.maxClients.Store(int64(cfg.MaxClients))
	pass := cfg.RequirePass
	s.requirePass.Store(&pass)
	s.protectedMode.Store(cfg.ProtectedMode)
	s.slowlog.set(cfg.SlowlogThreshold, cfg.SlowlogMaxLen)
	s.commands = buildCommands()
	s.applyCmd = s.commands["legion.apply"]
	s.syncWrites = db.StorageStats().Fsync == legion.FsyncAlways
	return s
}

// client is the per-connection state.
type client struct {
	id      int64
	conn    *conn
	addr    string
	laddr   string
	created time.Time
	w       writer // owned by the connection's goroutine
	// runner runs one command of the connection.
	runner func(r *request)
	authed bool // owned by the connection's goroutine
	// busy is raised while a command of the connection runs (see
	// Server.closing). It is the connection's own, so a command touches
	// no memory shared with the other connections' to register.
	busy atomic.Bool
	// pending holds the durability waits of writes whose replies are
	// buffered but not yet sent (owned by the connection's goroutine).
	pending []func() error
	// deferSync: the connection's event loop waits for pending after the
	// commands of a read have run, off the loop, and sends their replies
	// then; the commands leave pending to it.
	deferSync bool
	held      int // writes applied but not yet durable and answered
	// ahead holds the results of writes of the pipeline applied with an
	// earlier one, to answer when their commands' turn comes; writes and
	// results are buffers for ApplyBatch (owned by the connection's
	// goroutine).
	ahead   []legion.Result
	writes  []legion.Write
	results []legion.Result
	unsent  int // bytes of replies buffered in this pipeline
	// chained is set when the next command of the pipeline may start its
	// clock at lastEnd, where the previous one ended, having waited for
	// nothing since: a pipeline's commands then cost one clock read each.
	chained bool
	lastEnd time.Duration // since Server.started
	// view answers the searches of a pipeline from one iterator; it is
	// open from a pipelined search until the first command that is not a
	// search, or the pipeline's end (owned by the connection's goroutine).
	view     *legion.SearchView
	searched bool // the command running is a search

	mu      sync.Mutex // guards the fields below, read by CLIENT LIST from other connections
	name    string
	libName string
	libVer  string
	resp3   bool
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
	loops := s.cfg.EventLoops
	if loops == 0 {
		loops = runtime.GOMAXPROCS(0)
	}
	if loopsAvailable && loops > 0 {
		if err := s.startLoops(loops); err != nil {
			s.logger.Warn("event loops unavailable; serving a goroutine per connection", "err", err)
		}
	}
	useLoops := len(s.loops) > 0
	s.lnMu.Unlock()
	var acceptor net.Listener = guardListener{Listener: ln, lim: &s.lim}
	if useLoops {
		acceptor = ln
	}
	pause := 5 * time.Millisecond
	for {
		nc, err := acceptor.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors, or a transient failure: wait and
				// accept again, as net/http does.
				s.logger.Warn("accept failed; retrying", "err", err, "in", pause)
				time.Sleep(pause)
				pause = min(2*pause, time.Second)
				continue
			}
			return err
		}
		pause = 5 * time.Millisecond
		// Shutdown sets closing under lnMu before it waits for the
		// connections: every Add comes before that wait.
		s.lnMu.Lock()
		if s.closing.Load() {
			s.lnMu.Unlock()
			nc.Close()
			return nil
		}
		s.conns.Add(1)
		s.lnMu.Unlock()
		if useLoops {
			s.serveLoop(nc)
		} else {
			go s.serveConn(nc)
		}
	}
}

// serveConn runs one connection until it ends.
func (s *Server) serveConn(nc net.Conn) {
	defer s.conns.Done()
	s.ownGoroutines.Add(1)
	defer s.ownGoroutines.Add(-1)
	cn := newConn(nc, &s.lim)
	c := s.accept(cn)
	if c == nil {
		cn.close() // sends the refusal first
		return
	}
	err := cn.serve(c.runner)
	cn.close()
	s.closed(c, err)
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

// protectedMessage is Redis's explanation, adapted to Legion.
const protectedMessage = "DENIED Legion is running in protected mode because protected mode is enabled and no password is set for the default user. " +
	"In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Legion you may adopt one of the following solutions: " +
	"1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Legion from the same host the server is running, however MAKE SURE Legion is not publicly accessible from internet if you do so. " +
	"2) Alternatively you can just disable the protected mode by setting LEGION_PROTECTED_MODE=no or protected-mode = \"no\" in the configuration file, and restarting the server. " +
	"3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. " +
	"4) Set up an authentication password for the default user (--requirepass). " +
	"NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside."

// accept registers a new connection's client, or answers why it is
// refused and returns nil.
func (s *Server) accept(cn *conn) *client {
	addr := cn.nc.RemoteAddr().String()
	if s.protectedMode.Load() && *s.requirePass.Load() == "" && !isLoopback(addr) {
		s.stats.rejected.Add(1)
		cn.write(redcon.AppendError(nil, protectedMessage))
		return nil
	}
	s.clientsMu.Lock()
	if s.closing.Load() {
		s.clientsMu.Unlock()
		cn.write(redcon.AppendError(nil, "ERR server is shutting down"))
		return nil
	}
	if int64(len(s.clients)) >= s.maxClients.Load() {
		s.clientsMu.Unlock()
		s.stats.rejected.Add(1)
		cn.write(redcon.AppendError(nil, "ERR max number of clients reached"))
		return nil
	}
	c := &client{
		id:      s.nextID.Add(1),
		conn:    cn,
		addr:    addr,
		laddr:   cn.nc.LocalAddr().String(),
		created: time.Now(),
	}
	c.lastAt = c.created
	c.runner = func(r *request) { s.serveRESP(c, r) }
	s.clients[c.id] = c
	s.clientsMu.Unlock()
	s.stats.connections.Add(1)
	return c
}

// syncPending waits for every deferred write of the connection, in order.
func (c *client) syncPending() error {
	var first error
	for i, wait := range c.pending {
		if err := wait(); err != nil && first == nil {
			first = err
		}
		c.pending[i] = nil
	}
	c.pending = c.pending[:0]
	c.held = 0
	return first
}

const (
	// maxDeferred bounds the writes of one pipeline applied but not yet
	// made durable and answered.
	maxDeferred = 256
	// flushReplies is how many bytes of replies to a long pipeline are
	// buffered before they are sent.
	flushReplies = 64 << 10
	// calmReads is how many reads in a row must bring nothing that may
	// wait before a connection that left its event loop goes back to it:
	// a client that alternates writes that wait for a sync with reads
	// stays off it, rather than move back and forth at a few system calls
	// a move.
	calmReads = 8
)

// notDurable logs why a connection closes with its writes unanswered.
func (s *Server) notDurable(c *client, err error) {
	s.logger.Error("a write could not be made durable; closing the connection so it is not acknowledged", "client", c.id, "err", err)
}

// isLoopback reports whether a "host:port" address is on the loopback
// interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) closed(c *client, err error) {
	s.clientsMu.Lock()
	delete(s.clients, c.id)
	s.clientsMu.Unlock()
	// Writes of an unanswered pipeline still hold the database open.
	c.syncPending()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.As(err, new(protocolError)) {
		s.logger.Debug("connection closed", "client", c.id, "addr", c.addr, "err", err)
	}
}

// serveRESP runs one command. A panic in a command is recovered, logged
// with its stack, and answered with an error; the connection and the
// server live on.
func (s *Server) serveRESP(c *client, r *request) {
	cn := c.conn
	// Raised first, so the search view closed on the way out is closed
	// while the command still counts as running.
	c.busy.Store(true)
	defer c.busy.Store(false)
	w := &c.w
	w.reset()
	c.searched = false
	defer func() {
		if c.view != nil && c.view.Active() && (!c.searched || len(cn.pipeline()) == 0 || s.closing.Load()) {
			c.view.Close()
			c.chained = false
		}
	}()
	if s.closing.Load() && len(c.ahead) == 0 {
		c.chained = false
		w.errorLine("ERR server is shutting down")
		cn.write(w.b)
		return
	}
	s.stats.commands.Add(1)
	s.run(c, r, w)
	cn.write(w.b)
	// Replies are sent when the pipeline's last command has run (or the
	// connection closes): before that, every deferred write must be durable.
	// A long pipeline is answered in parts of maxDeferred writes, so the
	// writes held open (and the replies held back) stay bounded.
	more := len(cn.pipeline()) > 0
	// The next command's clock starts where this one's stopped, unless
	// the connection waits for something first (a sync, a flush).
	c.chained = more
	if len(c.pending) > 0 && len(c.ahead) == 0 && (w.closeAfter || s.closing.Load() || !more && !c.deferSync || c.held >= maxDeferred) {
		c.chained = false
		if err := c.syncPending(); err != nil {
			s.notDurable(c, err)
			cn.nc.Close()
			return
		}
	}
	if w.closeAfter {
		cn.close() // sends the reply first
		return
	}
	// The connection sends the buffered replies after the pipeline's last
	// command.
	c.unsent += len(w.b)
	if !more {
		c.unsent = 0
	} else if len(c.pending) == 0 && c.unsent >= flushReplies {
		// Every reply buffered so far is durable: send them now rather
		// than at the end of a long pipeline.
		c.unsent = 0
		c.chained = false
		if err := cn.flush(); err != nil {
			return
		}
	}
	if s.closing.Load() {
		// Shutdown waits for in-flight commands and then closes the
		// connections: flush this reply before saying we are done.
		c.chained = false
		cn.flush()
	}
}

func (s *Server) run(c *client, r *request, w *writer) {
	args := r.Args
	// Offsets from started (which has a monotonic reading) cost one read
	// of the monotonic clock each, and no read of the wall clock; inside a
	// pipeline, one command's end is the next one's start.
	start := c.lastEnd
	if !c.chained {
		start = time.Since(s.started)
	}
	c.chained = false
	var cmd *command
	defer func() {
		label := "unknown"
		if cmd != nil {
			label = cmd.fullName()
		}
		if r := recover(); r != nil {
			s.logger.Error("command panicked", "command", label, "client", c.id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			w.reset()
			w.errorf("ERR internal error while running '%s'; the server logged the details", strings.ToLower(string(args[0])))
		}
		c.lastEnd = time.Since(s.started)
		d := c.lastEnd - start
		failed := len(w.b) > 0 && w.b[0] == '-'
		if failed {
			s.stats.errors.Add(1)
		}
		if s.cfg.Observe != nil {
			s.cfg.Observe(label, d, failed)
		}
		s.slowlog.record(c, args, d)
		c.mu.Lock()
		c.lastCmd, c.lastAt = label, s.started.Add(start)
		c.mu.Unlock()
	}()
	cmd = s.dispatch(c, r, w)
}

// lookup finds a command by name, case-insensitively, without allocating.
func lookup(table map[string]*command, name []byte) *command {
	var buf [32]byte
	if len(name) > len(buf) {
		return table[strings.ToLower(string(name))]
	}
	for i, b := range name {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		buf[i] = b
	}
	return table[string(buf[:len(name)])]
}

// dispatch finds the command (or subcommand) for r, checks its arity
// and runs it. Subcommands see the whole argument list, as in Redis. It
// returns the command found, if any.
func (s *Server) dispatch(c *client, r *request, w *writer) *command {
	args := r.Args
	cmd := r.cmd
	if cmd == nil {
		cmd = lookup(s.commands, args[0])
	}
	if cmd == nil {
		if !c.authed && *s.requirePass.Load() != "" {
			w.errorLine("NOAUTH Authentication required.")
			return nil
		}
		w.errorLine(unknownCommand(args))
		return nil
	}
	if cmd.subcommands != nil && (len(args) > 1 || cmd.run == nil) {
		if !c.authed && !cmd.noAuth && *s.requirePass.Load() != "" {
			w.errorLine("NOAUTH Authentication required.")
			return cmd
		}
		if len(args) < 2 {
			w.errorf("ERR wrong number of arguments for '%s' command", cmd.name)
			return cmd
		}
		sub := lookup(cmd.subcommands, args[1])
		if sub == nil {
			w.errorf("ERR unknown subcommand '%.128s'. Try %s HELP.", args[1], strings.ToUpper(cmd.name))
			return cmd
		}
		cmd = sub
	}
	if !c.authed && !cmd.noAuth && *s.requirePass.Load() != "" {
		w.errorLine("NOAUTH Authentication required.")
		return cmd
	}
	if !cmd.arityOK(len(args)) {
		w.errorf("ERR wrong number of arguments for '%s' command", cmd.fullName())
		return cmd
	}
	cmd.run(s, c, args, w)
	return cmd
}

// Clients returns the number of connected clients.
func (s *Server) Clients() int {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	return len(s.clients)
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
	ln := s.ln
	s.lnMu.Unlock()
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	// Serve starts no loops once closing is set.
	defer func() { s.stopLoops(deadline.Add(time.Second)) }()
	var err error
	if !s.waitIdle(s.cfg.ShutdownTimeout) {
		err = fmt.Errorf("resp: %d s passed with commands still running", int(s.cfg.ShutdownTimeout/time.Second))
	}
	if ln != nil {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = errors.Join(err, cerr)
		}
	}
	// A connection registering after this sees closing and is refused.
	s.clientsMu.Lock()
	for _, c := range s.clients {
		c.conn.nc.Close()
	}
	s.clientsMu.Unlock()
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(max(time.Until(deadline), time.Second)):
		err = errors.Join(err, errors.New("resp: connections still open after the shutdown timeout"))
	}
	return err
}

// waitIdle waits up to timeout for no command to be running, and reports
// whether none is. A client that connects later sees closing (the client
// table's lock orders its registration after this scan's).
func (s *Server) waitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	pause := 50 * time.Microsecond
	for {
		busy := false
		s.clientsMu.Lock()
		for _, c := range s.clients {
			if c.busy.Load() {
				busy = true
				break
			}
		}
		s.clientsMu.Unlock()
		if !busy {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
}

func newRunID() string {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strings.Repeat("0", 40)
	}
	return hex.EncodeToString(b[:])
}
