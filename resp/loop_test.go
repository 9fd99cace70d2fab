package resp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/legiondb/legion"
	"github.com/redis/go-redis/v9"
)

// modes are the two ways a server serves connections; the tests below
// run in both. (Elsewhere than Linux both are goroutines.)
var modes = []struct {
	name  string
	loops int
}{{"goroutines", -1}, {"one-loop", 1}}

// inModes runs test once in each mode.
func inModes(t *testing.T, test func(t *testing.T, loops int)) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { test(t, m.loops) })
	}
}

func dialServer(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// echoPipeline is n ECHOs of distinct payloads of size bytes, and the
// payloads.
func echoPipeline(n, size int) ([]byte, []string) {
	var b strings.Builder
	var want []string
	for i := range n {
		p := fmt.Sprintf("%06d", i) + strings.Repeat("x", size-6)
		want = append(want, p)
		fmt.Fprintf(&b, "*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n", len(p), p)
	}
	return []byte(b.String()), want
}

// readBulks reads len(want) bulk replies and checks each.
func readBulks(t *testing.T, rd *bufio.Reader, want []string) {
	t.Helper()
	for i, w := range want {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if line != fmt.Sprintf("$%d\r\n", len(w)) {
			t.Fatalf("reply %d header %q", i, line)
		}
		got := make([]byte, len(w)+2)
		if _, err := io.ReadFull(rd, got); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if string(got) != w+"\r\n" {
			t.Fatalf("reply %d differs: %.20q…", i, got)
		}
	}
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSlowReaderHoldsOnlyItself: a client sends a pipeline whose replies
// are far larger than the socket buffers and reads nothing for a while.
// The other clients (on the same loop, in loop mode) are served
// meanwhile; then the slow client gets every reply, whole and in order.
func TestSlowReaderHoldsOnlyItself(t *testing.T) {
	inModes(t, func(t *testing.T, loops int) {
		_, c := startWith(t, Config{EventLoops: loops})
		nc := dialServer(t, c.Options().Addr)
		req, want := echoPipeline(200, 64<<10)
		sent := make(chan error, 1)
		go func() { _, err := nc.Write(req); sent <- err }()
		time.Sleep(200 * time.Millisecond) // the replies back up
		for range 20 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := c.Ping(ctx).Err()
			cancel()
			if err != nil {
				t.Fatalf("another client while one reads slowly: %v", err)
			}
		}
		readBulks(t, bufio.NewReader(nc), want)
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	})
}

// TestQuitAfterLargeReplies: QUIT after a pipeline whose replies wait for
// the client to read them closes the connection only after all of them.
func TestQuitAfterLargeReplies(t *testing.T) {
	inModes(t, func(t *testing.T, loops int) {
		_, c := startWith(t, Config{EventLoops: loops})
		nc := dialServer(t, c.Options().Addr)
		req, want := echoPipeline(100, 32<<10)
		go nc.Write(append(req, "QUIT\r\n"...))
		time.Sleep(200 * time.Millisecond)
		rd := bufio.NewReader(nc)
		readBulks(t, rd, want)
		if line, err := rd.ReadString('\n'); line != "+OK\r\n" {
			t.Fatalf("QUIT answered %q (%v)", line, err)
		}
		if b, err := rd.ReadByte(); err != io.EOF {
			t.Fatalf("after QUIT read %q, %v; want EOF", b, err)
		}
	})
}

// TestStuckReaderIsDropped: a client that takes no replies for the write
// timeout is disconnected; the others go on.
func TestStuckReaderIsDropped(t *testing.T) {
	inModes(t, func(t *testing.T, loops int) {
		srv, c := startWith(t, Config{EventLoops: loops, WriteTimeout: 300 * time.Millisecond})
		if err := c.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		nc := dialServer(t, c.Options().Addr)
		req, _ := echoPipeline(200, 64<<10)
		go nc.Write(req)
		waitFor(t, "the stuck client to be connected", func() bool { return srv.Clients() == 2 })
		waitFor(t, "the stuck client to be dropped", func() bool { return srv.Clients() == 1 })
		if err := c.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestIdleClientIsClosed: IdleTimeout closes a connection that sends
// nothing, and only after it has been idle that long.
func TestIdleClientIsClosed(t *testing.T) {
	inModes(t, func(t *testing.T, loops int) {
		_, c := startWith(t, Config{EventLoops: loops, IdleTimeout: 300 * time.Millisecond})
		nc := dialServer(t, c.Options().Addr)
		rd := bufio.NewReader(nc)
		start := time.Now()
		// Busy for longer than the timeout: never closed meanwhile.
		for time.Since(start) < 600*time.Millisecond {
			time.Sleep(50 * time.Millisecond)
			nc.Write([]byte("PING\r\n"))
			if line, err := rd.ReadString('\n'); line != "+PONG\r\n" {
				t.Fatalf("PING: %q, %v", line, err)
			}
		}
		idleFrom := time.Now()
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := rd.ReadByte(); err != io.EOF {
			t.Fatalf("idle connection read %q, %v; want EOF", b, err)
		}
		if d := time.Since(idleFrom); d < 250*time.Millisecond {
			t.Fatalf("closed after %v idle, before the timeout", d)
		}
	})
}

// TestWaitingCommandLeavesTheLoop: a command that waits (a disk sync, a
// backup) moves its connection off the loop, so the loop's other clients
// are served while it waits; the moved connection goes on working, and
// goes back to its loop once calmReads reads in a row bring nothing that
// waits.
func TestWaitingCommandLeavesTheLoop(t *testing.T) {
	inModes(t, func(t *testing.T, loops int) {
		withLoops := loops >= 0 && loopsAvailable
		started, release := make(chan struct{}), make(chan struct{})
		park := &command{name: "park", arity: 1, waits: true, run: func(s *Server, c *client, args [][]byte, w *writer) {
			started <- struct{}{}
			<-release
			w.status("DONE")
		}}
		srv, c := startWith(t, Config{EventLoops: loops}, park)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// INFO tells the loops and the clients off them apart.
		checkInfo := func(goroutineClients int) {
			t.Helper()
			want := []string{"multiplexing_api:epoll", "event_loops:1", fmt.Sprintf("goroutine_clients:%d", goroutineClients)}
			if !withLoops {
				want = []string{"multiplexing_api:goroutines", "event_loops:0", "goroutine_clients:2"}
			}
			info := c.Info(ctx, "server", "clients").Val()
			for _, w := range want {
				if !strings.Contains(info, w+"\r\n") {
					t.Fatalf("INFO lacks %q:\n%s", w, info)
				}
			}
		}
		nc := dialServer(t, c.Options().Addr)
		rd := bufio.NewReader(nc)
		expect := func(when string, want ...string) {
			t.Helper()
			for _, w := range want {
				if line, err := rd.ReadString('\n'); line != w {
					t.Fatalf("%s: %q, %v; want %q", when, line, err, w)
				}
			}
		}
		for round := range 3 {
			nc.Write([]byte("PARK\r\n"))
			<-started
			if err := c.Ping(ctx).Err(); err != nil {
				close(release)
				t.Fatalf("another client while one waits: %v", err)
			}
			checkInfo(1)
			release <- struct{}{}
			expect("PARK", "+DONE\r\n")
			// Still off the loop: a read with a command that waits
			// keeps it there.
			nc.Write([]byte("PARK\r\nPING\r\n"))
			<-started
			release <- struct{}{}
			expect("PARK, PING", "+DONE\r\n", "+PONG\r\n")
			checkInfo(1)
			// Reads with nothing that waits send it back, calmReads
			// of them in a row.
			for i := range calmReads {
				if withLoops && i > 0 {
					checkInfo(1)
				}
				nc.Write([]byte("PING\r\nECHO hi\r\n"))
				expect(fmt.Sprintf("round %d, read %d after PARK", round, i), "+PONG\r\n", "$2\r\n", "hi\r\n")
			}
			if withLoops {
				waitFor(t, "the connection back on its loop", func() bool {
					return srv.ownGoroutines.Load() == 0
				})
			}
			checkInfo(0)
			nc.Write([]byte("ECHO back\r\n"))
			expect("on the loop again", "$4\r\n", "back\r\n")
		}
		// The loop drops it like any other when it hangs up.
		nc.Close()
		waitFor(t, "the connection to be released", func() bool { return srv.Clients() == 1 })
	})
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd here")
	}
	return len(ents)
}

// TestConnectionsReleaseDescriptors: however a connection ends (QUIT, the
// client hanging up, CLIENT KILL, a protocol error, after leaving its
// loop, after coming back to it), the server closes its socket.
func TestConnectionsReleaseDescriptors(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts descriptors in /proc")
	}
	// A leaked net.Conn's finalizer would close its descriptor at the
	// next collection and hide the leak.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	inModes(t, func(t *testing.T, loops int) {
		hop := &command{name: "hop", arity: 1, waits: true, run: func(s *Server, c *client, args [][]byte, w *writer) { w.ok() }}
		srv, c := startWith(t, Config{EventLoops: loops}, hop)
		ctx := context.Background()
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		base := openFDs(t)
		for i := range 42 {
			nc, err := net.Dial("tcp", c.Options().Addr)
			if err != nil {
				t.Fatal(err)
			}
			// QUIT, the client hanging up, CLIENT KILL, a protocol error,
			// leaving the loop, leaving it and coming back.
			send := []string{"QUIT", "PING", "CLIENT ID", "*x", "HOP", "HOP"}[i%6]
			rd := bufio.NewReader(nc)
			nc.Write([]byte(send + "\r\n"))
			line, _ := rd.ReadString('\n')
			if i%6 == 5 {
				for range calmReads {
					nc.Write([]byte("PING\r\n"))
					rd.ReadString('\n')
				}
			}
			if send == "CLIENT ID" {
				if err := c.ClientKillByFilter(ctx, "ID", strings.TrimSpace(line[1:])).Err(); err != nil {
					t.Fatal(err)
				}
			}
			nc.Close()
		}
		waitFor(t, "every connection to be released", func() bool {
			return srv.Clients() == 1 && openFDs(t) <= base
		})
	})
}

// TestMustWait: the commands an event loop hands to a goroutine are the
// ones that may wait — writes only when every write waits for a sync.
func TestMustWait(t *testing.T) {
	for _, fsync := range []legion.FsyncMode{legion.FsyncNo, legion.FsyncAlways} {
		cfg := legion.DefaultConfig()
		cfg.InMemory, cfg.Fsync = true, fsync
		db, err := legion.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		s := New(db, Config{})
		for _, tc := range []struct {
			cmd   string
			waits bool
		}{
			{"PING", false},
			{"legion.search t", false},
			{"LEGION.GET k", false},
			{"nosuchcommand x", false},
			{"SCRIPT EXISTS abc", false},
			{"script load x", true},
			{"SCRIPT FLUSH", true},
			{"LEGION.CHECK", true},
			{"LEGION.BACKUP /tmp/x", true},
			{"LEGION.SCRIPT USE abc", true},
			// A loop waits for a write's sync off the loop.
			{"LEGION.APPLY k e", false},
		} {
			var args [][]byte
			for _, a := range strings.Fields(tc.cmd) {
				args = append(args, []byte(a))
			}
			reqs := []request{{Args: [][]byte{[]byte("PING")}}, {Args: args}}
			if got := s.mustWait(reqs); got != tc.waits {
				t.Errorf("fsync %v: %q waits = %v, want %v", fsync, tc.cmd, got, tc.waits)
			}
		}
		// More writes in one read than a pipeline holds before it syncs:
		// with fsync always the connection would sync in the middle.
		var many []request
		for range maxDeferred {
			many = append(many, request{Args: [][]byte{[]byte("LEGION.APPLY"), []byte("k"), []byte("e")}})
		}
		if got := s.mustWait(many); got != (fsync == legion.FsyncAlways) {
			t.Errorf("fsync %v: %d writes in one read wait = %v", fsync, len(many), got)
		}
	}
}

// TestChurn drives many clients at once through everything a connection
// can do — pipelines cut anywhere, large replies, leaving the loop,
// QUIT, protocol errors, hanging up half-way through a command — and
// checks every reply, then that every connection was released.
func TestChurn(t *testing.T) {
	for _, m := range []struct {
		name  string
		loops int
	}{{"goroutines", -1}, {"two-loops", 2}} {
		t.Run(m.name, func(t *testing.T) {
			hop := &command{name: "hop", arity: 1, waits: true, run: func(s *Server, c *client, args [][]byte, w *writer) { w.ok() }}
			srv, c := startWith(t, Config{EventLoops: m.loops}, hop)
			if err := c.Ping(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
			base := openFDs(t)
			addr := c.Options().Addr
			errs := make(chan error, 16)
			for g := range 16 {
				go func() { errs <- churn(addr, g) }()
			}
			for range 16 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "every connection to be released", func() bool {
				return srv.Clients() == 1 && openFDs(t) <= base
			})
		})
	}
}

// churn is one client of TestChurn.
func churn(addr string, seed int) error {
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	var nc net.Conn
	var rd *bufio.Reader
	dial := func() error {
		if nc != nil {
			nc.Close()
		}
		var err error
		nc, err = net.Dial("tcp", addr)
		rd = bufio.NewReader(nc)
		return err
	}
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	if err := dial(); err != nil {
		return err
	}
	expect := func(want string) error {
		nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(rd, got); err != nil {
			return fmt.Errorf("client %d: want %.40q: %v", seed, want, err)
		}
		if string(got) != want {
			return fmt.Errorf("client %d: got %.40q, want %.40q", seed, got, want)
		}
		return nil
	}
	eof := func() error {
		nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		if b, err := rd.ReadByte(); err != io.EOF {
			return fmt.Errorf("client %d: read %q, %v; want EOF", seed, b, err)
		}
		return dial()
	}
	// exchange sends, expects the replies, and, if the server then
	// closes, the end of the connection (and dials again).
	exchange := func(send, want string, closes bool) error {
		nc.Write([]byte(send))
		if err := expect(want); err != nil || !closes {
			return err
		}
		return eof()
	}
	for range 100 {
		switch rng.IntN(6) {
		case 0, 1: // a pipeline, written in random pieces
			var req, want []byte
			for range 1 + rng.IntN(30) {
				p := strings.Repeat(string(rune('a'+rng.IntN(26))), 1+rng.IntN(1<<rng.IntN(17)))
				req = fmt.Appendf(req, "*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n", len(p), p)
				want = fmt.Appendf(want, "$%d\r\n%s\r\n", len(p), p)
			}
			var cuts []int
			for rest := len(req); rest > 0; {
				n := min(rest, 1+rng.IntN(8<<10))
				cuts = append(cuts, n)
				rest -= n
			}
			go func(w net.Conn) {
				for _, n := range cuts {
					if _, err := w.Write(req[:n]); err != nil {
						return
					}
					req = req[n:]
				}
			}(nc)
			if err := expect(string(want)); err != nil {
				return err
			}
		case 2: // leave the loop, then go on
			if err := exchange("HOP\r\nPING\r\n", "+OK\r\n+PONG\r\n", false); err != nil {
				return err
			}
		case 3:
			if err := exchange("PING\r\nQUIT\r\nPING\r\n", "+PONG\r\n+OK\r\n", true); err != nil {
				return err
			}
		case 4:
			if err := exchange("PING\r\n*1\r\n$x\r\n", "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n", true); err != nil {
				return err
			}
		case 5: // hang up in the middle of a command
			nc.Write([]byte("*2\r\n$4\r\nECHO\r\n$100\r\nabc"))
			if err := dial(); err != nil {
				return err
			}
		}
	}
	return nil
}

// gatedFS holds every sync of pebble's write-ahead log while closed.
type gatedFS struct {
	vfs.FS
	mu   sync.Mutex
	gate chan struct{} // nil while open
}

func (g *gatedFS) close() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedFS) open() {
	g.mu.Lock()
	close(g.gate)
	g.gate = nil
	g.mu.Unlock()
}

func (g *gatedFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &gatedFile{File: f, fs: g}, nil
}

func (g *gatedFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.Create(name, cat)
	return g.wrap(name, f, err)
}

func (g *gatedFS) ReuseForWrite(old, name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.ReuseForWrite(old, name, cat)
	return g.wrap(name, f, err)
}

type gatedFile struct {
	vfs.File
	fs *gatedFS
}

func (f *gatedFile) wait() {
	f.fs.mu.Lock()
	gate := f.fs.gate
	f.fs.mu.Unlock()
	if gate != nil {
		<-gate
	}
}

func (f *gatedFile) Sync() error     { f.wait(); return f.File.Sync() }
func (f *gatedFile) SyncData() error { f.wait(); return f.File.SyncData() }
func (f *gatedFile) SyncTo(n int64) (bool, error) {
	f.wait()
	return f.File.SyncTo(n)
}

// TestRepliesWaitForTheSync: with fsync always, no reply to a write is
// sent before the log holding it is synced — and while a connection's
// writes wait for their sync, its loop serves the other clients.
func TestRepliesWaitForTheSync(t *testing.T) {
	inModes(t, func(t *testing.T, loops int) {
		fs := &gatedFS{FS: vfs.NewMem()}
		cfg := legion.DefaultConfig()
		cfg.FS, cfg.DataDir = fs, "db"
		db, err := legion.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := New(db, Config{EventLoops: loops})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		defer func() {
			srv.Shutdown()
			db.Close()
		}()
		c := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1})
		defer c.Close()
		ctx := context.Background()
		if err := c.Do(ctx, "SCRIPT", "LOAD", counterHandler).Err(); err != nil {
			t.Fatal(err)
		}
		// SCRIPT LOAD moved c's connection off the loop: the reader is
		// another client.
		reader := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1})
		defer reader.Close()
		nc := dialServer(t, ln.Addr().String())
		rd := bufio.NewReader(nc)
		count := 0
		held := func(round int) {
			nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if b, err := rd.ReadByte(); err == nil {
				fs.open()
				t.Fatalf("round %d: a reply (%q…) came before the sync", round, b)
			}
		}
		for round := range 4 {
			fs.close()
			// One write alone, then pipelines of three; in the last
			// round, one more write comes while the sync is held.
			req := "LEGION.APPLY k incr\r\n"
			if round > 0 {
				req = strings.Repeat(req, 3)
			}
			nc.Write([]byte(req))
			held(round)
			if round == 3 {
				more := "LEGION.APPLY k incr\r\n"
				nc.Write([]byte(more))
				req += more
				held(round)
			}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := reader.Do(pctx, "LEGION.GET", "k").Err()
			cancel()
			if err != nil {
				fs.open()
				t.Fatalf("round %d: another client while a write waits for its sync: %v", round, err)
			}
			fs.open()
			nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			for range strings.Count(req, "\n") {
				count++
				line, err := rd.ReadString('\n')
				if err != nil {
					t.Fatalf("round %d: after the sync: %v", round, err)
				}
				if want := fmt.Sprintf(":%d\r\n", count); line != want {
					t.Fatalf("round %d: reply %q, want %q", round, line, want)
				}
			}
		}
		// A client that hangs up while its write waits for the sync: the
		// write stands, and the loop goes on serving.
		fs.close()
		gone := dialServer(t, ln.Addr().String())
		gone.Write([]byte("LEGION.APPLY k incr\r\n"))
		time.Sleep(100 * time.Millisecond)
		gone.Close()
		time.Sleep(100 * time.Millisecond)
		fs.open()
		count++
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			got := reader.Do(ctx, "LEGION.GET", "k").Val()
			if got == fmt.Sprintf(`{"count":%d}`, count) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the write of a client that hung up during its sync: state %v, want count %d", got, count)
			}
		}
		nc.Write([]byte("LEGION.APPLY k incr\r\n"))
		count++
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := rd.ReadString('\n'); err != nil || line != fmt.Sprintf(":%d\r\n", count) {
			t.Fatalf("after a client hung up during its sync: %q, %v; want :%d", line, err, count)
		}
		if got, want := c.Do(ctx, "LEGION.GET", "k").Val(), fmt.Sprintf(`{"count":%d}`, count); got != want {
			t.Fatalf("state %v, want %v", got, want)
		}
	})
}

const counterHandler = `function apply(event, state, ctx)
  state = state or { count = 0 }
  state.count = state.count + 1
  return state.count, state
end`
