package scripting

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Canonical value encoding
//
// A value is one tag byte followed by its payload:
//
//	0x00 nil
//	0x01 false
//	0x02 true
//	0x03 integer: zig-zag uvarint; every number that is integral with
//	     |x| <= 2^53 uses this form (-0 is written as 0)
//	0x04 float: 8 bytes, IEEE-754 big-endian; only numbers that are not
//	     integers in the above sense; all NaNs are written as 0x7ff8000000000000
//	0x05 string: uvarint length, then the bytes
//	0x06 array: uvarint n >= 1, then n values; used exactly when the table's
//	     keys are 1..n
//	0x07 map: uvarint n, then n key/value pairs sorted by key: numbers first
//	     by numeric value, then strings bytewise; the empty table is the
//	     empty map
//
// Tables never contain nil values and nest at most maxDepth deep. Varints
// are minimal. Equal Lua values (ignoring metatables and table identity)
// therefore have equal encodings, and the decoder rejects every byte string
// the encoder would not produce.
const (
	tagNil   byte = 0x00
	tagFalse byte = 0x01
	tagTrue  byte = 0x02
	tagInt   byte = 0x03
	tagFloat byte = 0x04
	tagStr   byte = 0x05
	tagArray byte = 0x06
	tagMap   byte = 0x07
)

const (
	// maxDepth is the deepest table nesting the codec accepts, both when
	// encoding Lua values and when decoding bytes. The outermost table is
	// at depth 1.
	maxDepth = 200
	// maxSafeInt is the largest magnitude up to which every integer is an
	// exact float64.
	maxSafeInt   = 1 << 53
	canonicalNaN = 0x7ff8000000000000
)

// NilValue returns the encoding of nil. The slice is freshly allocated and
// owned by the caller.
func NilValue() []byte { return []byte{tagNil} }

// ValidateValue reports whether b is a canonical encoding. Empty or nil input
// means nil and is valid. The error wraps ErrCorrupt. It allocates nothing
// on success.
func ValidateValue(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	v := validator{d: decoder{b: b}}
	if err := v.value(0); err != nil {
		return err
	}
	if v.d.p != len(b) {
		return corruptf(v.d.p, "trailing bytes")
	}
	return nil
}

func corruptf(pos int, format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrCorrupt, pos, fmt.Sprintf(format, args...))
}

// isIntegral reports whether f is written with the integer tag.
func isIntegral(f float64) bool {
	return f == math.Trunc(f) && math.Abs(f) <= maxSafeInt
}

func appendNumber(dst []byte, f float64) []byte {
	if isIntegral(f) {
		i := int64(f) // -0 becomes 0
		return binary.AppendUvarint(append(dst, tagInt), uint64(i<<1)^uint64(i>>63))
	}
	bits := math.Float64bits(f)
	if f != f {
		bits = canonicalNaN
	}
	return binary.BigEndian.AppendUint64(append(dst, tagFloat), bits)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(append(dst, tagStr), uint64(len(s)))
	return append(dst, s...)
}

// token is one decoded item. For tables, n is the element (array) or pair
// (map) count and the elements follow.
type token struct {
	tag byte
	n   int
	f   float64 // number value (both integer and float tags)
	i   int64   // integer value for tagInt
	s   []byte  // string bytes, aliasing the input
}

// decoder reads tokens strictly: scalars are fully checked here, structure
// (ordering, depth, counts) by the callers.
type decoder struct {
	b []byte
	p int
	// For decodeLuaInterned: where map keys come from, and whether the
	// value being built is one.
	keys *keyIntern
	key  bool
}

func (d *decoder) uvarint() (uint64, error) {
	start := d.p
	var x uint64
	for shift := uint(0); ; shift += 7 {
		if d.p >= len(d.b) {
			return 0, corruptf(start, "truncated varint")
		}
		c := d.b[d.p]
		d.p++
		if shift == 63 && c > 1 {
			return 0, corruptf(start, "varint overflows 64 bits")
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			if c == 0 && d.p-start > 1 {
				return 0, corruptf(start, "non-minimal varint")
			}
			return x, nil
		}
	}
}

func (d *decoder) next() (token, error) {
	var t token
	if d.p >= len(d.b) {
		return t, corruptf(d.p, "truncated value")
	}
	start := d.p
	t.tag = d.b[d.p]
	d.p++
	switch t.tag {
	case tagNil, tagFalse, tagTrue:
	case tagInt:
		u, err := d.uvarint()
		if err != nil {
			return t, err
		}
		t.i = int64(u>>1) ^ -int64(u&1)
		if t.i > maxSafeInt || t.i < -maxSafeInt {
			return t, corruptf(start, "integer out of range")
		}
		t.f = float64(t.i)
	case tagFloat:
		if len(d.b)-d.p < 8 {
			return t, corruptf(start, "truncated float")
		}
		bits := binary.BigEndian.Uint64(d.b[d.p:])
		d.p += 8
		t.f = math.Float64frombits(bits)
		if t.f != t.f && bits != canonicalNaN {
			return t, corruptf(start, "non-canonical NaN")
		}
		if isIntegral(t.f) {
			return t, corruptf(start, "integral float")
		}
	case tagStr:
		u, err := d.uvarint()
		if err != nil {
			return t, err
		}
		if u > uint64(len(d.b)-d.p) {
			return t, corruptf(start, "truncated string")
		}
		t.s = d.b[d.p : d.p+int(u)]
		d.p += int(u)
	case tagArray, tagMap:
		u, err := d.uvarint()
		if err != nil {
			return t, err
		}
		min := uint64(1) // bytes per element at least
		if t.tag == tagMap {
			min = 2
		}
		if u > uint64(len(d.b)-d.p)/min {
			return t, corruptf(start, "table count exceeds input")
		}
		t.n = int(u)
		if t.tag == tagArray && t.n == 0 {
			return t, corruptf(start, "empty array")
		}
	default:
		return t, corruptf(start, "unknown tag 0x%02x", t.tag)
	}
	return t, nil
}

// skip moves past one value whose structure is already known to be valid.
func (d *decoder) skip() error {
	t, err := d.next()
	if err != nil {
		return err
	}
	switch t.tag {
	case tagArray:
		for i := 0; i < t.n; i++ {
			if err := d.skip(); err != nil {
				return err
			}
		}
	case tagMap:
		for i := 0; i < 2*t.n; i++ {
			if err := d.skip(); err != nil {
				return err
			}
		}
	}
	return nil
}

// validator checks structure on top of decoder. If ends is non-nil it
// records, in pre-order, the start and end offsets of every non-empty
// table (used by AppendRESP to skip values in O(log n)).
type validator struct {
	d    decoder
	ends *[]span
}

type span struct{ start, end int }

func (v *validator) value(depth int) error {
	start := v.d.p
	t, err := v.d.next()
	if err != nil {
		return err
	}
	switch t.tag {
	case tagArray, tagMap:
		if depth >= maxDepth {
			return corruptf(start, "nesting deeper than %d", maxDepth)
		}
		idx := -1
		if v.ends != nil && t.n > 0 {
			idx = len(*v.ends)
			*v.ends = append(*v.ends, span{start: start})
		}
		if t.tag == tagArray {
			for i := 0; i < t.n; i++ {
				if err := v.element(depth + 1); err != nil {
					return err
				}
			}
		} else if err := v.mapBody(t.n, depth+1); err != nil {
			return err
		}
		if idx >= 0 {
			(*v.ends)[idx].end = v.d.p
		}
	}
	return nil
}

// element is a table value: anything but nil.
func (v *validator) element(depth int) error {
	if v.d.p < len(v.d.b) && v.d.b[v.d.p] == tagNil {
		return corruptf(v.d.p, "nil inside a table")
	}
	return v.value(depth)
}

func (v *validator) mapBody(n, depth int) error {
	var prev token
	seq := true // keys so far are 1, 2, 3, ...
	for i := 0; i < n; i++ {
		kpos := v.d.p
		k, err := v.d.next()
		if err != nil {
			return err
		}
		switch k.tag {
		case tagInt, tagFloat, tagStr:
		default:
			return corruptf(kpos, "map key with tag 0x%02x", k.tag)
		}
		if k.tag == tagFloat && k.f != k.f {
			return corruptf(kpos, "NaN map key")
		}
		if i > 0 && !keyLess(prev, k) {
			return corruptf(kpos, "map keys not in canonical order")
		}
		seq = seq && k.tag == tagInt && k.i == int64(i+1)
		prev = k
		if err := v.element(depth); err != nil {
			return err
		}
	}
	if n > 0 && seq {
		return corruptf(v.d.p, "map with keys 1..%d must be an array", n)
	}
	return nil
}

// keyLess is the canonical key order: numbers by value, then strings
// bytewise.
func keyLess(a, b token) bool {
	an, bn := a.tag != tagStr, b.tag != tagStr
	switch {
	case an && bn:
		return a.f < b.f
	case an != bn:
		return an
	}
	return bytes.Compare(a.s, b.s) < 0
}

// ---- Lua values -> bytes ----

// encoder turns a Lua value into its canonical encoding.
type encoder struct {
	buf     []byte
	max     int   // encoded size limit
	sizeErr error // ErrStateSize or ErrOutputSize
	lenient bool  // drop functions, userdata and unusable keys instead of failing
	charge  int64 // work done, for the instruction budget
	stack   []*lua.LTable
	scratch []entry
	// check, if set, also finds out whether the value is in every respect
	// what decoding its encoding builds, and what that decode charges
	// (see statecache.go).
	check *matcher
	// verify, if set, is what the encoding must come out as: buf then holds
	// only what is not compared yet, and the encoding stops at the first
	// difference (see verifyLua).
	verify []byte
	vpos   int // bytes of verify matched
}

var errMismatch = errors.New("the encoding differs")

// verifyWritten compares what buf holds with verify, once it holds a few
// KiB (or at the end, when final).
func (e *encoder) verifyWritten(final bool) error {
	if !final && len(e.buf) < 4096 {
		return nil
	}
	end := e.vpos + len(e.buf)
	if end > len(e.verify) || string(e.buf) != string(e.verify[e.vpos:end]) {
		return errMismatch
	}
	e.vpos, e.buf = end, e.buf[:0]
	return nil
}

type entry struct {
	k lua.LValue
	v lua.LValue
}

// pathError is a non-data failure; path segments are collected while the
// recursion unwinds, innermost first.
type pathError struct {
	segs []string
	msg  string
	kind error
}

func (e *pathError) Error() string { return e.msg }

func (e *pathError) render(root string) string {
	var b strings.Builder
	b.WriteString(root)
	for i := len(e.segs) - 1; i >= 0; i-- {
		b.WriteString(e.segs[i])
	}
	b.WriteString(": ")
	b.WriteString(e.msg)
	return b.String()
}

// pathSeg formats a key the way Lua source would index with it.
func pathSeg(k lua.LValue) string {
	switch k := k.(type) {
	case lua.LString:
		if isIdentifier(string(k)) {
			return "." + string(k)
		}
		return "[" + strconv.Quote(string(k)) + "]"
	case lua.LNumber:
		return "[" + numberToString(float64(k)) + "]"
	}
	return "[?]"
}

func isIdentifier(s string) bool {
	if s == "" || isLuaKeyword(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

func isLuaKeyword(s string) bool {
	switch s {
	case "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
		"in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while":
		return true
	}
	return false
}

var errSizeSentinel = errors.New("size")

func (e *encoder) checkSize() error {
	if e.verify != nil {
		return e.verifyWritten(false)
	}
	if len(e.buf) > e.max {
		return errSizeSentinel
	}
	return nil
}

// isData reports whether v can be stored; nil counts, because the caller
// only asks about table values, which are never nil.
func isData(v lua.LValue) bool {
	switch v.(type) {
	case *lua.LNilType, lua.LBool, lua.LNumber, lua.LString, *lua.LTable:
		return true
	}
	return false
}

func (e *encoder) value(v lua.LValue, depth int) error {
	e.charge++
	if e.check != nil {
		e.check.charge++
		e.check.encoded(v)
	}
	switch v := v.(type) {
	case *lua.LNilType:
		e.buf = append(e.buf, tagNil)
	case lua.LBool:
		if v {
			e.buf = append(e.buf, tagTrue)
		} else {
			e.buf = append(e.buf, tagFalse)
		}
	case lua.LNumber:
		e.buf = appendNumber(e.buf, float64(v))
	case lua.LString:
		if len(v) > e.max {
			return errSizeSentinel
		}
		e.charge += int64(len(v)) / 32
		e.buf = appendString(e.buf, string(v))
	case *lua.LTable:
		return e.table(v, depth+1)
	default:
		if e.lenient {
			e.buf = append(e.buf, tagNil)
			return nil
		}
		return &pathError{msg: v.Type().String() + " is not data", kind: ErrNotData}
	}
	return e.checkSize()
}

func (e *encoder) table(tb *lua.LTable, depth int) error {
	if depth > maxDepth {
		return &pathError{msg: fmt.Sprintf("tables nested deeper than %d", maxDepth), kind: ErrNotData}
	}
	for _, t := range e.stack {
		if t == tb {
			return &pathError{msg: "cyclic table is not data", kind: ErrNotData}
		}
	}
	e.stack = append(e.stack, tb)
	defer func() { e.stack = e.stack[:len(e.stack)-1] }()
	if e.check != nil {
		e.check.encodedTable(tb)
	}

	// The array part is walked in full, including holes.
	maxN := tb.MaxN()
	e.charge += int64(maxN)
	if maxN > 0 && hashPartEmpty(tb) {
		if ok, err := e.denseArray(tb, maxN, depth); ok {
			return err
		}
	}
	base := len(e.scratch)
	badKey := ""
	defer func() {
		clear(e.scratch[base:])
		e.scratch = e.scratch[:base]
	}()
	// The entries are collected in the order next visits them: the array
	// part, then the key order. Most tables come in sorted order (a
	// decoded table's keys are in its encoding's order) and need no sort.
	// hashExact: every key of the key order has a value, is not an array
	// index, and they come in ascending order (for the check).
	hashExact, ordered := false, true
	if ltableFields.ok {
		arr, keys := tableParts(tb)
		for i, v := range arr {
			if v != lua.LNil {
				_, inOrder := e.collect(lua.LNumber(i+1), v, &badKey, base)
				ordered = ordered && inOrder
			}
		}
		hashExact = true
		var prev lua.LValue
		for _, k := range keys {
			v := tb.RawGetH(k)
			if v == lua.LNil {
				hashExact = false // a removed key
				continue
			}
			added, inOrder := e.collect(k, v, &badKey, base)
			ordered = ordered && inOrder
			if !added {
				continue // the encoding fails, or is lenient and unchecked
			}
			if num, ok := k.(lua.LNumber); ok && isArrayIndex(float64(num)) || prev != nil && compareKeys(prev, k) >= 0 {
				hashExact = false
			}
			prev = k
		}
	} else {
		ordered = false
		tb.ForEach(func(k, v lua.LValue) { e.collect(k, v, &badKey, base) })
	}
	if badKey != "" && !e.lenient {
		return &pathError{msg: badKey + " key is not data", kind: ErrNotData}
	}
	n := len(e.scratch) - base
	e.charge += int64(n)
	ents := e.scratch[base:]
	isArray := n > 0
	for _, en := range ents {
		k, ok := en.k.(lua.LNumber)
		if !ok || float64(k) != math.Trunc(float64(k)) || k < 1 || k > lua.LNumber(n) {
			isArray = false
			break
		}
	}
	if !ordered {
		slices.SortFunc(ents, func(a, b entry) int { return compareKeys(a.k, b.k) })
	}
	if e.check != nil {
		e.check.encodedEntries(tb, ents, isArray, hashExact)
	}
	if isArray {
		e.buf = binary.AppendUvarint(append(e.buf, tagArray), uint64(n))
	} else {
		e.buf = binary.AppendUvarint(append(e.buf, tagMap), uint64(n))
	}
	for i := 0; i < n; i++ {
		// Re-slice each time: the recursion may grow e.scratch.
		en := e.scratch[base+i]
		if !isArray {
			if err := e.value(en.k, depth); err != nil {
				return err
			}
		}
		if err := e.value(en.v, depth); err != nil {
			if pe, ok := err.(*pathError); ok {
				pe.segs = append(pe.segs, pathSeg(en.k))
			}
			return err
		}
	}
	return e.checkSize()
}

// collect adds the entry (k, v) of a table to e.scratch, unless its key
// is not data (badKey then keeps the least such type name, the same
// whatever order entries come in) or, leniently, its value is not data.
// It reports whether it added it, and whether e.scratch[base:] is still
// in ascending key order.
func (e *encoder) collect(k, v lua.LValue, badKey *string, base int) (added, ordered bool) {
	switch k.(type) {
	case lua.LNumber, lua.LString:
	default:
		if name := k.Type().String(); *badKey == "" || name < *badKey {
			*badKey = name
		}
		return false, true
	}
	if e.lenient && !isData(v) {
		return false, true
	}
	n := len(e.scratch)
	ordered = n == base || compareKeys(e.scratch[n-1].k, k) < 0
	e.scratch = append(e.scratch, entry{k, v})
	return true, ordered
}

// denseArray encodes tb, whose keys are all in its array part, if they are
// 1..n with no holes: the common list, written in order without collecting
// and sorting its entries. It charges what the general path charges. ok
// false means tb has holes and nothing was written.
func (e *encoder) denseArray(tb *lua.LTable, n, depth int) (ok bool, err error) {
	for i := 1; i <= n; i++ {
		v := tb.RawGetInt(i)
		if v == lua.LNil || (e.lenient && !isData(v)) {
			return false, nil
		}
	}
	e.charge += int64(n)
	if e.check != nil {
		e.check.encodedDense(tb, n)
	}
	e.buf = binary.AppendUvarint(append(e.buf, tagArray), uint64(n))
	for i := 1; i <= n; i++ {
		if err := e.value(tb.RawGetInt(i), depth); err != nil {
			if pe, ok := err.(*pathError); ok {
				pe.segs = append(pe.segs, pathSeg(lua.LNumber(i)))
			}
			return true, err
		}
	}
	return true, e.checkSize()
}

// hashPartEmpty reports whether tb has no keys outside its array part
// (false when unsure).
func hashPartEmpty(tb *lua.LTable) bool {
	if !ltableFields.ok {
		return false
	}
	_, keys := tableParts(tb)
	return len(keys) == 0
}

// compareKeys orders number and string keys canonically.
func compareKeys(a, b lua.LValue) int {
	an, aIsNum := a.(lua.LNumber)
	bn, bIsNum := b.(lua.LNumber)
	switch {
	case aIsNum && bIsNum:
		if an < bn {
			return -1
		} else if an > bn {
			return 1
		}
		return 0
	case aIsNum:
		return -1
	case bIsNum:
		return 1
	}
	return strings.Compare(string(a.(lua.LString)), string(b.(lua.LString)))
}

// encodeLua encodes v. root names the value in error paths ("state",
// "output"). The returned kind is nil on success, else ErrNotData or
// sizeErr; msg describes the failure.
func encodeLua(v lua.LValue, max int, lenient bool, sizeErr error, root string) (b []byte, charge int64, kind error, msg string) {
	return encodeLuaReusing(v, max, lenient, sizeErr, root, nil, 0, nil)
}

// encodeBuffers are an encoder's working slices, kept by a runner between
// encodings.
type encodeBuffers struct {
	stack   []*lua.LTable
	scratch []entry
	verify  []byte // verifyLua's
}

// encodeLuaReusing is encodeLua working in bufs (if not nil), which it
// leaves empty for the next encoding. sizeHint is the size the encoding is
// expected to have (a new state's is about its old state's): the buffer
// starts that large, so a large state is not copied again and again as it
// grows. check, if not nil (and not lenient), is set to tell whether v is
// what decoding b builds (check.bad false) and what that decode charges.
func encodeLuaReusing(v lua.LValue, max int, lenient bool, sizeErr error, root string, bufs *encodeBuffers, sizeHint int, check *matcher) (b []byte, charge int64, kind error, msg string) {
	e := encoder{max: max, lenient: lenient, sizeErr: sizeErr}
	if check != nil && !lenient {
		check.start()
		e.check = check
	}
	if bufs != nil {
		e.stack, e.scratch = bufs.stack[:0], bufs.scratch[:0]
	}
	defer e.release(bufs)
	if _, ok := v.(*lua.LTable); ok {
		e.buf = make([]byte, 0, encodeCap(sizeHint, max)) // most states: one allocation
	}
	err := e.value(v, 0)
	if err == nil {
		return e.buf, e.charge, nil, ""
	}
	if pe, ok := err.(*pathError); ok {
		return nil, e.charge, pe.kind, pe.render(root)
	}
	return nil, e.charge, sizeErr, fmt.Sprintf("%s: encoded size exceeds %d bytes", root, max)
}

// release ends an encoding: it leaves bufs (if not nil, and they were
// taken) empty for the next one, and the check its verdict only.
func (e *encoder) release(bufs *encodeBuffers) {
	if e.check != nil {
		e.check.finish()
	}
	if bufs == nil {
		return
	}
	// table pops and clears what it pushes; the stack's popped slots still
	// point at tables.
	clear(e.stack[:cap(e.stack)])
	bufs.stack, bufs.scratch = e.stack[:0], e.scratch[:0]
	if cap(e.scratch) > 4096 {
		bufs.scratch = nil // do not keep a huge state's worth
	}
	if e.verify != nil && cap(e.buf) <= 64<<10 {
		bufs.verify = e.buf[:0] // grown past a few KiB only by a long string
	}
}

// verifyLua reports whether v is in every respect the value decoding enc
// (a valid encoding) builds: its encoding is enc, and check finds nothing
// a decode would build otherwise. check.charge is then what that decode
// charges. It works in bufs, allocating nothing.
func verifyLua(v lua.LValue, enc []byte, bufs *encodeBuffers, check *matcher) bool {
	e := encoder{max: len(enc), sizeErr: ErrStateSize, check: check, verify: enc, buf: bufs.verify[:0]}
	e.stack, e.scratch = bufs.stack[:0], bufs.scratch[:0]
	check.start()
	defer e.release(bufs)
	if e.value(v, 0) != nil || e.verifyWritten(true) != nil {
		return false
	}
	return e.vpos == len(enc) && !check.bad
}

// encodeCap is the capacity an encoding expected to take about hint bytes
// starts with: 64 bytes at least, and a sixteenth more than the hint for
// room to grow, but never more than the largest encoding allowed.
func encodeCap(hint, limit int) int {
	return max(min(hint+hint/16, limit), 64)
}

// ---- bytes -> Lua values ----

// errDecodeBudget reports that decoding would exceed the caller's budget.
var errDecodeBudget = errors.New("decode budget exceeded")

// decodeLua builds the Lua value for a validated encoding. Tables get a
// deterministic layout: arrays are filled 1..n, maps in canonical key order.
// charge counts values created plus the array slots that integer map keys
// make gopher-lua allocate (it stores every integer key below
// lua.MaxArrayIndex in a dense array); decoding stops with errDecodeBudget
// before the charge would pass limit, so a tiny state cannot make it
// allocate a huge array.
func decodeLua(L *lua.LState, b []byte, limit int64) (v lua.LValue, charge int64, err error) {
	return decodeLuaInterned(L, b, limit, nil)
}

// decodeLuaInterned is decodeLua taking the string keys of maps from keys
// when it holds them (and adding them while it has room).
func decodeLuaInterned(L *lua.LState, b []byte, limit int64, keys *keyIntern) (v lua.LValue, charge int64, err error) {
	if len(b) == 0 {
		return lua.LNil, 0, nil
	}
	if err := ValidateValue(b); err != nil {
		return nil, 0, err
	}
	return buildLuaInterned(L, b, limit, keys)
}

// buildLuaInterned is decodeLuaInterned for a non-empty encoding that
// ValidateValue accepted.
func buildLuaInterned(L *lua.LState, b []byte, limit int64, keys *keyIntern) (v lua.LValue, charge int64, err error) {
	d := decoder{b: b, keys: keys}
	v, err = buildLua(L, &d, &charge, limit)
	return v, charge, err
}

// refillLua decodes b into tb, a table nothing else refers to, if b's
// value has tb's shape: a map of as many string keys as tb's key order
// holds, in that order, while tb has no metatable and no array part.
// Overwriting the value of every key leaves gopher-lua's key order and
// key index as they are, and those, the metatable and the array part are
// all a table's history can leave (a key removed from a table stays in
// its key order, and gets its value back here), so tb ends up in every
// respect the table a decode of b builds. It charges what that decode
// would. b must be a non-empty encoding that ValidateValue accepted. ok is
// false if b's value has another shape or would pass limit; tb may then
// be half refilled, and is dropped.
func refillLua(L *lua.LState, tb *lua.LTable, b []byte, limit int64, keys *keyIntern) (charge int64, ok bool) {
	if !ltableFields.ok {
		return 0, false
	}
	arr, order := tableParts(tb)
	d := decoder{b: b, keys: keys}
	t, err := d.next()
	if err != nil || t.tag != tagMap || tb.Metatable != lua.LNil || arr != nil || t.n != len(order) {
		return 0, false
	}
	charge = 1 // the map, as buildLua charges it
	if charge > limit {
		return 0, false
	}
	for _, k := range order {
		d.key = true
		kv, err := buildLua(L, &d, &charge, limit)
		if err != nil {
			return 0, false
		}
		ks, isStr := kv.(lua.LString)
		if ts, tIsStr := k.(lua.LString); !isStr || !tIsStr || ts != ks {
			return 0, false
		}
		v, err := buildLua(L, &d, &charge, limit)
		if err != nil {
			return 0, false
		}
		tb.RawSetString(string(ks), v)
	}
	return charge, true
}

// keyIntern holds Lua strings for the short map keys a runner decodes
// again and again (a state's field names), so decoding a state does not
// allocate its keys each time. Strings are immutable: sharing them changes
// nothing a handler can see. It is bounded and owned by one runner.
type keyIntern struct{ m map[string]lua.LValue }

const (
	internKeyMax  = 32   // longest key kept
	internEntries = 4096 // keys kept at most
)

// get returns the Lua string of b.
func (k *keyIntern) get(b []byte) lua.LValue {
	if k == nil || len(b) > internKeyMax {
		return lua.LString(b)
	}
	if v, ok := k.m[string(b)]; ok {
		return v
	}
	v := lua.LValue(lua.LString(b))
	if len(k.m) < internEntries {
		if k.m == nil {
			k.m = make(map[string]lua.LValue)
		}
		k.m[string(v.(lua.LString))] = v
	}
	return v
}

func buildLua(L *lua.LState, d *decoder, charge *int64, limit int64) (lua.LValue, error) {
	isKey := d.key // this value is a map key
	d.key = false
	t, err := d.next()
	if err != nil {
		return nil, err
	}
	*charge++
	if *charge > limit {
		return nil, errDecodeBudget
	}
	switch t.tag {
	case tagNil:
		return lua.LNil, nil
	case tagFalse:
		return lua.LFalse, nil
	case tagTrue:
		return lua.LTrue, nil
	case tagInt, tagFloat:
		return lua.LNumber(t.f), nil
	case tagStr:
		*charge += int64(len(t.s)) / 32
		if isKey {
			return d.keys.get(t.s), nil
		}
		return lua.LString(t.s), nil
	case tagArray:
		tb := L.CreateTable(t.n, 0)
		for i := 1; i <= t.n; i++ {
			v, err := buildLua(L, d, charge, limit)
			if err != nil {
				return nil, err
			}
			tb.RawSetInt(i, v)
		}
		return tb, nil
	default: // tagMap
		tb := L.CreateTable(0, t.n)
		maxKey := 0
		for i := 0; i < t.n; i++ {
			d.key = true
			k, err := buildLua(L, d, charge, limit)
			if err != nil {
				return nil, err
			}
			v, err := buildLua(L, d, charge, limit)
			if err != nil {
				return nil, err
			}
			if s, ok := k.(lua.LString); ok {
				tb.RawSetString(string(s), v)
				continue
			}
			if f := float64(k.(lua.LNumber)); f >= 1 && f < float64(lua.MaxArrayIndex) && f == math.Trunc(f) {
				maxKey = int(f)
				if *charge+int64(maxKey) > limit {
					return nil, errDecodeBudget
				}
			}
			tb.RawSet(k, v)
		}
		*charge += int64(maxKey)
		return tb, nil
	}
}

// numberToString is tostring for numbers in the sandbox: gopher-lua's
// format (integers in decimal, others in Go's shortest %v form), made
// independent of the CPU's float-to-int conversion for |x| >= 2^63.
func numberToString(f float64) string {
	if f == math.Trunc(f) && f >= -9.223372036854775808e18 && f < 9.223372036854775808e18 {
		return strconv.FormatInt(int64(f), 10)
	}
	return fmt.Sprint(f)
}
