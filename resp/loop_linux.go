package resp

// Event loops. A goroutine per connection costs, for every request, a
// read that finds the socket empty and a trip through the scheduler to
// park and wake the goroutine. An event loop instead owns many
// connections: it asks its epoll instance which of them have bytes to
// read, and reads, runs and answers each in turn, so an unpipelined
// request costs one read and one write, as in Redis. The replies of a
// pipelined read wait for the end of the turn (see answer).
//
// Each loop owns a level-triggered epoll instance over its connections'
// sockets. The epoll descriptor is itself pollable, so the loop waits for
// it through Go's netpoller and never blocks a thread in epoll_wait.
//
// A loop must not wait. With fsync always, the loop runs the writes a
// read brought, and a goroutine waits for their sync (one for all the
// connections of the loop's turn, in the order of their writes: the log
// is ordered, so a sync covers every write before it); the connection
// reads nothing meanwhile, and gets its replies once its writes are
// durable. A connection
// that sends a command that may wait otherwise (a whole-database check,
// a backup, a compilation, a write while the store stalls writes) leaves
// its loop for a goroutine of its own, which serves it through Go's
// netpoller, as on systems without epoll, until calmReads reads in a row
// have brought nothing that may wait; then it goes back. Replies that do
// not fit in the socket's buffer wait in the connection, which reads
// nothing more until they are sent (EPOLLOUT). The loop's clock closes
// idle connections and drops clients that take no replies for the write
// timeout.
//
// A loop busy for yieldAfter without running out of work yields to the
// other goroutines, the other loops first (see yield). A command that
// runs long on the CPU (a handler near its time limit) holds up the
// other connections of its loop meanwhile, as a script holds up every
// client of a Redis server.

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loopTick is how often a loop looks for idle and stuck connections.
const loopTick = 100 * time.Millisecond

// loop is one event loop.
type loop struct {
	s      *Server
	ep     int      // the epoll instance
	epf    *os.File // ep, registered with Go's netpoller (owns ep)
	rc     syscall.RawConn
	wake   int // an eventfd in ep: ringing it makes the loop read its inbox
	events []unix.EpollEvent
	conns  map[int32]*lconn // by descriptor; owned by run
	now    time.Time        // when the loop last woke
	tick   time.Time        // when it next looks for idle and stuck connections

	// Yielding (see yield): busyFrom is when the loop last ran out of
	// work or yielded; yf is an eventfd registered with Go's netpoller.
	busyFrom time.Time
	yf       *os.File
	yrc      syscall.RawConn
	yields   atomic.Int64 // for tests

	// syncing are the connections of this turn whose writes wait for a
	// sync; they are out of conns until it is done. Away holds those
	// (of this turn and earlier ones) whose sockets are still in the
	// epoll set: a client waiting for its replies usually sends nothing,
	// so a socket leaves the set only if it reports an event meanwhile,
	// which saves two epoll_ctl calls per sync round.
	syncing []*lconn
	away    map[int32]*lconn

	// answering are the connections of this turn whose replies are
	// ready, sent together when the turn ends (see answer).
	answering []answer

	mu      sync.Mutex
	inbox   []*lconn // connections to take: new ones, and ones back from a sync
	rung    bool     // wake was rung and not read yet
	stopped bool     // run has returned or will: nothing more is taken, wake is not rung
	done    chan struct{}
}

// answer is a connection whose replies wait for the end of the turn,
// and the parse error to answer after them.
type answer struct {
	lc   *lconn
	perr error
}

// lconn is a connection served by a loop.
type lconn struct {
	sk *sock
	cn *conn
	c  *client

	armed   bool      // its socket is in the loop's epoll set
	writing bool      // waiting for room to send cn.out (then close, if cn.closed); reads nothing meanwhile
	lastIO  time.Time // the last read or write
	// syncing: its writes wait for a sync (see loop.syncing); perr is
	// the parse error to answer after their replies, and synced how the
	// sync went.
	syncing bool
	perr    error
	synced  error
}

// sock is a loop connection's socket: a descriptor of its own, taken
// from the accepted net.Conn, in non-blocking mode.
type sock struct {
	fd          int
	local, peer net.Addr
	lim         *limits
	// blocking makes Write wait for room, up to the write timeout (the
	// accept loop holds the connection); otherwise Write stops with
	// errWouldBlock. Set only by whoever holds the connection.
	blocking bool
	// own, once the connection has left its loop, is the socket as a
	// net.Conn served through Go's netpoller, with the idle and write
	// timeouts; every call goes to it. Set under mu by the holder.
	own net.Conn

	mu sync.Mutex
	// released: the descriptor is closed, and its number may be reused.
	// Set under mu by the holder, who reads it without.
	released bool
	shut     bool
}

// detach moves the socket to Go's netpoller, for a goroutine to serve.
func (k *sock) detach() error {
	f := os.NewFile(uintptr(k.fd), "socket")
	nc, err := net.FileConn(f) // a descriptor of its own
	k.mu.Lock()
	defer k.mu.Unlock()
	f.Close()
	k.released = true
	if err != nil {
		return err
	}
	k.own = &guardConn{Conn: nc, lim: k.lim}
	if k.shut {
		nc.Close()
	}
	return nil
}

// attach takes a detached socket back from Go's netpoller, for a loop to
// serve: a descriptor of its own again, outside the netpoller. Only the
// holder calls it; if the connection was closed meanwhile, it fails and
// leaves the socket detached.
func (k *sock) attach() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	fd, err := takeFD(k.own.(*guardConn).Conn)
	if err != nil {
		return err
	}
	k.fd, k.own, k.released = fd, nil, false
	return nil
}

func (k *sock) Read(p []byte) (int, error) {
	if k.own != nil {
		return k.own.Read(p)
	}
	if k.released {
		return 0, net.ErrClosed
	}
	for {
		n, err := rawRead(k.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		if n == 0 && err == nil {
			return 0, io.EOF
		}
		return n, err
	}
}

func (k *sock) Write(p []byte) (int, error) {
	if k.own != nil {
		return k.own.Write(p)
	}
	if k.released {
		return 0, net.ErrClosed
	}
	total := 0
	var deadline time.Time
	for len(p) > 0 {
		n, err := rawWrite(k.fd, p)
		if n > 0 {
			total += n
			p = p[n:]
			continue
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err != syscall.EAGAIN:
			return total, err
		case !k.blocking:
			return total, errWouldBlock
		}
		if deadline.IsZero() {
			d := time.Duration(k.lim.writeTimeout.Load())
			if d <= 0 {
				d = 365 * 24 * time.Hour
			}
			deadline = time.Now().Add(d)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return total, os.ErrDeadlineExceeded
		}
		fds := []unix.PollFd{{Fd: int32(k.fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(fds, int(min(left, time.Second)/time.Millisecond)+1); err != nil && err != unix.EINTR {
			return total, err
		}
	}
	return total, nil
}

// Close shuts the socket down; the loop that owns it sees the hang-up
// and releases the connection. Any goroutine may call it.
func (k *sock) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.own != nil {
		return k.own.Close()
	}
	if k.released || k.shut {
		return nil
	}
	k.shut = true
	return syscall.Shutdown(k.fd, syscall.SHUT_RDWR)
}

// release closes the descriptor; only the connection's holder calls it.
func (k *sock) release() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.released {
		k.released = true
		syscall.Close(k.fd)
	}
}

func (k *sock) LocalAddr() net.Addr              { return k.local }
func (k *sock) RemoteAddr() net.Addr             { return k.peer }
func (k *sock) SetDeadline(time.Time) error      { return nil }
func (k *sock) SetReadDeadline(time.Time) error  { return nil }
func (k *sock) SetWriteDeadline(time.Time) error { return nil }

// takeSocket gives nc's socket a descriptor of its own, in non-blocking
// mode and outside Go's netpoller, and closes nc.
func takeSocket(nc net.Conn, lim *limits) (*sock, error) {
	local, peer := nc.LocalAddr(), nc.RemoteAddr()
	fd, err := takeFD(nc)
	if err != nil {
		return nil, err
	}
	return &sock{fd: fd, local: local, peer: peer, lim: lim, blocking: true}, nil
}

// takeFD returns a descriptor of its own for nc's socket, outside Go's
// netpoller, and closes nc. The copy shares the open file description,
// non-blocking mode included, so closing nc leaves the socket open.
func takeFD(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) {
		fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	nc.Close()
	return fd, nil
}

// startLoops starts n event loops.
func (s *Server) startLoops(n int) error {
	for range n {
		l, err := newLoop(s)
		if err != nil {
			s.stopLoops(time.Now())
			return err
		}
		s.loops = append(s.loops, l)
		go l.run()
	}
	return nil
}

// stopLoops stops the loops and waits for them, up to deadline: each
// releases the connections it holds. A loop stuck in a command is left
// to return when the command does.
func (s *Server) stopLoops(deadline time.Time) {
	for _, l := range s.loops {
		l.stop()
	}
	for _, l := range s.loops {
		select {
		case <-l.done:
		case <-time.After(time.Until(deadline)):
			return
		}
	}
}

func newLoop(s *Server) (*loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, err
	}
	l := &loop{s: s, ep: ep, wake: wake, events: make([]unix.EpollEvent, 256),
		conns: map[int32]*lconn{}, away: map[int32]*lconn{}, done: make(chan struct{})}
	fail := func(err error) (*loop, error) {
		unix.Close(wake)
		if l.epf != nil {
			l.epf.Close()
		} else {
			unix.Close(ep)
		}
		return nil, err
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		return fail(err)
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		return fail(err)
	}
	l.epf = os.NewFile(uintptr(ep), "epoll")
	if l.rc, err = l.epf.SyscallConn(); err != nil {
		return fail(err)
	}
	yfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fail(err)
	}
	l.yf = os.NewFile(uintptr(yfd), "yield")
	if l.yrc, err = l.yf.SyscallConn(); err != nil {
		l.yf.Close()
		return fail(err)
	}
	return l, nil
}

// adopt hands a new connection to the loop.
func (l *loop) adopt(lc *lconn) {
	lc.sk.blocking = false
	l.post(lc)
}

// post gives the loop connections, new or back from a sync. If the loop
// has stopped, they are released here.
func (l *loop) post(lcs ...*lconn) {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		for _, lc := range lcs {
			l.s.release(lc.sk, lc.c, net.ErrClosed)
		}
		return
	}
	l.inbox = append(l.inbox, lcs...)
	l.ring()
	l.mu.Unlock()
}

// ring wakes the loop, if it is not rung already; l.mu is held (the
// loop closes wake under it).
func (l *loop) ring() {
	if !l.rung {
		l.rung = true
		one := [8]byte{1}
		rawWrite(l.wake, one[:])
	}
}

// stop makes the loop release its connections and return.
func (l *loop) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.stopped = true
		l.ring()
	}
}

func (l *loop) run() {
	defer close(l.done)
	l.now = time.Now()
	l.tick = l.now.Add(loopTick)
	l.epf.SetReadDeadline(l.tick)
	for {
		var n int
		var werr error
		polls := 0
		err := l.rc.Read(func(uintptr) bool {
			polls++
			n, werr = rawEpollWait(l.ep, l.events)
			if werr == unix.EINTR {
				n, werr = 0, nil
				return true
			}
			return n > 0 || werr != nil
		})
		if err == nil {
			err = werr
		}
		l.now = time.Now()
		if polls > 1 {
			// It found nothing to do, and waited in the netpoller.
			l.busyFrom = l.now
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			l.s.logger.Error("event loop failed", "err", err)
			l.shutdown()
			return
		}
		for _, ev := range l.events[:max(n, 0)] {
			if ev.Fd == int32(l.wake) {
				if !l.takeInbox() {
					l.answer()
					l.shutdown()
					return
				}
				continue
			}
			lc := l.conns[ev.Fd]
			if lc == nil {
				if lc = l.away[ev.Fd]; lc != nil {
					// Its sync is not done: hear from it once back.
					l.disarm(lc)
					delete(l.away, ev.Fd)
				}
				continue
			}
			if lc.writing {
				l.send(lc)
			} else {
				l.serve(lc)
			}
			if time.Since(l.busyFrom) >= yieldAfter {
				if len(l.syncing) > 0 {
					l.sync() // their sync need not wait for the yield
				}
				l.answer()
				l.yield()
			}
		}
		if len(l.syncing) > 0 {
			l.sync()
		}
		l.answer()
		if !l.now.Before(l.tick) {
			l.expire()
			l.tick = l.now.Add(loopTick)
			l.epf.SetReadDeadline(l.tick)
		}
	}
}

// yieldAfter is how long a loop works without running out of work before
// it yields (see yield).
const yieldAfter = time.Millisecond

// yield lets the Go scheduler run the goroutines that wait for the loop's
// P, the other loops first. The scheduler polls the network only when a P
// runs out of work (or every 10 ms), and preempts a goroutine only after
// 10 ms: while one loop was busy and pebble flushed or compacted on the
// other P, another loop whose sockets were ready waited in the netpoller,
// or readied but queued, for 10–20 ms (a runtime trace of the pipelined
// counter, fsync off: such waits made the replies' p99 of 12 ms). So a
// loop that has worked yieldAfter without a pause makes the scheduler
// poll: it parks on an eventfd of its own that it has just signalled,
// which only a poll of the network readies, and that poll readies as
// well the loops whose sockets are ready; then it goes to the back of the
// run queue, behind them. It costs a few µs a millisecond.
func (l *loop) yield() {
	signalled := false
	l.yrc.Read(func(fd uintptr) bool {
		var b [8]byte
		if !signalled {
			signalled = true
			b[0] = 1
			rawWrite(int(fd), b[:])
			return false
		}
		rawRead(int(fd), b[:])
		return true
	})
	runtime.Gosched()
	l.busyFrom = time.Now()
	l.yields.Add(1)
}

// takeInbox takes the connections posted to the loop. It returns false
// once the loop is to stop.
func (l *loop) takeInbox() bool {
	var buf [8]byte
	rawRead(l.wake, buf[:])
	l.mu.Lock()
	in := l.inbox
	l.inbox = nil
	l.rung = false
	stopped := l.stopped
	l.mu.Unlock()
	for _, lc := range in {
		delete(l.away, int32(lc.sk.fd))
		l.conns[int32(lc.sk.fd)] = lc
		lc.lastIO = l.now
		if !lc.syncing {
			l.arm(lc, unix.EPOLLIN)
			continue
		}
		// Back from a sync: send the replies, if the writes are durable.
		perr, synced := lc.perr, lc.synced
		lc.syncing, lc.perr, lc.synced = false, nil, nil
		if synced != nil {
			l.s.notDurable(lc.c, synced)
			lc.cn.out = lc.cn.out[:0]
			l.drop(lc, synced)
			continue
		}
		// The connections a sync hands back arrive together: their
		// replies go out back to back already.
		l.finish(lc, perr)
	}
	return !stopped
}

// sync hands the connections whose writes wait for a sync to a
// goroutine, which waits for each in turn and hands it back as soon as
// its writes are durable: a turn's writes may straddle two syncs, and
// the connections covered by the first need not wait for the second
// (unpipelined counter, fsync always: 4–8% faster than handing them back
// together).
func (l *loop) sync() {
	batch := l.syncing
	l.syncing = nil
	go func() {
		for _, lc := range batch {
			lc.synced = lc.c.syncPending()
			l.post(lc)
		}
	}()
}

// arm puts the connection's socket in the epoll set, waiting for events.
func (l *loop) arm(lc *lconn, events uint32) {
	op := unix.EPOLL_CTL_MOD
	if !lc.armed {
		op = unix.EPOLL_CTL_ADD
	}
	if err := unix.EpollCtl(l.ep, op, lc.sk.fd, &unix.EpollEvent{Events: events, Fd: int32(lc.sk.fd)}); err != nil {
		l.drop(lc, err)
		return
	}
	lc.armed = true
}

// disarm takes the socket out of the epoll set.
func (l *loop) disarm(lc *lconn) {
	if lc.armed {
		unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, lc.sk.fd, nil)
		lc.armed = false
	}
}

// serve reads what the connection sent and runs its commands, unless one
// of them may wait: then the connection leaves the loop.
func (l *loop) serve(lc *lconn) {
	cn := lc.cn
	err := cn.fill()
	if err == errWouldBlock {
		return
	}
	if err != nil {
		l.drop(lc, err)
		return
	}
	lc.lastIO = l.now
	perr := cn.parse()
	if l.s.mustWait(cn.reqs) {
		l.offload(lc, perr)
		return
	}
	pipelined := len(cn.reqs) > 1
	cn.runAll(lc.c.runner)
	if len(lc.c.pending) > 0 && !cn.closed {
		// Writes wait for a sync: their replies wait with them.
		delete(l.conns, int32(lc.sk.fd))
		l.away[int32(lc.sk.fd)] = lc
		lc.syncing, lc.perr = true, perr
		l.syncing = append(l.syncing, lc)
		return
	}
	if !pipelined {
		l.finish(lc, perr)
		return
	}
	l.answering = append(l.answering, answer{lc, perr})
}

// answer sends the replies of the turn's pipelined reads (see finish).
// They go together at the end of the turn (or before a yield, at most
// yieldAfter later), as Redis sends all its replies before it polls
// again, rather than each as soon as it is ready: a client that waits on
// many connections (a benchmark, a pool) then wakes once for several of
// them, not once for each. The pipelined counter (fsync off, 50 clients)
// gained about 7%: redis-benchmark's CPU per request fell by a quarter,
// the server's by 5%. An unpipelined read is answered at once: holding
// its reply for the turn added 10–20% to its median latency and gained
// nothing.
func (l *loop) answer() {
	for i, a := range l.answering {
		l.finish(a.lc, a.perr)
		l.answering[i] = answer{}
	}
	l.answering = l.answering[:0]
}

// finish sends the replies of the commands a read brought, answers the
// parse error, if any, after them, and settles what the connection waits
// for next.
func (l *loop) finish(lc *lconn, perr error) {
	cn := lc.cn
	err := cn.finish(perr)
	if err != nil && !errors.As(err, new(protocolError)) {
		l.drop(lc, err)
		return
	}
	if err != nil {
		// A client that sent garbage gets a second, not the write
		// timeout, to take the error before the connection closes.
		cn.closed = true
		if stuck := time.Duration(l.s.lim.writeTimeout.Load()); stuck > time.Second {
			lc.lastIO = l.now.Add(time.Second - stuck)
		}
	}
	l.settle(lc)
}

// settle decides what the connection waits for next: room to send its
// replies, or its next read; or it closes.
func (l *loop) settle(lc *lconn) {
	cn := lc.cn
	if len(cn.out) > 0 {
		// The kernel took part of the replies: send the rest when it has
		// room, and read nothing meanwhile.
		if !lc.writing {
			lc.writing = true
			if !cn.closed {
				lc.lastIO = l.now
			}
			l.arm(lc, unix.EPOLLOUT)
		}
		return
	}
	if cn.closed {
		l.drop(lc, nil)
		return
	}
	if lc.writing || !lc.armed {
		lc.writing = false
		l.arm(lc, unix.EPOLLIN)
	}
}

// send sends more of the replies waiting for room.
func (l *loop) send(lc *lconn) {
	n := len(lc.cn.out)
	if err := lc.cn.flush(); err != nil {
		l.drop(lc, err)
		return
	}
	if len(lc.cn.out) < n {
		lc.lastIO = l.now
	}
	if len(lc.cn.out) == 0 && lc.cn.closed {
		lc.cn.nc.Close()
	}
	l.settle(lc)
}

// offload hands the connection to a goroutine of its own, which runs
// the commands read and serves the connection while its commands may
// wait: a client whose commands wait (for a disk sync, say) would keep
// its loop waiting for the handover on every request.
func (l *loop) offload(lc *lconn, perr error) {
	l.disarm(lc)
	delete(l.conns, int32(lc.sk.fd))
	go l.detach(lc, perr) // the connection's count in conns goes with it
}

// detach serves a connection the loop gave up, on a goroutine of its own
// through Go's netpoller, until calmReads reads in a row have brought
// nothing that may wait and left nothing unread: the connection then goes
// back to the loop. (Otherwise a passing cause, a stall of the store's
// writes, would leave every client that wrote during it off its loop for
// good.)
func (l *loop) detach(lc *lconn, perr error) {
	s := l.s
	s.ownGoroutines.Add(1)
	defer s.ownGoroutines.Add(-1)
	lc.c.deferSync = false // its own goroutine waits for its syncs
	cn := lc.cn
	err := lc.sk.detach()
	if err == nil {
		err = cn.run(perr, lc.c.runner)
	}
	calm := 0 // reads in a row that brought nothing that waits
	for err == nil && !cn.closed {
		if err = cn.fill(); err != nil {
			break
		}
		perr := cn.parse()
		if s.mustWait(cn.reqs) {
			calm = 0
		} else {
			calm++
		}
		if err = cn.run(perr, lc.c.runner); err != nil || cn.closed {
			break
		}
		if calm >= calmReads && cn.start == cn.end && l.reattach(lc) {
			return
		}
	}
	cn.close()
	s.closed(lc.c, err)
	s.conns.Done()
}

// reattach gives a detached connection, whose replies are all sent, back
// to the loop. It reports false, leaving the connection detached, if its
// socket cannot be taken back.
func (l *loop) reattach(lc *lconn) bool {
	if err := lc.sk.attach(); err != nil {
		return false
	}
	lc.c.deferSync = l.s.syncWrites
	l.adopt(lc)
	return true
}

// expire closes connections idle for the timeout, and drops clients
// whose replies have waited for room for the write timeout.
func (l *loop) expire() {
	idle := time.Duration(l.s.lim.idle.Load())
	stuck := time.Duration(l.s.lim.writeTimeout.Load())
	for _, lc := range l.conns {
		since := l.now.Sub(lc.lastIO)
		switch {
		case lc.writing && stuck > 0 && since >= stuck:
			l.drop(lc, os.ErrDeadlineExceeded)
		case !lc.writing && idle > 0 && since >= idle:
			l.drop(lc, os.ErrDeadlineExceeded)
		}
	}
}

// drop releases a connection the loop holds.
func (l *loop) drop(lc *lconn, err error) {
	l.disarm(lc)
	delete(l.conns, int32(lc.sk.fd))
	l.s.release(lc.sk, lc.c, err)
}

// shutdown releases every connection the loop holds, and closes the
// loop.
func (l *loop) shutdown() {
	l.mu.Lock()
	l.stopped = true
	in := l.inbox
	l.inbox = nil
	unix.Close(l.wake)
	l.mu.Unlock()
	for _, lc := range append(in, l.syncing...) {
		l.s.release(lc.sk, lc.c, net.ErrClosed) // waits for their syncs
	}
	l.syncing = nil
	for _, lc := range l.conns {
		l.drop(lc, net.ErrClosed)
	}
	l.epf.Close()
	l.yf.Close()
}

// release closes a loop connection's socket and forgets its client.
func (s *Server) release(k *sock, c *client, err error) {
	k.release()
	s.closed(c, err)
	s.conns.Done()
}

// serveLoop hands an accepted connection to the next loop, or to a
// goroutine of its own if its socket cannot be taken.
func (s *Server) serveLoop(nc net.Conn) {
	k, err := takeSocket(nc, &s.lim)
	if err != nil {
		go s.serveConn(&guardConn{Conn: nc, lim: &s.lim})
		return
	}
	cn := newConn(k, &s.lim)
	c := s.accept(cn)
	if c == nil {
		cn.close() // sends the refusal first
		k.release()
		s.conns.Done()
		return
	}
	c.deferSync = s.syncWrites
	l := s.loops[s.nextLoop%len(s.loops)]
	s.nextLoop++
	l.adopt(&lconn{sk: k, cn: cn, c: c})
}

// loopsAvailable reports whether this platform has event loops.
const loopsAvailable = true

// Raw system calls
//
// A loop's reads, writes and epoll waits never block: its sockets and its
// eventfd are non-blocking, and it polls epoll with a zero timeout. So it
// makes them as raw system calls, without the runtime's bookkeeping for
// calls that may block, whose side effect costs most: whenever every P has
// been idle for a moment, as between a server's requests, the runtime's
// monitor thread (sysmon) sleeps, and the next ordinary system call wakes
// it and sets it polling every 20 µs again, until it finds nothing to do
// and sleeps again. With unpipelined clients that cycle never ends, and
// its wakeups and sleeps took about a fifth of the kernel time per
// request (PING, 50 clients: 8.0–8.6 µs of system time per request with
// ordinary calls, 6.2–6.8 µs with raw ones; Redis 6.6–7.8 µs). The race
// detector does not see the kernel fill a raw read's buffer, which only
// the loop uses.

func rawRead(fd int, p []byte) (int, error)  { return rawIO(unix.SYS_READ, fd, p) }
func rawWrite(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

// rawIO makes the read or write system call trap on fd with p.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// rawEpollWait takes the events ready in ep without waiting.
func rawEpollWait(ep int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
