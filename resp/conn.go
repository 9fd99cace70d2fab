package resp

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"time"
)

// conn is one client connection, served by an event loop or by a
// goroutine of its own: it reads what the client sent, parses every
// complete command in place (the arguments are slices of the read
// buffer), runs them in order, and sends their replies when the last has
// run. Nothing is allocated per command: the buffers and the argument
// slices are reused from one read to the next.
type conn struct {
	nc  net.Conn // a *guardConn, or an event loop's *sock
	lim *limits

	// in holds what was read; [start, end) is not parsed yet.
	in         []byte
	start, end int
	// reqs are the commands parsed from the last read, served in order;
	// next is the index of the one running. Their arguments point into
	// in (an inline command's words, unescaped, are copies) until the
	// next read.
	reqs  []request
	next  int
	argv  [][]byte // the arguments of reqs, back to back
	nargs []int    // while parsing: the argument count of each command
	// part is what was parsed of the command at start, which has not
	// all arrived: a multibulk's count and arguments so far (as offsets
	// from start, which stay right when fill moves the bytes), or how
	// far an inline line was searched for its end; pos is 0 if nothing.
	part struct {
		pos   int
		count int
		args  [][2]int
	}

	out    []byte // replies not sent yet
	closed bool   // close was called: serve nothing more
}

// request is one parsed command. cmd is its entry in the command table
// when an event loop has looked it up already (nil otherwise).
type request struct {
	Args [][]byte
	cmd  *command
}

const (
	readMin    = 4 << 10  // the read buffer's size; with less room than this after the unparsed bytes, fill moves them to the front
	keepBuffer = 64 << 10 // larger buffers are dropped once empty
)

// Protocol errors, worded as Redis words them.
type protocolError string

func (e protocolError) Error() string { return "Protocol error: " + string(e) }

var (
	errMultibulkLength  = protocolError("invalid multibulk length")
	errBulkLength       = protocolError("invalid bulk length")
	errUnbalancedQuotes = protocolError("unbalanced quotes in request")
	errInlineTooBig     = protocolError("too big inline request")
)

func newConn(nc net.Conn, lim *limits) *conn {
	return &conn{nc: nc, lim: lim, in: make([]byte, readMin)}
}

// errWouldBlock is an event loop socket's answer when the kernel has no
// room for a write, or nothing to read, right now.
var errWouldBlock error = syscall.EAGAIN

// write queues a reply.
func (cn *conn) write(b []byte) { cn.out = append(cn.out, b...) }

// flush sends the queued replies. On an event loop's socket it sends
// what the kernel has room for, and keeps the rest for the loop to send.
func (cn *conn) flush() error {
	if len(cn.out) == 0 {
		return nil
	}
	n, err := cn.nc.Write(cn.out)
	if err == errWouldBlock {
		cn.out = cn.out[:copy(cn.out, cn.out[n:])]
		return nil
	}
	if cap(cn.out) > keepBuffer {
		cn.out = nil
	} else {
		cn.out = cn.out[:0]
	}
	return err
}

// close sends the queued replies, then closes the connection; nothing
// more is served. On an event loop's socket, replies the kernel had no
// room for are sent by the loop, which closes the connection after them.
func (cn *conn) close() {
	if cn.closed {
		return
	}
	cn.closed = true
	cn.flush()
	if len(cn.out) == 0 {
		cn.nc.Close()
	}
}

// pipeline returns the commands read with the running one that follow
// it.
func (cn *conn) pipeline() []request { return cn.reqs[cn.next+1:] }

// serve runs the connection until the client leaves, a command closes
// it, or it fails; run is called for each command in order.
func (cn *conn) serve(run func(r *request)) error {
	for {
		if err := cn.fill(); err != nil {
			return err
		}
		if err := cn.process(run); err != nil || cn.closed {
			return err
		}
	}
}

// process runs the complete commands that reads have brought, then sends
// their replies.
func (cn *conn) process(run func(r *request)) error {
	return cn.run(cn.parse(), run)
}

// run runs the parsed commands, then sends their replies; perr is
// parse's error, answered after them.
func (cn *conn) run(perr error, run func(r *request)) error {
	cn.runAll(run)
	return cn.finish(perr)
}

// runAll runs the parsed commands, and forgets them.
func (cn *conn) runAll(run func(r *request)) {
	for cn.next = 0; cn.next < len(cn.reqs) && !cn.closed; cn.next++ {
		run(&cn.reqs[cn.next])
	}
	cn.reset()
}

// finish sends the replies of the commands run, and answers perr, parse's
// error, after them.
func (cn *conn) finish(perr error) error {
	if cn.closed {
		return nil
	}
	if perr != nil {
		// A client that sent garbage gets a second, not the write
		// timeout, to take the error before the connection closes.
		if g, ok := cn.nc.(*guardConn); ok {
			g.refresh(true, time.Second)
		}
		cn.write([]byte("-ERR " + perr.Error() + "\r\n"))
		cn.flush()
		return perr
	}
	return cn.flush()
}

// fill reads once, into room after the unparsed bytes.
func (cn *conn) fill() error {
	if cn.start == cn.end {
		cn.start, cn.end = 0, 0
		if len(cn.in) > keepBuffer {
			cn.in = make([]byte, readMin)
		}
	}
	if len(cn.in)-cn.end < readMin {
		// A partial command at the end: move it to the front, and grow
		// the buffer if it takes more than half.
		pending := cn.end - cn.start
		buf := cn.in
		if pending > len(cn.in)/2 {
			buf = make([]byte, 2*len(cn.in))
		}
		copy(buf, cn.in[cn.start:cn.end])
		cn.in, cn.start, cn.end = buf, 0, pending
	}
	n, err := cn.nc.Read(cn.in[cn.end:])
	cn.end += n
	if n > 0 {
		return nil // a read error shows again on the next read
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// reset forgets the served commands.
func (cn *conn) reset() {
	clear(cn.argv)
	cn.argv = cn.argv[:0]
	clear(cn.reqs)
	cn.reqs = cn.reqs[:0]
	cn.next = 0
}

// parse parses the complete commands in [start, end). On a protocol error
// it returns the commands before it along with the error.
func (cn *conn) parse() error {
	for cn.start < cn.end {
		b := cn.in[cn.start:cn.end]
		var n int
		var err error
		if b[0] == '*' {
			n, err = cn.parseMultibulk(b)
		} else {
			n, err = cn.parseInline(b)
		}
		if err != nil || n == 0 {
			cn.commit()
			return err
		}
		cn.start += n
	}
	cn.commit()
	return nil
}

// commit gives each parsed command its slice of argv, now that argv no
// longer grows.
func (cn *conn) commit() {
	cn.reqs = cn.reqs[:0]
	at := 0
	for _, n := range cn.nargs {
		cn.reqs = append(cn.reqs, request{Args: cn.argv[at : at+n : at+n]})
		at += n
	}
	cn.nargs = cn.nargs[:0]
}

// parseMultibulk parses "*<n>\r\n" and n bulk strings at the start of b.
// It returns the bytes the command took, or 0 if b holds only part of it;
// what it parsed of that part is kept in cn.part, and the next call
// resumes there, so a command arriving in many reads is parsed once.
func (cn *conn) parseMultibulk(b []byte) (int, error) {
	p := &cn.part
	if p.pos == 0 {
		i := indexNL(b, 1)
		if i < 0 || i > maxHeaderBytes {
			if i < 0 && len(b) <= maxHeaderBytes {
				return 0, nil
			}
			return 0, errMultibulkLength
		}
		if b[i-1] != '\r' {
			return 0, errMultibulkLength
		}
		count, ok := parseCount(b[1 : i-1])
		if !ok || count <= 0 || int64(count) > cn.lim.maxMultibulk.Load() {
			return 0, errMultibulkLength
		}
		p.count, p.pos, p.args = count, i+1, p.args[:0]
	}
	for len(p.args) < p.count {
		pos := p.pos
		if pos >= len(b) {
			return 0, nil
		}
		if b[pos] != '$' {
			return 0, protocolError("expected '$', got '" + string(b[pos]) + "'")
		}
		e := indexNL(b, pos+1)
		if e < 0 || e-pos > maxHeaderBytes {
			if e < 0 && len(b)-pos <= maxHeaderBytes {
				return 0, nil
			}
			return 0, errBulkLength
		}
		if b[e-1] != '\r' {
			return 0, errBulkLength
		}
		// Refused from the header: the payload is not waited for.
		size, ok := parseCount(b[pos+1 : e-1])
		if !ok || size < 0 || int64(size) > cn.lim.maxBulk.Load() {
			return 0, errBulkLength
		}
		if e+size+2 >= len(b) {
			return 0, nil
		}
		if b[e+size+1] != '\r' || b[e+size+2] != '\n' {
			return 0, errBulkLength
		}
		p.args = append(p.args, [2]int{e + 1, e + 1 + size})
		p.pos = e + size + 3
	}
	for _, a := range p.args {
		cn.argv = append(cn.argv, b[a[0]:a[1]:a[1]])
	}
	cn.nargs = append(cn.nargs, len(p.args))
	n := p.pos
	p.pos = 0
	if cap(p.args) > 1024 {
		p.args = nil // a command of many arguments: do not keep its offsets
	}
	return n, nil
}

// parseInline parses an inline command (a line of space-separated words,
// which single or double quotes may group) at the start of b. Its
// arguments are copies, unescaped. It returns the bytes the line took, or
// 0 if b holds only part of it.
func (cn *conn) parseInline(b []byte) (int, error) {
	i := indexNL(b, cn.part.pos)
	if i < 0 || i > maxInlineBytes {
		if i < 0 && len(b) <= maxInlineBytes {
			cn.part.pos = len(b) // no line end in these: look after them next
			return 0, nil
		}
		return 0, errInlineTooBig
	}
	cn.part.pos = 0
	line := b[:i]
	if i > 0 && b[i-1] == '\r' {
		line = b[:i-1]
	}
	from := len(cn.argv)
	var quote bool
	var quotech byte
	var escape bool
outer:
	for {
		word := make([]byte, 0, len(line))
		for k := 0; k < len(line); k++ {
			c := line[k]
			if !quote {
				if c == ' ' {
					if len(word) > 0 {
						cn.argv = append(cn.argv, word)
					}
					line = line[k+1:]
					continue outer
				}
				if c == '"' || c == '\'' {
					if k != 0 {
						cn.argv = cn.argv[:from]
						return 0, errUnbalancedQuotes
					}
					quotech, quote = c, true
					line = line[k+1:]
					continue outer
				}
			} else {
				if escape {
					escape = false
					switch c {
					case 'n':
						c = '\n'
					case 'r':
						c = '\r'
					case 't':
						c = '\t'
					}
				} else if c == quotech {
					quote, quotech = false, 0
					cn.argv = append(cn.argv, word)
					line = line[k+1:]
					if len(line) > 0 && line[0] != ' ' {
						cn.argv = cn.argv[:from]
						return 0, errUnbalancedQuotes
					}
					continue outer
				} else if c == '\\' {
					escape = true
					continue
				}
			}
			word = append(word, c)
		}
		if quote {
			cn.argv = cn.argv[:from]
			return 0, errUnbalancedQuotes
		}
		if len(line) > 0 {
			cn.argv = append(cn.argv, line)
		}
		break
	}
	if n := len(cn.argv) - from; n > 0 {
		cn.nargs = append(cn.nargs, n)
	}
	return i + 1, nil
}

// indexNL returns the index of the first '\n' in b at or after from, or
// -1.
func indexNL(b []byte, from int) int {
	if i := bytes.IndexByte(b[from:], '\n'); i >= 0 {
		return from + i
	}
	return -1
}

// parseCount parses a RESP header number: digits, maybe after a '-'.
func parseCount(b []byte) (int, bool) {
	if len(b) == 1 && b[0] >= '0' && b[0] <= '9' {
		return int(b[0] - '0'), true
	}
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
