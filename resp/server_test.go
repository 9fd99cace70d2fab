package resp

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/legiondb/legion"
	"github.com/redis/go-redis/v9"
)

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startInProcess serves an in-memory DB on a free loopback port.
func startInProcess(t *testing.T, logs *lockedBuffer, extra ...*command) (*Server, *redis.Client) {
	t.Helper()
	return startWith(t, Config{Logger: slog.New(slog.NewTextHandler(logs, nil))}, extra...)
}

// startWith serves an in-memory DB (synced writes, the default) on a free
// loopback port with the given configuration.
func startWith(t *testing.T, scfg Config, extra ...*command) (*Server, *redis.Client) {
	t.Helper()
	cfg := legion.DefaultConfig()
	cfg.InMemory = true
	db, err := legion.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(db, scfg)
	for _, cmd := range extra {
		srv.commands[cmd.name] = cmd
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	c := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1})
	t.Cleanup(func() {
		c.Close()
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
		db.Close()
	})
	return srv, c
}

// TestPanicIsIsolated: a command that panics half-way through its reply is
// answered with one clean error, logged with its stack, and both the
// connection and the server go on.
func TestPanicIsIsolated(t *testing.T) {
	logs := &lockedBuffer{}
	boom := &command{name: "boom", arity: 1, run: func(s *Server, c *client, args [][]byte, w *writer) {
		w.array(3) // half a reply that must never reach the client
		w.bulkString("partial")
		panic("deliberate failure")
	}}
	_, c := startInProcess(t, logs, boom)
	ctx := context.Background()

	err := c.Do(ctx, "BOOM").Err()
	if err == nil || !strings.Contains(err.Error(), "internal error while running 'boom'") {
		t.Fatalf("BOOM = %v", err)
	}
	// Same connection (pool size 1 is not needed: a broken stream would
	// fail every later reply on the connection).
	for i := 0; i < 3; i++ {
		if pong, err := c.Ping(ctx).Result(); err != nil || pong != "PONG" {
			t.Fatalf("PING after panic = %q, %v", pong, err)
		}
	}
	// A pipeline mixing panics and real commands keeps replies in order.
	p := c.Pipeline()
	e1 := p.Echo(ctx, "one")
	b := p.Do(ctx, "BOOM")
	e2 := p.Echo(ctx, "two")
	p.Exec(ctx)
	if e1.Val() != "one" || b.Err() == nil || e2.Val() != "two" {
		t.Fatalf("pipeline: %q %v %q", e1.Val(), b.Err(), e2.Val())
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "deliberate failure") {
		if time.Now().After(deadline) {
			t.Fatalf("panic not logged: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "stack=") {
		t.Fatalf("panic logged without its stack: %s", logs.String())
	}
}

func TestUnknownCommandWording(t *testing.T) {
	long := strings.Repeat("x", 200)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"GET"}, "ERR unknown command 'GET', with args beginning with: "},
		{[]string{"get", "a", "b c"}, "ERR unknown command 'get', with args beginning with: 'a' 'b c' "},
		{[]string{"x", long}, "ERR unknown command 'x', with args beginning with: '" + long[:128] + "' "},
	} {
		var args [][]byte
		for _, a := range tc.args {
			args = append(args, []byte(a))
		}
		if got := unknownCommand(args); got != tc.want {
			t.Errorf("%q:\n got  %q\n want %q", tc.args, got, tc.want)
		}
	}
}

// TestShutdownWaitsForRunningCommands: Shutdown lets a running command
// finish and answer, answers commands arriving meanwhile with an error,
// and returns only when nothing runs.
//
// In loop mode the command is one that waits, so its connection has left
// the loop, which serves the other client meanwhile.
func TestShutdownWaitsForRunningCommands(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { testShutdownWaitsForRunningCommands(t, m.loops) })
	}
}

func testShutdownWaitsForRunningCommands(t *testing.T, loops int) {
	started, release := make(chan struct{}), make(chan struct{})
	block := &command{name: "block", arity: 1, waits: true, run: func(s *Server, c *client, args [][]byte, w *writer) {
		close(started)
		<-release
		w.status("DONE")
	}}
	srv, c := startWith(t, Config{EventLoops: loops}, block)
	ctx := context.Background()
	other := redis.NewClient(&redis.Options{Addr: c.Options().Addr, MaxRetries: -1})
	defer other.Close()
	if err := other.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	reply := make(chan string, 1)
	go func() {
		s, err := c.Do(ctx, "BLOCK").Text()
		if err != nil {
			s = err.Error()
		}
		reply <- s
	}()
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown() }()
	// Shutdown sets closing at once: the other connection's next command
	// is refused while BLOCK still runs.
	for {
		err := other.Ping(ctx).Err()
		if err != nil && strings.Contains(err.Error(), "shutting down") {
			break
		}
		if err != nil {
			t.Fatalf("PING during shutdown: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) while a command was running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if s := <-reply; s != "DONE" {
		t.Fatalf("the running command answered %q, want DONE", s)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// TestShutdownTimeout: a command that outlives ShutdownTimeout makes
// Shutdown report it rather than wait forever.
func TestShutdownTimeout(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	block := &command{name: "block", arity: 1, run: func(s *Server, c *client, args [][]byte, w *writer) {
		close(started)
		<-release
		w.status("DONE")
	}}
	srv, c := startInProcess(t, &lockedBuffer{}, block)
	srv.cfg.ShutdownTimeout = 50 * time.Millisecond
	go c.Do(context.Background(), "BLOCK")
	<-started
	err := srv.Shutdown()
	if err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("Shutdown with a command stuck = %v, want an error saying commands are still running", err)
	}
}
