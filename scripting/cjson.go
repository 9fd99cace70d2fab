package scripting

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"
)

// cjson mirrors the parts of Redis's lua-cjson (2.1.0 defaults) that
// handlers use, with two deliberate differences: object keys are written in
// sorted (canonical) order so that the text is deterministic, and decoding
// accepts only strict JSON (RFC 8259). Integral numbers up to 2^53 are
// written exactly, other numbers with %.14g as lua-cjson does.
const (
	cjsonMaxDepth     = 1000
	cjsonSparseRatio  = 2
	cjsonSparseSafe   = 10
	cjsonNumPrecision = 14
)

func (r *runner) cjsonFuncs() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"encode": r.cjsonEncode,
		"decode": r.cjsonDecode,
	}
}

// cjsonEscape is lua-cjson's char2escape table; nil entries are copied.
var cjsonEscape = func() [256]string {
	var t [256]string
	for c := 0; c < 0x20; c++ {
		t[c] = fmt.Sprintf("\\u%04x", c)
	}
	t['\b'], t['\t'], t['\n'], t['\f'], t['\r'] = `\b`, `\t`, `\n`, `\f`, `\r`
	t['"'], t['\\'], t['/'] = `\"`, `\\`, `\/`
	t[0x7f] = `\u007f`
	return t
}()

type cjsonEncoder struct {
	r     *runner
	L     *lua.LState
	buf   []byte
	limit int
	count int64
}

func (r *runner) cjsonEncode(L *lua.LState) int {
	e := cjsonEncoder{r: r, L: L, limit: r.lim.MaxStringBytes}
	e.value(L.CheckAny(1), 0)
	r.charge(e.count + int64(len(e.buf))/32)
	if len(e.buf) >= bigAlloc {
		r.checkMemory()
	}
	L.Push(lua.LString(e.buf))
	return 1
}

func (e *cjsonEncoder) check() {
	e.count++
	if e.count&1023 == 0 {
		e.r.charge(1024)
	}
	if len(e.buf) > e.limit {
		e.r.checkString("cjson.encode", int64(len(e.buf)))
	}
}

func appendCJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if esc := cjsonEscape[s[i]]; esc != "" {
			dst = append(dst, esc...)
		} else {
			dst = append(dst, s[i])
		}
	}
	return append(dst, '"')
}

func appendCJSONNumber(dst []byte, f float64) []byte {
	switch {
	case f == 0 && math.Signbit(f):
		return append(dst, "-0"...)
	case isIntegral(f):
		return strconv.AppendInt(dst, int64(f), 10)
	}
	return strconv.AppendFloat(dst, f, 'g', cjsonNumPrecision, 64)
}

func (e *cjsonEncoder) fail(typ, reason string) {
	e.L.RaiseError("Cannot serialise %s: %s", typ, reason)
}

func (e *cjsonEncoder) number(f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		e.fail("number", "must not be NaN or Inf")
	}
	e.buf = appendCJSONNumber(e.buf, f)
}

func (e *cjsonEncoder) value(v lua.LValue, depth int) {
	e.check()
	switch v := v.(type) {
	case lua.LString:
		e.buf = appendCJSONString(e.buf, string(v))
	case lua.LNumber:
		e.number(float64(v))
	case lua.LBool:
		if v {
			e.buf = append(e.buf, "true"...)
		} else {
			e.buf = append(e.buf, "false"...)
		}
	case *lua.LNilType:
		e.buf = append(e.buf, "null"...)
	case *lua.LTable:
		e.table(v, depth+1)
	default:
		if v == e.r.null {
			e.buf = append(e.buf, "null"...)
			return
		}
		e.fail(v.Type().String(), "type not supported")
	}
}

func (e *cjsonEncoder) table(tb *lua.LTable, depth int) {
	if depth > cjsonMaxDepth {
		e.L.RaiseError("Cannot serialise, excessive nesting (%d)", depth)
	}
	// lua_array_length: every key a positive integer -> array.
	maxIdx, items, isArray := 0.0, 0, true
	var ents []entry
	tb.ForEach(func(k, v lua.LValue) {
		ents = append(ents, entry{k, v})
		if n, ok := k.(lua.LNumber); ok && n >= 1 && float64(n) == math.Floor(float64(n)) {
			maxIdx = max(maxIdx, float64(n))
			items++
			return
		}
		isArray = false
	})
	e.r.charge(int64(len(ents)))
	if isArray && maxIdx > float64(items*cjsonSparseRatio) && maxIdx > cjsonSparseSafe {
		e.fail("table", "excessively sparse array")
	}
	if isArray && items > 0 {
		n := int(maxIdx)
		e.buf = append(e.buf, '[')
		for i := 1; i <= n; i++ {
			if i > 1 {
				e.buf = append(e.buf, ',')
			}
			e.value(tb.RawGet(lua.LNumber(i)), depth)
		}
		e.buf = append(e.buf, ']')
		return
	}
	for _, en := range ents {
		switch en.k.(type) {
		case lua.LNumber, lua.LString:
		default:
			e.fail(en.k.Type().String(), "table key must be a number or string")
		}
	}
	slices.SortFunc(ents, func(a, b entry) int { return compareKeys(a.k, b.k) })
	e.buf = append(e.buf, '{')
	for i, en := range ents {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		if n, ok := en.k.(lua.LNumber); ok {
			e.buf = append(e.buf, '"')
			e.number(float64(n))
			e.buf = append(e.buf, '"', ':')
		} else {
			e.buf = appendCJSONString(e.buf, string(en.k.(lua.LString)))
			e.buf = append(e.buf, ':')
		}
		e.value(en.v, depth)
	}
	e.buf = append(e.buf, '}')
}

// ---- decoding ----

type cjsonDecoder struct {
	r     *runner
	L     *lua.LState
	s     string
	pos   int
	depth int
	count int64
}

func (r *runner) cjsonDecode(L *lua.LState) int {
	s := L.CheckString(1)
	if len(s) > r.lim.MaxStringBytes {
		r.checkString("cjson.decode", int64(len(s)))
	}
	r.charge(int64(len(s))/32 + 1)
	if len(s) >= bigAlloc {
		r.checkMemory()
	}
	d := cjsonDecoder{r: r, L: L, s: s}
	v := d.value()
	d.ws()
	if d.pos < len(d.s) {
		d.expected("the end")
	}
	r.charge(d.count)
	L.Push(v)
	return 1
}

func (d *cjsonDecoder) ws() {
	for d.pos < len(d.s) {
		switch d.s[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// found names the token at the current position like lua-cjson does.
func (d *cjsonDecoder) found() string {
	if d.pos >= len(d.s) {
		return "T_END"
	}
	switch c := d.s[d.pos]; {
	case c == '{':
		return "T_OBJ_BEGIN"
	case c == '}':
		return "T_OBJ_END"
	case c == '[':
		return "T_ARR_BEGIN"
	case c == ']':
		return "T_ARR_END"
	case c == ':':
		return "T_COLON"
	case c == ',':
		return "T_COMMA"
	case c == '"':
		return "T_STRING"
	case c == '-' || isDigit(c):
		return "T_NUMBER"
	case c == 't' || c == 'f':
		return "T_BOOLEAN"
	case c == 'n':
		return "T_NULL"
	}
	return "invalid token"
}

func (d *cjsonDecoder) expected(what string) {
	d.L.RaiseError("Expected %s but found %s at character %d", what, d.found(), d.pos+1)
}

func (d *cjsonDecoder) invalid(what string, at int) {
	d.L.RaiseError("Expected value but found %s at character %d", what, at+1)
}

func (d *cjsonDecoder) literal(word string, v lua.LValue) lua.LValue {
	if len(d.s)-d.pos >= len(word) && d.s[d.pos:d.pos+len(word)] == word {
		d.pos += len(word)
		return v
	}
	d.invalid("invalid token", d.pos)
	return nil
}

func (d *cjsonDecoder) value() lua.LValue {
	d.count++
	if d.count&1023 == 0 {
		d.r.charge(1024)
	}
	d.ws()
	if d.pos >= len(d.s) {
		d.expected("value")
	}
	switch c := d.s[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return lua.LString(d.str())
	case c == 't':
		return d.literal("true", lua.LTrue)
	case c == 'f':
		return d.literal("false", lua.LFalse)
	case c == 'n':
		return d.literal("null", d.r.null)
	case c == '-' || isDigit(c):
		return d.number()
	}
	d.expected("value")
	return nil
}

func (d *cjsonDecoder) descend() {
	d.depth++
	if d.depth > cjsonMaxDepth {
		d.L.RaiseError("Found too many nested data structures (%d) at character %d", d.depth, d.pos+1)
	}
}

func (d *cjsonDecoder) object() lua.LValue {
	d.descend()
	d.pos++ // '{'
	tb := d.L.CreateTable(0, 0)
	d.ws()
	if d.pos < len(d.s) && d.s[d.pos] == '}' {
		d.pos++
		d.depth--
		return tb
	}
	for {
		d.ws()
		if d.pos >= len(d.s) || d.s[d.pos] != '"' {
			d.expected("object key string")
		}
		k := d.str()
		d.ws()
		if d.pos >= len(d.s) || d.s[d.pos] != ':' {
			d.expected("colon")
		}
		d.pos++
		tb.RawSetString(k, d.value())
		d.ws()
		if d.pos < len(d.s) && d.s[d.pos] == ',' {
			d.pos++
			continue
		}
		if d.pos < len(d.s) && d.s[d.pos] == '}' {
			d.pos++
			d.depth--
			return tb
		}
		d.expected("comma or object end")
	}
}

func (d *cjsonDecoder) array() lua.LValue {
	d.descend()
	d.pos++ // '['
	tb := d.L.CreateTable(0, 0)
	d.ws()
	if d.pos < len(d.s) && d.s[d.pos] == ']' {
		d.pos++
		d.depth--
		return tb
	}
	for i := 1; ; i++ {
		tb.RawSetInt(i, d.value())
		d.ws()
		if d.pos < len(d.s) && d.s[d.pos] == ',' {
			d.pos++
			continue
		}
		if d.pos < len(d.s) && d.s[d.pos] == ']' {
			d.pos++
			d.depth--
			return tb
		}
		d.expected("comma or array end")
	}
}

func hexVal(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var v rune
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case isDigit(c):
			v = v<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// str reads a JSON string starting at the opening quote.
func (d *cjsonDecoder) str() string {
	start := d.pos
	d.pos++
	// fast path: no escapes
	i := d.pos
	for i < len(d.s) && d.s[i] != '"' && d.s[i] != '\\' && d.s[i] >= 0x20 {
		i++
	}
	if i < len(d.s) && d.s[i] == '"' {
		s := d.s[d.pos:i]
		d.pos = i + 1
		return s
	}
	var b []byte
	b = append(b, d.s[d.pos:i]...)
	d.pos = i
	for {
		if d.pos >= len(d.s) {
			d.invalid("unexpected end of string", start)
		}
		c := d.s[d.pos]
		switch {
		case c == '"':
			d.pos++
			return string(b)
		case c < 0x20:
			d.invalid("invalid control character in string", d.pos)
		case c != '\\':
			b = append(b, c)
			d.pos++
			continue
		}
		// escape
		if d.pos+1 >= len(d.s) {
			d.invalid("unexpected end of string", start)
		}
		esc := d.s[d.pos+1]
		d.pos += 2
		switch esc {
		case '"', '\\', '/':
			b = append(b, esc)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r1, ok := hexVal(d.s[d.pos:])
			if !ok {
				d.invalid("invalid unicode escape code", start)
			}
			d.pos += 4
			if utf16.IsSurrogate(r1) {
				if r1 >= 0xdc00 || d.pos+6 > len(d.s) || d.s[d.pos] != '\\' || d.s[d.pos+1] != 'u' {
					d.invalid("invalid unicode escape code", start)
				}
				r2, ok := hexVal(d.s[d.pos+2:])
				if !ok || r2 < 0xdc00 || r2 > 0xdfff {
					d.invalid("invalid unicode escape code", start)
				}
				d.pos += 6
				r1 = utf16.DecodeRune(r1, r2)
			}
			b = utf8.AppendRune(b, r1)
		default:
			d.invalid("invalid escape code", start)
		}
	}
}

// number accepts exactly RFC 8259 numbers.
func (d *cjsonDecoder) number() lua.LValue {
	start := d.pos
	s := d.s
	p := d.pos
	if p < len(s) && s[p] == '-' {
		p++
	}
	switch {
	case p < len(s) && s[p] == '0':
		p++
	case p < len(s) && s[p] >= '1' && s[p] <= '9':
		for p < len(s) && isDigit(s[p]) {
			p++
		}
	default:
		d.invalid("invalid number", start)
	}
	if p < len(s) && s[p] == '.' {
		p++
		if p >= len(s) || !isDigit(s[p]) {
			d.invalid("invalid number", start)
		}
		for p < len(s) && isDigit(s[p]) {
			p++
		}
	}
	if p < len(s) && (s[p] == 'e' || s[p] == 'E') {
		p++
		if p < len(s) && (s[p] == '+' || s[p] == '-') {
			p++
		}
		if p >= len(s) || !isDigit(s[p]) {
			d.invalid("invalid number", start)
		}
		for p < len(s) && isDigit(s[p]) {
			p++
		}
	}
	f, err := strconv.ParseFloat(s[start:p], 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
			d.invalid("invalid number", start)
		}
	}
	d.pos = p
	return lua.LNumber(f)
}
