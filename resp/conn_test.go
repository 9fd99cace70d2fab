package resp

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
)

// protoLimits are limits for tests: a bulk of up to 1 MiB, up to 1000
// arguments.
func protoLimits() *limits {
	lim := &limits{}
	lim.maxBulk.Store(1 << 20)
	lim.maxMultibulk.Store(1000)
	return lim
}

// serveAll serves a connection reading from nc until it ends, and returns
// the commands it ran (each formatted as fmt.Sprint of its arguments) and
// why it ended.
func serveAll(nc net.Conn) ([]string, error) {
	var got []string
	cn := newConn(nc, protoLimits())
	err := cn.serve(func(r *request) {
		s := make([]string, len(r.Args))
		for i, a := range r.Args {
			s[i] = string(a)
		}
		got = append(got, fmt.Sprint(s))
	})
	return got, err
}

func TestConnParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		err  string // the error line sent, if any
	}{
		{in: "*1\r\n$4\r\nPING\r\n", want: []string{"[PING]"}},
		{in: "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n", want: []string{"[ECHO ]", "[PING]"}},
		{in: "*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n", want: []string{"[ECHO a\r\nb]"}},
		{in: "PING\r\n", want: []string{"[PING]"}},
		{in: "PING\n\r\n\nECHO  a   b \r\n", want: []string{"[PING]", "[ECHO a b]"}},
		{in: `SET "a b" 'c d'` + "\r\n", want: []string{"[SET a b c d]"}},
		{in: `ECHO "x\ny\tz\"q"` + "\r\n", want: []string{"[ECHO x\ny\tz\"q]"}},
		{in: `ECHO "open` + "\r\n", err: "-ERR Protocol error: unbalanced quotes in request"},
		{in: `ECHO a"b"` + "\r\n", err: "-ERR Protocol error: unbalanced quotes in request"},
		{in: `ECHO "a"b` + "\r\n", err: "-ERR Protocol error: unbalanced quotes in request"},
		// The commands before a malformed one run; then the error ends it.
		{in: "PING\r\n*1\r\n+PING\r\n", want: []string{"[PING]"}, err: "-ERR Protocol error: expected '$', got '+'"},
		{in: "*x\r\n", err: "-ERR Protocol error: invalid multibulk length"},
		{in: "*0\r\n", err: "-ERR Protocol error: invalid multibulk length"},
		{in: "*-1\r\n", err: "-ERR Protocol error: invalid multibulk length"},
		{in: "*1\n", err: "-ERR Protocol error: invalid multibulk length"},
		{in: "*1\r\n$-1\r\n", err: "-ERR Protocol error: invalid bulk length"},
		{in: "*1\r\n$\r\n\r\n", err: "-ERR Protocol error: invalid bulk length"},
		{in: "*1\r\n$4\nPING\r\n", err: "-ERR Protocol error: invalid bulk length"},
		{in: "*1\r\n$4\r\nPINGX\r\n", err: "-ERR Protocol error: invalid bulk length"},
		{in: "*1\r\n$99999999999999999999\r\n", err: "-ERR Protocol error: invalid bulk length"},
		// Limits, refused from the header, before the payload arrives.
		{in: "PING\r\n*2\r\n$4\r\nECHO\r\n$1048577\r\n", want: []string{"[PING]"}, err: "-ERR Protocol error: invalid bulk length"},
		{in: "*1001\r\n", err: "-ERR Protocol error: invalid multibulk length"},
		{in: "*" + strings.Repeat("1", 40), err: "-ERR Protocol error: invalid multibulk length"},
		{in: "*1\r\n$" + strings.Repeat("1", 40), err: "-ERR Protocol error: invalid bulk length"},
		{in: strings.Repeat("a", 70<<10), err: "-ERR Protocol error: too big inline request"},
		{in: strings.Repeat("a", 70<<10) + "\r\n", err: "-ERR Protocol error: too big inline request"},
		// Just within them.
		{in: "*1000\r\n" + strings.Repeat("$0\r\n\r\n", 1000), want: []string{"[" + strings.Repeat(" ", 999) + "]"}},
		{in: "ECHO " + strings.Repeat("a", 60<<10) + "\r\n", want: []string{"[ECHO " + strings.Repeat("a", 60<<10) + "]"}},
		// An incomplete command at the end is not run.
		{in: "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$3\r\nab", want: []string{"[PING]"}},
		{in: "PING\r\nECHO", want: []string{"[PING]"}},
	} {
		nc := &chunkConn{chunks: [][]byte{[]byte(c.in)}}
		got, err := serveAll(nc)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%q: ran %q, want %q", c.in, got, c.want)
		}
		sent := strings.TrimSuffix(nc.out.String(), "\r\n")
		if c.err == "" && (err != io.EOF || sent != "") {
			t.Errorf("%q: ended with %v, sent %q", c.in, err, sent)
		}
		if c.err != "" && sent != c.err {
			t.Errorf("%q: sent %q, want %q", c.in, sent, c.err)
		}
	}
}

// TestConnArgumentsPerPipeline: arguments are slices of the read buffer,
// reused from one read to the next; every command must still see its
// own, however the stream is cut and however large an argument is.
func TestConnArgumentsPerPipeline(t *testing.T) {
	var stream []byte
	var want []string
	for i := 0; i < 200; i++ {
		big := strings.Repeat(string(rune('a'+i%26)), i*97%9000)
		stream = fmt.Appendf(stream, "*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$%d\r\n%s\r\n", len(fmt.Sprint("k", i)), i, len(big), big)
		want = append(want, fmt.Sprint([]string{"SET", fmt.Sprint("k", i), big}))
		stream = fmt.Appendf(stream, "ECHO w%d\r\n", i)
		want = append(want, fmt.Sprint([]string{"ECHO", fmt.Sprint("w", i)}))
	}
	for _, size := range []int{1, 5, 100, 4096, 70000, len(stream)} {
		var chunks [][]byte
		for rest := stream; len(rest) > 0; {
			n := min(size, len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		got, err := serveAll(&chunkConn{chunks: chunks})
		wantCommands(t, fmt.Sprintf("chunks of %d", size), got, err, want)
	}
}

// wantCommands fails t unless serving ended with the input, having run
// exactly want.
func wantCommands(t *testing.T, what string, got []string, err error, want []string) {
	t.Helper()
	if err != io.EOF {
		t.Fatalf("%s: %v", what, err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: ran %d commands, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: command %d = %.60q, want %.60q", what, i, got[i], want[i])
		}
	}
}

// FuzzConnParse: whatever arrives, and however it is cut, the connection
// runs the same commands and ends the same way, and a command it ran,
// sent again as a multibulk, is read back as it was.
func FuzzConnParse(f *testing.F) {
	for _, s := range []string{
		"*1\r\n$4\r\nPING\r\n", "PING\r\n", "*2\r\n$4\r\nECHO\r\n$3\r\na\nb\r\n",
		`SET "a b" 'c\nd'` + "\r\n", "*1\r\n$-1\r\n", "*3\r\n$1\r\n", "\r\n\n",
	} {
		f.Add([]byte(s), uint16(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		if len(data) == 0 {
			return // a read returns something, or the end
		}
		whole := &chunkConn{chunks: [][]byte{bytes.Clone(data)}}
		want, werr := serveAll(whole)
		var chunks [][]byte
		if at := int(cut) % (len(data) + 1); at > 0 && at < len(data) {
			chunks = [][]byte{bytes.Clone(data[:at]), bytes.Clone(data[at:])}
		} else {
			chunks = [][]byte{bytes.Clone(data)}
		}
		split := &chunkConn{chunks: chunks}
		got, gerr := serveAll(split)
		if fmt.Sprint(got) != fmt.Sprint(want) || whole.out.String() != split.out.String() || (werr == io.EOF) != (gerr == io.EOF) {
			t.Fatalf("cut at %d: ran %q and sent %q (%v); whole: ran %q and sent %q (%v)", cut, got, split.out.String(), gerr, want, whole.out.String(), werr)
		}
		// Round trip the commands of the whole read through multibulks.
		var args [][]string
		cn := newConn(&chunkConn{chunks: [][]byte{bytes.Clone(data)}}, protoLimits())
		cn.serve(func(r *request) {
			s := make([]string, len(r.Args))
			for i, x := range r.Args {
				s[i] = string(x)
			}
			args = append(args, s)
		})
		var again []byte
		for _, a := range args {
			again = fmt.Appendf(again, "*%d\r\n", len(a))
			for _, x := range a {
				again = fmt.Appendf(again, "$%d\r\n%s\r\n", len(x), x)
			}
		}
		var againChunks [][]byte
		if len(again) > 0 {
			againChunks = [][]byte{again}
		}
		back, err := serveAll(&chunkConn{chunks: againChunks})
		if err != io.EOF || fmt.Sprint(back) != fmt.Sprint(want) {
			t.Fatalf("sent again as multibulks: ran %q (%v), want %q", back, err, want)
		}
	})
}

// TestConnParsesWithoutAllocating: once its buffers have grown, a
// connection reads, parses and hands over pipelined multibulk commands
// without allocating.
func TestConnParsesWithoutAllocating(t *testing.T) {
	var stream []byte
	for i := 0; i < 64; i++ {
		stream = fmt.Appendf(stream, "*3\r\n$12\r\nLEGION.APPLY\r\n$9\r\nkey:%05d\r\n$4\r\nincr\r\n", i)
	}
	const runs = 50
	sources := make([]*chunkConn, runs+1)
	for i := range sources {
		// Cut into pipelines of 16 commands, and once inside a command.
		sources[i] = &chunkConn{chunks: [][]byte{stream[:len(stream)/4], stream[len(stream)/4 : len(stream)/2+7], stream[len(stream)/2+7:]}}
	}
	cn := newConn(nil, protoLimits())
	ran := 0
	run := func(r *request) { ran += len(r.Args) }
	next := 0
	allocs := testing.AllocsPerRun(runs, func() {
		cn.nc = sources[next]
		next++
		if err := cn.serve(run); err != io.EOF {
			t.Fatal(err)
		}
	})
	if ran != 3*64*(runs+1) {
		t.Fatalf("ran %d arguments, want %d", ran, 3*64*(runs+1))
	}
	if allocs != 0 {
		t.Errorf("%.1f allocations per 64 commands, want 0", allocs)
	}
}

// TestConnResumesPartialCommands: a command that arrives in many reads is
// parsed once, from where the last read left off, not again from its
// start (which costs time quadratic in its size when a client sends a
// large command slowly). The bytes already parsed are overwritten between
// reads: parsing them again would fail.
func TestConnResumesPartialCommands(t *testing.T) {
	var cmd []byte
	const n = 1000
	cmd = fmt.Appendf(cmd, "*%d\r\n", n)
	for i := 0; i < n; i++ {
		cmd = fmt.Appendf(cmd, "$%d\r\n%d\r\n", len(fmt.Sprint(i)), i)
	}
	cmd = append(cmd, "PING\r\n"...)
	src := &chunkConn{}
	cn := newConn(src, protoLimits())
	var got []string
	run := func(r *request) {
		s := make([]string, len(r.Args))
		for i, a := range r.Args {
			s[i] = string(a)
		}
		got = append(got, fmt.Sprintf("%d %s %s", len(s), s[0], s[len(s)-1]))
	}
	for at := 0; at < len(cmd); {
		end := min(at+37, len(cmd))
		src.chunks = [][]byte{cmd[at:end]}
		if err := cn.fill(); err != nil {
			t.Fatal(err)
		}
		if err := cn.process(run); err != nil {
			t.Fatalf("after %d bytes: %v", end, err)
		}
		// Spoil what the parser has been through: the arguments' headers
		// (their data stays, as the command's arguments come from it).
		if cn.part.pos > 0 {
			spoiled := cn.in[cn.start : cn.start+cn.part.pos]
			for i := range spoiled {
				if spoiled[i] == '$' {
					spoiled[i] = '!'
				}
			}
		}
		at = end
	}
	if want := []string{fmt.Sprintf("%d 0 %d", n, n-1), "1 PING PING"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ran %q, want %q", got, want)
	}
}
