package resp

import (
	"net"
	"sync/atomic"
	"time"
)

// Protocol limits. A connection reads whole commands into memory before it
// runs them, so its parser refuses, from the header and before the payload
// is buffered, a bulk string or multibulk larger than configured, and an
// inline command or header line longer than these — with Redis's own
// error wording.
const (
	maxInlineBytes = 64 << 10 // as Redis: an inline command is one line of at most 64 KiB
	maxHeaderBytes = 32       // "*" or "$" plus a 64-bit decimal and CRLF fits easily
)

// limits are the protocol limits, changeable at run time (CONFIG SET).
type limits struct {
	maxBulk      atomic.Int64 // proto-max-bulk-len
	maxMultibulk atomic.Int64 // arguments per command
	idle         atomic.Int64 // timeout: close a client idle this long (ns); 0 = never
	writeTimeout atomic.Int64 // ns a blocked reply write may take before the client is dropped
}

// guardConn wraps an accepted connection: it applies the idle timeout to
// reads and bounds blocked writes, so a vanished client cannot hold its
// goroutine and buffers forever.
type guardConn struct {
	net.Conn
	lim *limits
	// readBy and writeBy are the deadlines set on the socket (zero: none).
	readBy, writeBy time.Time
}

// refresh moves the read (or write) deadline of the socket to d from now
// when that is later than the one set by more than d/16, or sooner (the
// limit shrank), and clears it when d is 0. A deadline is a runtime timer
// to reorder: moving it on every read and write costs more than the rest
// of a small command's handling, so each limit holds to within a
// sixteenth.
func (g *guardConn) refresh(write bool, d time.Duration) {
	by := &g.readBy
	if write {
		by = &g.writeBy
	}
	var want time.Time
	if d > 0 {
		want = time.Now().Add(d)
		if diff := want.Sub(*by); !by.IsZero() && diff >= 0 && diff <= d/16 {
			return
		}
	} else if by.IsZero() {
		return
	}
	*by = want
	if write {
		g.Conn.SetWriteDeadline(want)
	} else {
		g.Conn.SetReadDeadline(want)
	}
}

func (g *guardConn) Read(p []byte) (int, error) {
	g.refresh(false, time.Duration(g.lim.idle.Load()))
	return g.Conn.Read(p)
}

func (g *guardConn) Write(p []byte) (int, error) {
	g.refresh(true, time.Duration(g.lim.writeTimeout.Load()))
	return g.Conn.Write(p)
}

// guardListener wraps every accepted connection in a guardConn.
type guardListener struct {
	net.Listener
	lim *limits
}

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, lim: l.lim}, nil
}
