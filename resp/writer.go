package resp

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/redcon"
)

// writer accumulates one command's reply. Handlers append to it; the
// dispatcher sends it only after the handler returned, so a handler that
// fails half-way (or panics) never leaves half a reply on the wire.
type writer struct {
	b          []byte
	resp3      bool // the connection chose protocol 3 with HELLO
	closeAfter bool // close the connection once this reply is written
}

func (w *writer) reset() { w.b, w.closeAfter = w.b[:0], false }

func (w *writer) bulk(b []byte)             { w.b = append(appendPrefix(w.b, '$', len(b)), b...); w.crlf() }
func (w *writer) bulkString(s string)       { w.b = append(appendPrefix(w.b, '$', len(s)), s...); w.crlf() }
func (w *writer) crlf()                     { w.b = append(w.b, '\r', '\n') }
func (w *writer) status(s string)           { w.b = redcon.AppendString(w.b, sanitize(s)) }
func (w *writer) ok()                       { w.b = redcon.AppendOK(w.b) }
func (w *writer) integer(n int64)           { w.b = redcon.AppendInt(w.b, n) }
func (w *writer) array(n int)               { w.b = appendPrefix(w.b, '*', n) }
func (w *writer) raw(b []byte)              { w.b = append(w.b, b...) }
func (w *writer) errorLine(line string)     { w.b = redcon.AppendError(w.b, sanitize(line)) }
func (w *writer) syntaxError()              { w.errorLine("ERR syntax error") }
func (w *writer) notInteger()               { w.errorLine("ERR value is not an integer or out of range") }
func (w *writer) errorf(f string, a ...any) { w.errorLine(fmt.Sprintf(f, a...)) }

// null writes the null reply: $-1 in RESP2, _ in RESP3.
func (w *writer) null() {
	if w.resp3 {
		w.b = append(w.b, "_\r\n"...)
		return
	}
	w.b = redcon.AppendNull(w.b)
}

// nullArray writes the null array: *-1 in RESP2, _ in RESP3.
func (w *writer) nullArray() {
	if w.resp3 {
		w.b = append(w.b, "_\r\n"...)
		return
	}
	w.b = append(w.b, "*-1\r\n"...)
}

// mapHeader starts a map of n pairs: %n in RESP3, a flat array of 2n in RESP2.
func (w *writer) mapHeader(n int) {
	if w.resp3 {
		w.b = append(w.b, '%')
		w.b = strconv.AppendInt(w.b, int64(n), 10)
		w.b = append(w.b, '\r', '\n')
		return
	}
	w.array(2 * n)
}

// setHeader starts a set of n members: ~n in RESP3, an array in RESP2.
func (w *writer) setHeader(n int) {
	if w.resp3 {
		w.b = append(w.b, '~')
		w.b = strconv.AppendInt(w.b, int64(n), 10)
		w.b = append(w.b, '\r', '\n')
		return
	}
	w.array(n)
}

// verbatim writes a RESP3 verbatim string (format "txt"), or a bulk string
// in RESP2.
func (w *writer) verbatim(s string) {
	if !w.resp3 {
		w.bulkString(s)
		return
	}
	w.b = append(w.b, '=')
	w.b = strconv.AppendInt(w.b, int64(len(s)+4), 10)
	w.b = append(w.b, "\r\ntxt:"...)
	w.b = append(w.b, s...)
	w.b = append(w.b, '\r', '\n')
}

// sanitize replaces CR and LF, which would end a status or error line.
func sanitize(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	}
	return s
}

// appendPrefix appends a header line, c and n ("$5\r\n", "*2\r\n"), as
// redcon does, writing the digits of the usual small n directly: a search
// page's reply is mostly such headers.
func appendPrefix(b []byte, c byte, n int) []byte {
	switch {
	case n >= 0 && n < 10:
		return append(b, c, byte('0'+n), '\r', '\n')
	case n >= 10 && n < 100:
		return append(b, c, byte('0'+n/10), byte('0'+n%10), '\r', '\n')
	}
	return append(strconv.AppendInt(append(b, c), int64(n), 10), '\r', '\n')
}
