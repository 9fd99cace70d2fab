package scripting

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// strFormat is Lua 5.1's string.format. gopher-lua passes the format to
// Go's fmt, which accepts Go-only verbs (%v, %p, %T would print addresses
// and types), treats widths differently and formats %c, %s precision and
// NaN differently; this implementation parses the C format itself and uses
// strconv/fmt only for fully checked numeric conversions.
func (r *runner) strFormat(L *lua.LState) int {
	f := argString(L, 1)
	top := L.GetTop()
	arg := 1
	limit := r.lim.MaxStringBytes
	var b []byte
	check := func() {
		if len(b) > limit {
			r.checkString("string.format", int64(len(b)))
		}
	}
	for i := 0; i < len(f); {
		c := f[i]
		i++
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i < len(f) && f[i] == '%' {
			b = append(b, '%')
			i++
			continue
		}
		// scan flags, width (2 digits), precision (2 digits)
		start := i
		for i < len(f) && strings.IndexByte("-+ #0", f[i]) >= 0 {
			i++
		}
		if i-start >= len("-+ #0")+1 {
			L.RaiseError("invalid format (repeated flags)")
		}
		flags := f[start:i]
		width, prec := -1, -1
		digits := func() int {
			n := -1
			for k := 0; k < 2 && i < len(f) && isDigit(f[i]); k++ {
				if n < 0 {
					n = 0
				}
				n = n*10 + int(f[i]-'0')
				i++
			}
			return n
		}
		width = digits()
		if i < len(f) && f[i] == '.' {
			i++
			prec = digits()
			if prec < 0 {
				prec = 0
			}
		}
		if i < len(f) && isDigit(f[i]) {
			L.RaiseError("invalid format (width or precision too long)")
		}
		if i >= len(f) {
			L.RaiseError("invalid option '%%' to 'format'")
		}
		verb := f[i]
		i++
		arg++
		if arg > top {
			L.ArgError(arg, "no value")
		}
		spec := fmtSpec{flags: flags, width: width, prec: prec}
		switch verb {
		case 'c':
			b = spec.pad(b, []byte{byte(toInt(float64(L.CheckNumber(arg))))}, false)
		case 'd', 'i':
			b = spec.integer(b, toInt64(float64(L.CheckNumber(arg))), 'd')
		case 'o', 'u', 'x', 'X':
			v := uint64(toInt64(float64(L.CheckNumber(arg))))
			if verb == 'u' {
				b = spec.unsigned(b, v, 'd')
			} else {
				b = spec.unsigned(b, v, verb)
			}
		case 'e', 'E', 'f', 'g', 'G':
			b = spec.float(b, float64(L.CheckNumber(arg)), verb)
		case 'q':
			b = appendQuoted(b, argString(L, arg))
		case 's':
			s := argString(L, arg)
			if prec < 0 && len(s) >= 100 {
				b = append(b, s...)
			} else {
				if prec >= 0 && prec < len(s) {
					s = s[:prec]
				}
				b = spec.pad(b, []byte(s), false)
			}
		default:
			L.RaiseError("invalid option '%%%c' to 'format'", verb)
		}
		check()
	}
	r.charge(int64(len(b))/32 + 1)
	L.Push(lua.LString(b))
	return 1
}

// toInt64 truncates toward zero, clamping to the int64 range (NaN is 0).
func toInt64(f float64) int64 {
	switch {
	case f != f:
		return 0
	case f >= 9.223372036854775807e18:
		return math.MaxInt64
	case f <= -9.223372036854775808e18:
		return math.MinInt64
	}
	return int64(f)
}

type fmtSpec struct {
	flags       string
	width, prec int
}

func (s fmtSpec) has(c byte) bool { return strings.IndexByte(s.flags, c) >= 0 }

// goFormat rebuilds a checked Go format string with the same flags, width
// and precision (which Go interprets like C for these verbs).
func (s fmtSpec) goFormat(verb byte) string {
	var b strings.Builder
	b.WriteByte('%')
	b.WriteString(s.flags)
	if s.width >= 0 {
		b.WriteString(strconv.Itoa(s.width))
	}
	if s.prec >= 0 {
		b.WriteByte('.')
		b.WriteString(strconv.Itoa(s.prec))
	}
	b.WriteByte(verb)
	return b.String()
}

// pad right- or left-justifies body to the width. zeroOK allows '0'.
func (s fmtSpec) pad(dst, body []byte, zeroOK bool) []byte {
	n := s.width - len(body)
	if n <= 0 {
		return append(dst, body...)
	}
	if s.has('-') {
		dst = append(dst, body...)
		return append(dst, strings.Repeat(" ", n)...)
	}
	fill := " "
	if zeroOK && s.has('0') {
		fill = "0"
	}
	dst = append(dst, strings.Repeat(fill, n)...)
	return append(dst, body...)
}

func (s fmtSpec) integer(dst []byte, v int64, verb byte) []byte {
	return fmt.Appendf(dst, s.goFormat(verb), v)
}

func (s fmtSpec) unsigned(dst []byte, v uint64, verb byte) []byte {
	return fmt.Appendf(dst, s.goFormat(verb), v)
}

func (s fmtSpec) float(dst []byte, v float64, verb byte) []byte {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		// C prints inf/nan (never Go's +Inf/NaN), padded with spaces.
		txt := "inf"
		switch {
		case math.IsNaN(v):
			txt = "nan"
		case v < 0:
			txt = "-inf"
		case s.has('+'):
			txt = "+inf"
		case s.has(' '):
			txt = " inf"
		}
		if verb == 'E' || verb == 'G' {
			txt = strings.ToUpper(txt)
		}
		return fmtSpec{flags: strings.ReplaceAll(s.flags, "0", ""), width: s.width}.pad(dst, []byte(txt), false)
	}
	if s.prec < 0 {
		s.prec = 6 // C's default; Go's %g default would be "shortest"
	}
	return fmt.Appendf(dst, s.goFormat(verb), v)
}

// appendQuoted is Lua 5.1's %q.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', '\n':
			dst = append(dst, '\\', c)
		case '\r':
			dst = append(dst, '\\', 'r')
		case 0:
			dst = append(dst, '\\', '0', '0', '0')
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
