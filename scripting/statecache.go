package scripting

import (
	"math"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// The state cache
//
// Decoding a state builds a Lua table from its bytes on every call, which
// for a large state costs far more than the handler's own work. The engine
// may therefore keep, per partition key, the table a call ended with,
// together with the encoding the call produced from it, and hand that
// table to the next call whose state is those same bytes.
//
// This must never be observable: a handler has to see exactly the table
// that decoding the bytes would build, on this node and on every replica,
// or replays would diverge. gopher-lua's tables carry history that their
// contents do not show (a removed key keeps its place in the table's key
// order and takes it again when set anew; an array part keeps its length
// when its last elements are removed), and a handler can also give a
// table a metatable, share one table in two places, or store -0. So a
// table is kept only after a check that it is in every respect the table
// that decoding its encoding builds: the same values bit for bit, no
// metatable, no table reachable twice, an array part of the same length
// (or none), and a hash part whose key order is the encoding's with no
// removed keys left in it. Everything else is simply not kept, and the
// next call decodes. The check walks the table and the encoding together,
// allocating nothing, at a fraction of a decode's cost.
//
// Two of those properties, the array part's length and the number of keys
// in the key order, are not visible through gopher-lua's API; they are
// read directly (see tableFields), where reflection found the fields and
// checked their types when the package was loaded. Should a gopher-lua
// release rename or retype those fields, the cache turns itself off, and
// the encoder collects a table's entries with ForEach instead of reading
// them there (TestTableFieldsFound fails first).
//
// The cache also charges the instruction budget exactly what the decode
// would have, so whether a call found its table cached changes nothing a
// handler or its budget can see.

// tableFields locates the fields of lua.LTable the check reads.
type tableFields struct {
	array, keys uintptr // offsets of fields of type []lua.LValue
	ok          bool
}

// findTableFields returns where lua.LTable keeps its array part and its
// key order (ok false if either is missing or of another type).
func findTableFields() tableFields {
	t := reflect.TypeFor[lua.LTable]()
	arr, ok1 := t.FieldByName("array")
	keys, ok2 := t.FieldByName("keys")
	lv := reflect.TypeFor[[]lua.LValue]()
	if !ok1 || !ok2 || len(arr.Index) != 1 || len(keys.Index) != 1 || arr.Type != lv || keys.Type != lv {
		return tableFields{}
	}
	return tableFields{array: arr.Offset, keys: keys.Offset, ok: true}
}

// tableParts returns tb's array part and its key order: the keys of its
// hash part in the order next walks them, including removed keys (whose
// value is nil). Only when ltableFields.ok; the slices must not be
// modified.
func tableParts(tb *lua.LTable) (array, keys []lua.LValue) {
	p := unsafe.Pointer(tb)
	return *(*[]lua.LValue)(unsafe.Add(p, ltableFields.array)), *(*[]lua.LValue)(unsafe.Add(p, ltableFields.keys))
}

// ltableFields is immutable after package initialization.
var ltableFields = findTableFields()

// minCachedState is the smallest encoded state the cache keeps: decoding
// a smaller one costs about what keeping it would. A smaller state is only
// handed from an apply to the next call on the same runner (see handoff).
const minCachedState = 512

// cachedState is a decoded state kept for its key.
type cachedState struct {
	key        string
	enc        []byte // the encoding tb matches; never modified
	tb         *lua.LTable
	charge     int64 // the budget a decode of enc is charged
	cost       int64 // estimated memory
	prev, next *cachedState
}

// stateCache is a byte-bounded LRU of decoded states by partition key. An
// entry is taken out while a call uses it, so no two calls ever share a
// table.
type stateCache struct {
	mu    sync.Mutex
	limit int64
	bytes int64
	m     map[string]*cachedState
	head  cachedState // sentinel: head.next is the most recently used

	hits, misses atomic.Int64
	handoffs     atomic.Int64 // small states a runner handed from a call to the next
	refills      atomic.Int64 // small states decoded into a stale handoff's table
}

func newStateCache(limit int64) *stateCache {
	c := &stateCache{limit: limit, m: make(map[string]*cachedState)}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

func (c *stateCache) unlink(s *cachedState) {
	s.prev.next, s.next.prev = s.next, s.prev
	s.prev, s.next = nil, nil
	delete(c.m, s.key)
	c.bytes -= s.cost
}

// take removes key's entry and returns it if its encoding is state.
func (c *stateCache) take(key, state []byte) *cachedState {
	c.mu.Lock()
	s := c.m[string(key)]
	if s != nil {
		c.unlink(s)
	}
	c.mu.Unlock()
	if s == nil || !sameBytes(s.enc, state) {
		c.misses.Add(1)
		return nil
	}
	c.hits.Add(1)
	return s
}

// sameBytes reports whether a and b hold the same bytes, at once when they
// are the same slice: a state the engine returned and is given back, which
// nobody modifies.
func sameBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	return len(a) == 0 || unsafe.SliceData(a) == unsafe.SliceData(b) || string(a) == string(b)
}

// put makes s key's entry, evicting the least recently used beyond the
// limit. An entry larger than the whole limit is not kept.
func (c *stateCache) put(s *cachedState) {
	if s.cost > c.limit {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[s.key]; old != nil {
		c.unlink(old)
	}
	s.prev, s.next = &c.head, c.head.next
	s.prev.next, s.next.prev = s, s
	c.m[s.key] = s
	c.bytes += s.cost
	for c.bytes > c.limit {
		c.unlink(c.head.prev)
	}
}

// clear drops every entry.
func (c *stateCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.head.next != &c.head {
		c.unlink(c.head.next)
	}
}

// usage returns the bytes held (estimated) and the entries.
func (c *stateCache) usage() (bytes int64, entries int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, len(c.m)
}

// tableCost estimates the memory of a decoded table beyond its strings:
// the table, its maps and slices.
const tableCost = 384

// matcher finds out, alongside the encoder, whether a Lua value is in every
// respect the value decoding its encoding builds (see the comment at the
// top of this file), and what that decode charges. Its map is kept between
// uses by a runner.
type matcher struct {
	checking bool  // the runner's last state encoding was checked
	bad      bool  // the value differs from the decode
	charge   int64 // what decoding charges
	tables   int64 // tables walked
	small    [8]*lua.LTable
	nsmall   int
	seen     map[*lua.LTable]struct{} // tables walked, past the first few
}

// start begins a check.
func (m *matcher) start() {
	m.bad, m.charge, m.tables = false, 0, 0
}

// finish drops what the check kept but its verdict.
func (m *matcher) finish() {
	clear(m.small[:m.nsmall])
	m.nsmall = 0
	if len(m.seen) > 0 {
		clear(m.seen)
	}
}

// cost estimates the memory of the value checked, whose encoding is n
// bytes.
func (m *matcher) cost(n int) int64 { return 2*int64(n) + m.tables*tableCost }

// eachValue calls fn with each value of tb, in the order next visits
// them. Unlike ForEach, it boxes no key and iterates no Go map.
func eachValue(tb *lua.LTable, fn func(v lua.LValue)) {
	if !ltableFields.ok {
		tb.ForEach(func(_, v lua.LValue) { fn(v) })
		return
	}
	arr, keys := tableParts(tb)
	for _, v := range arr {
		if v != lua.LNil {
			fn(v)
		}
	}
	for _, k := range keys {
		if v := tb.RawGetH(k); v != lua.LNil {
			fn(v)
		}
	}
}

// isArrayIndex reports whether decoding puts the number key f in a
// table's array part.
func isArrayIndex(f float64) bool {
	return f >= 1 && f < float64(lua.MaxArrayIndex) && f == math.Trunc(f)
}

// encoded checks a value the encoder writes: numbers must come back with
// the same bits (-0 becomes 0, every NaN the canonical one).
func (m *matcher) encoded(v lua.LValue) {
	switch v := v.(type) {
	case lua.LNumber:
		f := float64(v)
		if f == 0 && math.Signbit(f) || f != f && math.Float64bits(f) != canonicalNaN {
			m.bad = true
		}
	case lua.LString:
		m.charge += int64(len(v)) / 32
	}
}

// encodedTable checks a table the encoder enters.
func (m *matcher) encodedTable(tb *lua.LTable) {
	m.tables++
	if !ltableFields.ok || tb.Metatable != lua.LNil || !m.firstVisit(tb) {
		m.bad = true
	}
}

// encodedDense checks tb, encoded as the array 1..n from its array part.
func (m *matcher) encodedDense(tb *lua.LTable, n int) {
	if arr, _ := tableParts(tb); !m.bad && len(arr) != n {
		m.bad = true
	}
}

// encodedEntries checks the layout of tb, whose entries the encoder
// collected and sorted into ents (its encoding's order); hashExact says
// every key of tb's key order has a value, is not an array index, and
// they are in ascending order. A decode puts the array indexes in the
// array part, of length the greatest of them, and the other keys in the
// key order, ascending. (The check is only made when every value is
// data, so every value of the array part is in ents.)
func (m *matcher) encodedEntries(tb *lua.LTable, ents []entry, isArray, hashExact bool) {
	if m.bad {
		return
	}
	arr, keys := tableParts(tb)
	if isArray {
		if arr == nil || len(arr) != len(ents) || len(keys) != 0 {
			m.bad = true
		}
		return
	}
	nArr, maxKey := 0, 0
	for _, en := range ents {
		if f, ok := en.k.(lua.LNumber); ok && isArrayIndex(float64(f)) {
			nArr++
			maxKey = int(f)
		}
	}
	m.charge += int64(maxKey)
	if !hashExact || (nArr == 0) != (arr == nil) || nArr > 0 && len(arr) != maxKey {
		m.bad = true
	}
}

// firstVisit records tb and reports whether it was not seen before.
func (m *matcher) firstVisit(tb *lua.LTable) bool {
	for _, t := range m.small[:m.nsmall] {
		if t == tb {
			return false
		}
	}
	if _, dup := m.seen[tb]; dup {
		return false
	}
	if m.nsmall < len(m.small) {
		m.small[m.nsmall] = tb
		m.nsmall++
		return true
	}
	if m.seen == nil {
		m.seen = make(map[*lua.LTable]struct{})
	}
	m.seen[tb] = struct{}{}
	return true
}

// unsafeString views b as a string for a lookup that does not keep it.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
