package resp

import (
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// Protocol limits. A connection reads whole commands into memory before it
// parses them, so every connection passes through a guard that follows the RESP headers
// as they arrive and refuses, before the payload is buffered, a bulk string
// or multibulk larger than configured — with Redis's own error wording.
const (
	maxInlineBytes = 64 << 10 // as Redis: an inline command is one line of at most 64 KiB
	maxHeaderBytes = 32       // "*" or "$" plus a 64-bit decimal and CRLF fits easily
)

var errGuardClosed = errors.New("resp: connection closed by the protocol guard")

type scanState uint8

const (
	stStart       scanState = iota // before a command
	stInline                       // inside an inline command line
	stMultiHeader                  // inside "*<n>\r\n"
	stBulkStart                    // expecting "$" of the next argument
	stBulkHeader                   // inside "$<n>\r\n"
	stBulkData                     // skipping an argument's bytes and CRLF
	stPassthrough                  // malformed input: the parser reports it
)

// limits are the protocol limits, changeable at run time (CONFIG SET).
type limits struct {
	maxBulk      atomic.Int64 // proto-max-bulk-len
	maxMultibulk atomic.Int64 // arguments per command
	idle         atomic.Int64 // timeout: close a client idle this long (ns); 0 = never
	writeTimeout atomic.Int64 // ns a blocked reply write may take before the client is dropped
}

// guardConn wraps an accepted connection: it enforces the protocol limits
// on what is read, applies the idle timeout, and bounds blocked writes so a
// vanished client cannot hold its goroutine and buffers forever.
type guardConn struct {
	net.Conn
	lim *limits

	state     scanState
	num       int64 // header number being parsed
	neg       bool
	headerLen int
	args      int64 // arguments left in the current multibulk
	skip      int64 // bytes left in the current bulk, CRLF included
	inline    int
	refused   bool
	// held is the start of a command read from the socket but not yet
	// given to the connection (see Read).
	held []byte
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

// Read ends what it returns after the last complete command where it can:
// the start of a command at the end of what the socket returned is held
// back for the next Read, as long as a complete command comes before it.
// However the socket splits a pipelined stream (redis-cli --pipe), the
// connection then rarely has a partial command to carry over to its next
// read.
func (g *guardConn) Read(p []byte) (int, error) {
	if g.refused {
		return 0, errGuardClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Held bytes hold no command boundary: deliver them first, as far as
	// p allows.
	n := copy(p, g.held)
	g.held = g.held[:copy(g.held, g.held[n:])]
	if len(g.held) > 0 {
		return n, nil
	}
	g.refresh(false, time.Duration(g.lim.idle.Load()))
	m, err := g.Conn.Read(p[n:])
	if m == 0 {
		return n, err
	}
	msg, end := g.scan(p[n : n+m])
	if msg != "" {
		g.refused = true
		g.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		g.Conn.Write([]byte("-ERR Protocol error: " + msg + "\r\n"))
		g.Conn.Close()
		return 0, errGuardClosed
	}
	total := n + m
	if err == nil && end >= 0 && n+end < total {
		g.held = append(g.held, p[n+end:total]...)
		return n + end, nil
	}
	return total, err
}

func (g *guardConn) Write(p []byte) (int, error) {
	g.refresh(true, time.Duration(g.lim.writeTimeout.Load()))
	return g.Conn.Write(p)
}

// scan advances the header state machine over b. It returns a Redis
// protocol error message when a limit is exceeded, and the offset in b
// just past the last complete command (-1 if none ends in b).
func (g *guardConn) scan(b []byte) (msg string, end int) {
	end = -1
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch g.state {
		case stPassthrough:
			return "", -1
		case stStart:
			switch c {
			case '*':
				g.beginHeader(stMultiHeader)
			case '\r', '\n':
				end = i + 1
			default:
				g.state, g.inline = stInline, 1
			}
		case stInline:
			if c == '\n' {
				g.state = stStart
				end = i + 1
				continue
			}
			if g.inline++; g.inline > maxInlineBytes {
				return "too big inline request", -1
			}
		case stMultiHeader, stBulkHeader:
			if c == '\r' {
				continue
			}
			if c == '\n' {
				if msg := g.endHeader(); msg != "" {
					return msg, -1
				}
				if g.state == stStart {
					end = i + 1 // an empty multibulk
				}
				continue
			}
			if g.headerLen++; g.headerLen > maxHeaderBytes {
				if g.state == stMultiHeader {
					return "invalid multibulk length", -1
				}
				return "invalid bulk length", -1
			}
			switch {
			case c == '-' && g.headerLen == 1:
				g.neg = true
			case c >= '0' && c <= '9':
				if g.num > (1<<62)/10 {
					g.num = 1 << 62 // saturate: certainly over any limit
				} else {
					g.num = g.num*10 + int64(c-'0')
				}
			default:
				g.state = stPassthrough // the parser answers the malformed header
			}
		case stBulkStart:
			if c != '$' {
				g.state = stPassthrough
				continue
			}
			g.beginHeader(stBulkHeader)
		case stBulkData:
			// Skip as much of the payload as this read holds at once.
			n := int64(len(b) - i)
			if n > g.skip {
				n = g.skip
			}
			g.skip -= n
			i += int(n) - 1
			if g.skip == 0 {
				if g.nextArg(); g.state == stStart {
					end = i + 1
				}
			}
		}
	}
	return "", end
}

func (g *guardConn) beginHeader(s scanState) {
	g.state, g.num, g.neg, g.headerLen = s, 0, false, 0
}

func (g *guardConn) endHeader() string {
	n := g.num
	if g.neg {
		n = -n
	}
	if g.state == stMultiHeader {
		if n > g.lim.maxMultibulk.Load() {
			return "invalid multibulk length"
		}
		if n <= 0 {
			g.state = stStart
			return ""
		}
		g.args, g.state = n, stBulkStart
		return ""
	}
	if n < 0 || n > g.lim.maxBulk.Load() {
		return "invalid bulk length"
	}
	g.skip, g.state = n+2, stBulkData
	return ""
}

func (g *guardConn) nextArg() {
	if g.args--; g.args > 0 {
		g.state = stBulkStart
	} else {
		g.state = stStart
	}
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
