package resp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/legiondb/legion"
	"github.com/redis/go-redis/v9"
)

// TestBusyLoopYields: a loop that has worked yieldAfter without running
// out of work yields, and goes on serving every connection in order.
func TestBusyLoopYields(t *testing.T) {
	// spin works on the CPU for a quarter of yieldAfter, as a handler
	// does; a pipeline of eight is twice yieldAfter of work in one read.
	spin := &command{name: "spin", arity: 2, run: func(s *Server, c *client, args [][]byte, w *writer) {
		for start := time.Now(); time.Since(start) < yieldAfter/4; {
		}
		w.bulk(args[1])
	}}
	srv, c := startWith(t, Config{EventLoops: 1}, spin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	srv.lnMu.Lock()
	l := srv.loops[0]
	srv.lnMu.Unlock()
	before := l.yields.Load()
	const clients, rounds, depth = 3, 4, 8
	errs := make(chan error, clients)
	for i := range clients {
		nc := dialServer(t, c.Options().Addr)
		go func() {
			rd := bufio.NewReader(nc)
			for r := range rounds {
				var pipe strings.Builder
				for j := range depth {
					fmt.Fprintf(&pipe, "SPIN %d-%d-%d\r\n", i, r, j)
				}
				nc.Write([]byte(pipe.String()))
				for j := range depth {
					want := fmt.Sprintf("%d-%d-%d", i, r, j)
					rd.ReadString('\n')
					if got, err := rd.ReadString('\n'); got != want+"\r\n" {
						errs <- fmt.Errorf("client %d: reply %q, %v; want %q", i, got, err, want)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Every read of eight SPINs keeps the loop busy past yieldAfter
	// (unless TCP splits the pipeline and the loop runs out of work in
	// between, hence the slack).
	if got := l.yields.Load() - before; got < rounds {
		t.Fatalf("%d yields over %d pipelines of twice yieldAfter of work each", got, clients*rounds)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestBusyLoopYieldsWhileSyncing: with fsync always, a loop that yields
// mid-turn, while connections of the turn wait for their writes' sync,
// still answers every write, in order.
func TestBusyLoopYieldsWhileSyncing(t *testing.T) {
	cfg := legion.DefaultConfig() // fsync always
	cfg.FS, cfg.DataDir = vfs.NewMem(), "db"
	db, err := legion.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(db, Config{EventLoops: 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer func() {
		srv.Shutdown()
		db.Close()
	}()
	// Each event works the CPU a while, so a pipeline of them keeps the
	// loop busy past yieldAfter.
	const slowCounter = `function apply(event, state, ctx)
  state = state or { count = 0 }
  local x = 0
  for i = 1, tonumber(event) do x = x + i end
  state.count = state.count + 1
  return state.count, state
end`
	c := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Do(ctx, "SCRIPT", "LOAD", slowCounter).Err(); err != nil {
		t.Fatal(err)
	}
	// Calibrate: enough work that one pipeline takes over yieldAfter.
	work := 1000
	for {
		start := time.Now()
		if err := c.Do(ctx, "LEGION.APPLY", "calibrate", work).Err(); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > yieldAfter/4 || work > 1<<24 {
			break
		}
		work *= 2
	}
	srv.lnMu.Lock()
	l := srv.loops[0]
	srv.lnMu.Unlock()
	before := l.yields.Load()
	const clients, rounds, depth = 3, 3, 8
	errs := make(chan error, clients)
	for i := range clients {
		nc := dialServer(t, ln.Addr().String())
		go func() {
			rd := bufio.NewReader(nc)
			key := fmt.Sprintf("k%d", i)
			n := 0
			for range rounds {
				var pipe strings.Builder
				for range depth {
					fmt.Fprintf(&pipe, "LEGION.APPLY %s %d\r\n", key, work)
				}
				nc.Write([]byte(pipe.String()))
				for range depth {
					n++
					if got, err := rd.ReadString('\n'); got != fmt.Sprintf(":%d\r\n", n) {
						errs <- fmt.Errorf("client %d: reply %q, %v; want :%d", i, got, err, n)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := l.yields.Load() - before; got < rounds {
		t.Fatalf("%d yields over %d pipelines of over yieldAfter of work each", got, clients*rounds)
	}
}
