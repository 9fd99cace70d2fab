package resp

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
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
