package resp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
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
	payload := func(i, r, j int) string { return fmt.Sprintf("%d-%d-%d", i, r, j) }
	if err := pipelineRounds(t, c.Options().Addr, clients, rounds, depth,
		func(i, r, j int) string { return "SPIN " + payload(i, r, j) },
		func(i, r, j int) string { p := payload(i, r, j); return fmt.Sprintf("$%d\r\n%s\r\n", len(p), p) },
	); err != nil {
		t.Fatal(err)
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
	srv, c := startWith(t, Config{EventLoops: 1}) // fsync always
	if !srv.syncWrites {
		t.Fatal("writes are not synced")
	}
	// Each event works the CPU a while, so a pipeline of them keeps the
	// loop busy past yieldAfter.
	const slowCounter = `function apply(event, state, ctx)
  state = state or { count = 0 }
  local x = 0
  for i = 1, tonumber(event) do x = x + i end
  state.count = state.count + 1
  return state.count, state
end`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Do(ctx, "SCRIPT", "LOAD", slowCounter).Err(); err != nil {
		t.Fatal(err)
	}
	// Calibrate: enough work that one pipeline of eight takes twice
	// yieldAfter. An event's time is the least of a few runs: on a busy
	// machine one run may include time the loop spent descheduled, and
	// work calibrated on that would keep the loop busy too briefly.
	work := 1000
	for {
		least := time.Duration(1<<63 - 1)
		for range 3 {
			start := time.Now()
			if err := c.Do(ctx, "LEGION.APPLY", "calibrate", work).Err(); err != nil {
				t.Fatal(err)
			}
			least = min(least, time.Since(start))
		}
		if least > yieldAfter/4 || work > 1<<24 {
			break
		}
		work *= 2
	}
	srv.lnMu.Lock()
	l := srv.loops[0]
	srv.lnMu.Unlock()
	before := l.yields.Load()
	const clients, rounds, depth = 3, 3, 8
	if err := pipelineRounds(t, c.Options().Addr, clients, rounds, depth,
		func(i, r, j int) string { return fmt.Sprintf("LEGION.APPLY k%d %d", i, work) },
		func(i, r, j int) string { return fmt.Sprintf(":%d\r\n", r*depth+j+1) },
	); err != nil {
		t.Fatal(err)
	}
	if got := l.yields.Load() - before; got < rounds {
		t.Fatalf("%d yields over %d pipelines of over yieldAfter of work each", got, clients*rounds)
	}
}

// pipelineRounds has clients connections to addr each send rounds
// pipelines of depth commands, cmd(i, r, j) being the jth of client i's
// round r, and checks that the replies are want(i, r, j), in order. It
// returns the first mismatch.
func pipelineRounds(t *testing.T, addr string, clients, rounds, depth int, cmd, want func(i, r, j int) string) error {
	errs := make(chan error, clients)
	for i := range clients {
		nc := dialServer(t, addr)
		go func() {
			rd := bufio.NewReader(nc)
			for r := range rounds {
				var pipe strings.Builder
				for j := range depth {
					pipe.WriteString(cmd(i, r, j) + "\r\n")
				}
				nc.Write([]byte(pipe.String()))
				for j := range depth {
					w := want(i, r, j)
					got := make([]byte, len(w))
					if _, err := io.ReadFull(rd, got); err != nil || string(got) != w {
						errs <- fmt.Errorf("client %d, round %d: reply %q, %v; want %q", i, r, got, err, w)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range clients {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// TestPipelinedRepliesWaitForTurn: the replies of a pipelined read go
// out when the loop's turn ends, together with those of the other
// connections served in it; an unpipelined read is answered at once.
func TestPipelinedRepliesWaitForTurn(t *testing.T) {
	var l *loop
	open := make(chan struct{})
	// gate holds the loop until the test opens it, so what the clients
	// send meanwhile is served in the loop's next turn.
	gate := &command{name: "gate", arity: 1, run: func(s *Server, c *client, args [][]byte, w *writer) {
		<-open
		w.status("OK")
	}}
	// probe answers how many connections of the turn, served before it,
	// are waiting for the turn to end to be answered.
	probe := &command{name: "probe", arity: 1, run: func(s *Server, c *client, args [][]byte, w *writer) {
		w.integer(int64(len(l.answering)))
	}}
	srv, c := startWith(t, Config{EventLoops: 1}, gate, probe)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	srv.lnMu.Lock()
	l = srv.loops[0]
	srv.lnMu.Unlock()

	// turn has each client send its commands while the loop is held,
	// then opens the gate and returns every client's replies.
	turn := func(cmds ...string) [][]string {
		t.Helper()
		ncs := make([]net.Conn, len(cmds))
		rds := make([]*bufio.Reader, len(cmds))
		for i := range cmds {
			ncs[i] = dialServer(t, c.Options().Addr)
			rds[i] = bufio.NewReader(ncs[i])
			// Answered: the loop has taken the connection.
			ncs[i].Write([]byte("PING\r\n"))
			if line, err := rds[i].ReadString('\n'); err != nil || line != "+PONG\r\n" {
				t.Fatalf("PING: %q, %v", line, err)
			}
		}
		held := dialServer(t, c.Options().Addr)
		held.Write([]byte("GATE\r\n"))
		// Loopback delivers a write before it returns; the pause lets
		// the loop start running GATE.
		time.Sleep(50 * time.Millisecond)
		for i, cmd := range cmds {
			ncs[i].Write([]byte(cmd))
		}
		open <- struct{}{}
		out := make([][]string, len(cmds))
		for i, cmd := range cmds {
			for range strings.Count(cmd, "\r\n") {
				line, err := rds[i].ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				out[i] = append(out[i], strings.TrimSpace(line))
			}
		}
		return out
	}

	// Two pipelines in one turn: the second served sees the first's
	// replies waiting.
	got := turn("PROBE\r\nPROBE\r\n", "PROBE\r\nPROBE\r\n")
	first, second := got[0], got[1]
	if first[0] == ":1" {
		first, second = second, first
	}
	if want := []string{":0", ":0"}; !slices.Equal(first, want) {
		t.Errorf("first pipeline served: %q, want %q", first, want)
	}
	if want := []string{":1", ":1"}; !slices.Equal(second, want) {
		t.Errorf("second pipeline served: %q, want %q (the first's replies wait for the turn's end)", second, want)
	}
	// Unpipelined reads are answered as they are served.
	got = turn("PROBE\r\n", "PROBE\r\n", "PROBE\r\n")
	for i, r := range got {
		if !slices.Equal(r, []string{":0"}) {
			t.Errorf("unpipelined client %d: %q, want [:0]", i, r)
		}
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}
