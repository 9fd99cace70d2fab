package resp

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// chunkConn is a connection whose reads return its input in the given
// pieces, as a socket may.
type chunkConn struct {
	net.Conn
	chunks [][]byte
	out    bytes.Buffer // what was written
}

func (c *chunkConn) Write(p []byte) (int, error) { return c.out.Write(p) }

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// TestConnParsesSplitStream: however the socket splits a pipelined
// stream, the connection, reading through the guard, parses exactly the
// commands sent.
func TestConnParsesSplitStream(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 1))
	var stream []byte
	var want []string
	for i := 0; i < 3000; i++ {
		var args []string
		switch r.IntN(5) {
		case 4:
			// An inline command, as telnet or redis-cli --pipe may send.
			stream = append(stream, "ECHO inline\r\n"...)
			want = append(want, fmt.Sprint([]string{"ECHO", "inline"}))
			continue
		case 0:
			args = []string{"PING"}
		case 1:
			args = []string{"LEGION.APPLY", fmt.Sprintf("key:%d", i), "incr"}
		case 2:
			args = []string{"SET", "big", string(bytes.Repeat([]byte{'x'}, r.IntN(20000)))}
		default:
			args = []string{"ECHO", "a\r\nb"}
		}
		stream = fmt.Appendf(stream, "*%d\r\n", len(args))
		for _, a := range args {
			stream = fmt.Appendf(stream, "$%d\r\n%s\r\n", len(a), a)
		}
		want = append(want, fmt.Sprint(args))
	}
	// Split at random points, small and large.
	var chunks [][]byte
	for rest := stream; len(rest) > 0; {
		n := min(len(rest), 1+r.IntN([]int{7, 300, 5000, 70000}[r.IntN(4)]))
		chunks = append(chunks, rest[:n])
		rest = rest[n:]
	}
	g := &guardConn{Conn: &chunkConn{chunks: chunks}, lim: protoLimits()}
	parsed, err := serveAll(g)
	wantCommands(t, fmt.Sprintf("seed %d", seed), parsed, err, want)
}

// deadlineConn records the deadlines set on a real (in-memory) connection.
type deadlineConn struct {
	net.Conn
	reads, writes []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.reads = append(c.reads, t)
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.writes = append(c.writes, t)
	return c.Conn.SetWriteDeadline(t)
}

// TestGuardRefreshesDeadlinesLazily: the guard moves a socket deadline only
// when it would move by more than a sixteenth of the limit, always when the
// limit shrinks, and clears it when the limit is turned off.
func TestGuardRefreshesDeadlinesLazily(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go io.Copy(io.Discard, b)
	dc := &deadlineConn{Conn: a}
	lim := &limits{}
	lim.writeTimeout.Store(int64(time.Hour))
	g := &guardConn{Conn: dc, lim: lim}
	for range 100 {
		if _, err := g.Write([]byte("+OK\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	if len(dc.writes) != 1 || time.Until(dc.writes[0]) < 59*time.Minute {
		t.Fatalf("100 writes within a second set the deadline %d times (%v), want once, an hour ahead", len(dc.writes), dc.writes)
	}
	// A deadline older than a sixteenth of the limit is moved.
	g.writeBy = g.writeBy.Add(-5 * time.Minute)
	g.Write([]byte("+OK\r\n"))
	if len(dc.writes) != 2 || time.Until(dc.writes[1]) < 59*time.Minute {
		t.Fatalf("a deadline 5 minutes stale was not moved: %v", dc.writes)
	}
	// A shorter limit applies at once.
	lim.writeTimeout.Store(int64(time.Second))
	g.Write([]byte("+OK\r\n"))
	if len(dc.writes) != 3 || time.Until(dc.writes[2]) > time.Second {
		t.Fatalf("a shorter limit was not applied: %v", dc.writes)
	}
	// No limit: the deadline is cleared, once.
	lim.writeTimeout.Store(0)
	g.Write([]byte("+OK\r\n"))
	g.Write([]byte("+OK\r\n"))
	if len(dc.writes) != 4 || !dc.writes[3].IsZero() {
		t.Fatalf("turning the limit off did not clear the deadline once: %v", dc.writes)
	}
	// Reads follow the idle timeout the same way.
	lim.idle.Store(int64(time.Minute))
	go b.Write([]byte("PING\r\nPING\r\n"))
	buf := make([]byte, 64)
	for range 2 {
		if _, err := g.Read(buf[:6]); err != nil {
			t.Fatal(err)
		}
	}
	if len(dc.reads) != 1 || dc.reads[0].IsZero() {
		t.Fatalf("two reads set the read deadline %d times, want once: %v", len(dc.reads), dc.reads)
	}
}
