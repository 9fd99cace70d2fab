package scripting

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	lua "github.com/yuin/gopher-lua"
)

// Engine runs handlers on a pool of sandboxed gopher-lua states. It is safe
// for concurrent use by many goroutines; each call borrows one state for its
// duration.
type Engine struct {
	mu     sync.Mutex    // serializes SetLimits and Close
	limits Limits        // guarded by mu
	gen    atomic.Uint64 // bumped by SetLimits: older pooled states are discarded
	closed atomic.Bool
	// free holds idle states. Calls take and return them with atomic
	// swaps, so calls on different cores never wait for each other.
	free  []atomic.Pointer[runner]
	watch watcher
	cur   atomic.Pointer[Limits] // limits, for reading without mu
	// states caches decoded states by key (nil: off); see statecache.go.
	states atomic.Pointer[stateCache]
}

// Usage returns the calls run and the instruction-budget units they used
// (VM instructions plus library charges), since NewEngine.
func (e *Engine) Usage() (calls, units int64) { return e.watch.usage() }

// NewEngine returns an engine with the given limits. The zero Limits means
// DefaultLimits(); any other value must pass Validate, else NewEngine
// panics (validate user-supplied limits first).
func NewEngine(l Limits) *Engine {
	if l == (Limits{}) {
		l = DefaultLimits()
	}
	if err := l.Validate(); err != nil {
		panic(err)
	}
	e := &Engine{limits: l, free: make([]atomic.Pointer[runner], max(4, 2*runtime.GOMAXPROCS(0)))}
	e.cur.Store(&l)
	return e
}

// SetLimits changes the limits for calls that start afterwards.
func (e *Engine) SetLimits(l Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	e.mu.Lock()
	e.limits = l
	e.cur.Store(&l)
	e.gen.Add(1)
	e.mu.Unlock()
	e.drain()
	return nil
}

// drain closes the idle states.
func (e *Engine) drain() {
	for i := range e.free {
		if r := e.free[i].Swap(nil); r != nil {
			r.close()
		}
	}
}

// SetStateCache keeps the decoded states of up to about bytes of memory
// (on the Go heap), by partition key, so that a call on a recent state
// need not decode it again; 0 or less turns the cache off (the default).
// Only states of at least 512 encoded bytes are kept (a smaller one an
// apply returns is only handed to the next call on the same runner), and
// only when nothing about the kept table can differ from a fresh decode,
// so the cache never changes what a handler sees or what its budget is
// charged.
func (e *Engine) SetStateCache(bytes int64) {
	var c *stateCache
	if bytes > 0 {
		c = newStateCache(bytes)
	}
	if old := e.states.Swap(c); old != nil {
		old.clear()
	}
}

// StateCacheStats are the state cache's counters since it was set.
type StateCacheStats struct {
	Hits, Misses int64 // calls on a large state that found it, or did not
	Bytes        int64 // estimated memory held
	Entries      int
	Handoffs     int64 // calls on a small state that took it from the apply before
	Refills      int64 // calls on a small state decoded into the table of another
}

// StateCacheStats returns the state cache's counters (zero when off).
func (e *Engine) StateCacheStats() StateCacheStats {
	c := e.states.Load()
	if c == nil {
		return StateCacheStats{}
	}
	b, n := c.usage()
	return StateCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Bytes: b, Entries: n, Handoffs: c.handoffs.Load(), Refills: c.refills.Load()}
}

// Limits returns the current limits.
func (e *Engine) Limits() Limits { return *e.cur.Load() }

// Close closes the pooled states. Calls still work afterwards but no longer
// pool their states.
func (e *Engine) Close() {
	e.closed.Store(true)
	e.drain()
	if c := e.states.Load(); c != nil {
		c.clear()
	}
}

// get takes an idle state, or makes one. Both get and put start at the
// first slot, so the states in use are the same few, warm in the caches.
func (e *Engine) get() *runner {
	gen := e.gen.Load()
	for i := range e.free {
		slot := &e.free[i]
		if slot.Load() == nil {
			continue
		}
		if r := slot.Swap(nil); r != nil {
			if r.gen == gen {
				return r
			}
			r.close()
		}
	}
	e.mu.Lock()
	lim, gen := e.limits, e.gen.Load()
	e.mu.Unlock()
	return newRunner(e, lim, gen)
}

// put returns r to the pool, or closes it when it may be unhealthy, is
// from older limits, or the pool is full or closed.
func (e *Engine) put(r *runner, healthy bool) {
	if healthy && !e.closed.Load() && r.gen == e.gen.Load() {
		for i := range e.free {
			if e.free[i].CompareAndSwap(nil, r) {
				// A Close or SetLimits meanwhile must not leave it idle.
				if e.closed.Load() || r.gen != e.gen.Load() {
					e.drain()
				}
				return
			}
		}
	}
	r.close()
}

// Handler is a compiled handler. It is immutable and may be shared by any
// number of goroutines and engines.
type Handler struct {
	src       []byte
	sha       string
	proto     *lua.FunctionProto
	hasIndex  bool
	hasQuery  bool
	stateless bool // see stateless: the chunk need not run again per call
}

// SHA returns the lowercase hex SHA1 of the source (what Redis SCRIPT LOAD
// returns).
func (h *Handler) SHA() string { return h.sha }

// Source returns a copy of the handler's source.
func (h *Handler) Source() []byte { return append([]byte(nil), h.src...) }

// HasIndex reports whether the handler defines index.
func (h *Handler) HasIndex() bool { return h.hasIndex }

// HasQuery reports whether the handler defines query.
func (h *Handler) HasQuery() bool { return h.hasQuery }

// Call carries the context of one Apply, Index or Query.
type Call struct {
	Key  []byte
	Time int64  // ms: ctx.time
	ID   string // ctx.id; also seeds math.random for apply
	// Seq and Node, when Node is set and ID is not, stand for the ID
	// "<Seq>.<Node>": the string is then made only if the handler reads
	// ctx.id, and math.random is seeded from the same bytes.
	Seq    uint64
	Node   string
	Accept bool // first acceptance of an event: wall-clock timeout and memory bound apply; replays (false) use only the deterministic limits
}

// Load compiles src and runs its top-level chunk once in the sandbox (the
// budget, wall-clock timeout and memory bound apply, so a top-level infinite
// loop is refused), then checks that apply is a function and that index and
// query, if defined, are functions. Failures are *Error with Func "load".
func (e *Engine) Load(src []byte) (*Handler, error) {
	sum := sha1.Sum(src)
	h := &Handler{src: append([]byte(nil), src...), sha: hex.EncodeToString(sum[:])}
	lim := e.Limits()
	if len(src) > lim.MaxEventBytes {
		return nil, &Error{Kind: ErrCompile, Func: "load", Msg: fmt.Sprintf("source of %d bytes exceeds %d bytes", len(src), lim.MaxEventBytes)}
	}
	proto, cerr := compileLua(src, chunkName)
	if cerr != nil {
		return nil, &Error{Kind: ErrCompile, Func: "load", Line: cerr.line, Msg: cerr.msg}
	}
	h.proto = proto
	h.stateless = stateless(proto)
	err := e.with(func(r *runner) *Error {
		r.begin(&callSpec{fname: "load", accept: true, seed: h.sha, sha: h.sha})
		if ferr := r.runChunk(proto, false); ferr != nil {
			return ferr
		}
		if _, ok := r.global("apply").(*lua.LFunction); !ok {
			return &Error{Kind: ErrNoApply, Func: "load", Msg: "apply is not defined as a function"}
		}
		for _, name := range []string{"index", "query"} {
			switch r.global(name).(type) {
			case *lua.LNilType:
			case *lua.LFunction:
				if name == "index" {
					h.hasIndex = true
				} else {
					h.hasQuery = true
				}
			default:
				return &Error{Kind: ErrRuntime, Func: "load", Msg: name + " is defined but is not a function"}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// with runs fn on a pooled runner, turning any panic that escapes
// gopher-lua's own recovery into an error, and returns the runner to the
// pool only if the call ended normally or with an ordinary script error.
func (e *Engine) with(fn func(r *runner) *Error) (err *Error) {
	r := e.get()
	healthy := false
	defer func() {
		if rcv := recover(); rcv != nil {
			err = &Error{Kind: ErrRuntime, Func: r.fname, Msg: sanitizeAddresses(fmt.Sprintf("internal error: %v", rcv))}
			healthy = false
		}
		r.end()
		e.put(r, healthy)
		if err != nil && err.Kind == ErrMemory {
			// What the script allocated is garbage now; collect it so that
			// the heap bound does not keep failing other calls. GC cost is
			// proportional to live memory, not to the garbage.
			runtime.GC()
		}
	}()
	err = fn(r)
	healthy = err == nil || ((err.Kind == ErrRuntime || err.Kind == ErrNotData || err.Kind == ErrTags ||
		err.Kind == ErrStateSize || err.Kind == ErrOutputSize || err.Kind == ErrNoApply) &&
		!isInternal(err))
	return err
}

func isInternal(err *Error) bool {
	return len(err.Msg) >= 15 && err.Msg[:15] == "internal error:"
}

func (e *Engine) prepare(fname string, h *Handler, arg []byte, argName string) (Limits, *Error) {
	lim := e.Limits()
	if h == nil || h.proto == nil {
		return lim, &Error{Kind: ErrNoApply, Func: fname, Msg: "no handler"}
	}
	if arg != nil && len(arg) > lim.MaxEventBytes {
		return lim, &Error{Kind: ErrEventSize, Func: fname,
			Msg: fmt.Sprintf("%s of %d bytes exceeds %d bytes", argName, len(arg), lim.MaxEventBytes)}
	}
	return lim, nil
}

// decodeState decodes the stored state of key into r's LState, charging
// the budget for the tables it builds, or takes the table from the state
// cache or the runner's handoff, charged the same. A small state that is
// not the handoff's is decoded into the handoff's table when it has the
// same shape (see refillLua), which saves building a table: a server's
// next event is usually on another key, and its state often has the same
// fields.
func (r *runner) decodeState(state, key []byte) (lua.LValue, *Error) {
	sc := r.eng.states.Load()
	var spare *lua.LTable // the handoff's table, if it is not the state's
	if sc != nil && len(state) >= minCachedState {
		if s := sc.take(key, state); s != nil && r.bctx.n+s.charge <= r.bctx.budget {
			r.bctx.n += s.charge
			r.taken = s
			return s.tb, nil
		}
	} else if ho := &r.handoff; sc != nil && ho.tb != nil {
		tb, enc := ho.tb, ho.enc
		ho.tb, ho.enc = nil, nil // taken, or stale
		if enc != nil && bytes.Equal(ho.key, key) && sameBytes(enc, state) && r.bctx.n+ho.charge <= r.bctx.budget {
			r.bctx.n += ho.charge
			sc.handoffs.Add(1)
			return tb, nil
		}
		spare = tb
	}
	if len(state) == 0 {
		return lua.LNil, nil
	}
	// Checked once, for the refill and the decode alike.
	if err := ValidateValue(state); err != nil {
		return nil, &Error{Kind: ErrCorrupt, Func: r.fname, Msg: "state: " + err.Error()}
	}
	limit := r.bctx.budget - r.bctx.n
	if spare != nil {
		if charge, ok := refillLua(r.L, spare, state, limit, &r.keys); ok {
			r.bctx.n += charge
			sc.refills.Add(1)
			return spare, nil
		}
	}
	v, charge, err := buildLuaInterned(r.L, state, limit, &r.keys)
	r.bctx.n += charge
	if err != nil && err != errDecodeBudget {
		return nil, &Error{Kind: ErrCorrupt, Func: r.fname, Msg: "state: " + err.Error()}
	}
	if err != nil || r.bctx.n > r.bctx.budget {
		r.bctx.stop = ErrBudget
		return nil, &Error{Kind: ErrBudget, Func: r.fname, Msg: kindText(ErrBudget) + " while decoding the state"}
	}
	return v, nil
}

// keepRead keeps what the state value v of an index or query call, whose
// state was enc, can still serve: a table taken from the state cache goes
// back to it if the call left it intact, and a small state's table, which
// nothing refers to now, becomes the runner's spare (see handoff) for the
// next call to decode its state into.
func (r *runner) keepRead(key, enc []byte, v lua.LValue) {
	if r.taken != nil {
		r.keepState(key, r.taken.enc, v, false)
		return
	}
	tb, ok := v.(*lua.LTable)
	if !ok || len(enc) >= minCachedState || r.eng.states.Load() == nil {
		return
	}
	r.handoff.tb, r.handoff.enc = tb, nil
}

// keepState offers the state cache v, a call's state value, as the
// decoded form of enc under key (a small one is the runner's handoff
// instead). enc must never be modified: Apply keeps the new state it
// returns, and Index and Query only what they took from the cache.
// checked means the encoder made enc from v and found it matches (r.match
// holds the verdict), so it need not be walked again.
func (r *runner) keepState(key, enc []byte, v lua.LValue, checked bool) {
	sc := r.eng.states.Load()
	tb, ok := v.(*lua.LTable)
	if sc == nil || !ok || checked && r.match.bad {
		return
	}
	if len(enc) < minCachedState {
		// Only an apply hands its state on (checked): a table an index or
		// query took is used up.
		if checked {
			ho := &r.handoff
			ho.key = append(ho.key[:0], key...)
			ho.enc, ho.tb, ho.charge = enc, tb, r.match.charge
		}
		return
	}
	if !checked && !verifyLua(tb, enc, &r.encBufs, &r.match) {
		return
	}
	s := r.taken
	r.taken = nil
	if s == nil || s.key != string(key) {
		s = &cachedState{key: string(key)}
	}
	s.enc, s.tb, s.charge, s.cost = enc, tb, r.match.charge, r.match.cost(len(enc))+int64(len(s.key))
	sc.put(s)
}

// encodeResult encodes a returned value after the call; sizeHint is the
// size it is expected to have. A state is also checked for the state
// cache, if there is one (r.match.checking tells).
func (r *runner) encodeResult(v lua.LValue, max int, lenient bool, sizeErr error, root string, sizeHint int) ([]byte, *Error) {
	var check *matcher
	if !lenient {
		r.match.checking = r.eng.states.Load() != nil
		if r.match.checking {
			check = &r.match
		}
	}
	b, charge, kind, msg := encodeLuaReusing(v, max, lenient, sizeErr, root, &r.encBufs, sizeHint, check)
	r.bctx.n += charge
	if kind == nil && r.bctx.n > r.bctx.budget {
		kind, msg = ErrBudget, kindText(ErrBudget)+" while encoding the "+root
	}
	if kind != nil {
		return nil, &Error{Kind: kind, Func: r.fname, Msg: msg}
	}
	return b, nil
}

// Apply runs apply(event, state, ctx). state is a canonical encoding (nil or
// empty means a nil state). newState and output are canonical encodings
// (NilValue() for nil) owned by the caller; the output is encoded
// leniently: functions and userdata become nil (inside tables, their
// entries are dropped, as are keys that are neither numbers nor strings).
func (e *Engine) Apply(h *Handler, state, event []byte, c Call) (newState, output []byte, err error) {
	lim, perr := e.prepare("apply", h, event, "event")
	if perr != nil {
		return nil, nil, perr
	}
	ferr := e.with(func(r *runner) *Error {
		r.begin(&callSpec{fname: "apply", accept: c.Accept, seed: c.ID, seq: c.Seq, node: c.Node, key: c.Key, id: c.ID, time: c.Time, sha: h.sha})
		if ferr := r.runChunk(h.proto, h.stateless); ferr != nil {
			return ferr
		}
		fn, ok := r.global("apply").(*lua.LFunction)
		if !ok {
			return &Error{Kind: ErrNoApply, Func: "apply", Msg: "apply is not defined as a function"}
		}
		sv, ferr := r.decodeState(state, c.Key)
		if ferr != nil {
			return ferr
		}
		res, ferr := r.invoke(fn, 2, r.argValue(event), sv, r.ctxProxy)
		if ferr != nil {
			return ferr
		}
		if newState, ferr = r.encodeResult(res[1], lim.MaxStateBytes, false, ErrStateSize, "state", len(state)); ferr != nil {
			return ferr
		}
		if output, ferr = r.encodeResult(res[0], lim.MaxOutputBytes, true, ErrOutputSize, "output", 0); ferr != nil {
			return ferr
		}
		r.keepState(c.Key, newState, res[1], r.match.checking)
		return nil
	})
	if ferr != nil {
		return nil, nil, ferr
	}
	return newState, output, nil
}

// Index runs index(state, key) and returns the tags sorted bytewise and
// deduplicated. Tags are strings; numbers are converted as tostring does;
// anything else is an ErrTags error. A handler without index returns nil,
// nil.
func (e *Engine) Index(h *Handler, state []byte, c Call) ([]string, error) {
	lim, perr := e.prepare("index", h, nil, "")
	if perr != nil {
		return nil, perr
	}
	if !h.hasIndex {
		return nil, nil
	}
	var tags []string
	ferr := e.with(func(r *runner) *Error {
		r.begin(&callSpec{fname: "index", accept: c.Accept, seed: r.keyString(c.Key), key: c.Key, id: c.ID, time: c.Time, sha: h.sha})
		if ferr := r.runChunk(h.proto, h.stateless); ferr != nil {
			return ferr
		}
		fn, ok := r.global("index").(*lua.LFunction)
		if !ok {
			return &Error{Kind: ErrRuntime, Func: "index", Msg: "index is not defined as a function"}
		}
		sv, ferr := r.decodeState(state, c.Key)
		if ferr != nil {
			return ferr
		}
		res, ferr := r.invoke(fn, 1, sv, r.keyValue())
		if ferr != nil {
			return ferr
		}
		if tags, ferr = collectTags(res[0], lim); ferr != nil {
			return ferr
		}
		r.keepRead(c.Key, state, sv)
		return nil
	})
	if ferr != nil {
		return nil, ferr
	}
	return tags, nil
}

func collectTags(v lua.LValue, lim Limits) ([]string, *Error) {
	tagErr := func(format string, args ...any) *Error {
		return &Error{Kind: ErrTags, Func: "index", Msg: fmt.Sprintf(format, args...)}
	}
	tb, ok := v.(*lua.LTable)
	if !ok {
		if v == lua.LNil {
			return nil, nil
		}
		return nil, tagErr("index returned a %s, want a table of strings", v.Type().String())
	}
	// Refuse absurd tables before sorting them (Go work the budget does not
	// see); duplicates get a generous margin.
	count := 0
	eachValue(tb, func(lua.LValue) { count++ })
	if count > 4*lim.MaxTags+64 {
		return nil, tagErr("index returned %d values, far more than the limit of %d tags", count, lim.MaxTags)
	}
	tags := make([]string, 0, count)
	badType := "" // smallest offending type name: stable whatever the iteration order
	eachValue(tb, func(v lua.LValue) {
		switch v := v.(type) {
		case lua.LString:
			tags = append(tags, string(v))
		case lua.LNumber:
			tags = append(tags, numberToString(float64(v)))
		default:
			if t := v.Type().String(); badType == "" || t < badType {
				badType = t
			}
		}
	})
	if badType != "" {
		return nil, tagErr("index returned a tag that is a %s, want a string", badType)
	}
	sort.Strings(tags)
	out := tags[:0]
	for i, t := range tags {
		if i > 0 && t == tags[i-1] {
			continue
		}
		out = append(out, t)
	}
	if len(out) > lim.MaxTags {
		return nil, tagErr("%d tags exceed the limit of %d", len(out), lim.MaxTags)
	}
	for _, t := range out {
		if len(t) > lim.MaxTagBytes {
			return nil, tagErr("tag of %d bytes exceeds the limit of %d", len(t), lim.MaxTagBytes)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// Query runs query(request, state, ctx). It cannot change the state: the
// state passed in is discarded afterwards. A handler without query returns
// ErrNoQuery.
func (e *Engine) Query(h *Handler, state, request []byte, c Call) (output []byte, err error) {
	lim, perr := e.prepare("query", h, request, "request")
	if perr != nil {
		return nil, perr
	}
	if !h.hasQuery {
		return nil, &Error{Kind: ErrNoQuery, Func: "query", Msg: "handler does not define function query"}
	}
	ferr := e.with(func(r *runner) *Error {
		r.begin(&callSpec{fname: "query", accept: c.Accept, seed: r.keyString(c.Key), key: c.Key, id: c.ID, time: c.Time, sha: h.sha})
		if ferr := r.runChunk(h.proto, h.stateless); ferr != nil {
			return ferr
		}
		fn, ok := r.global("query").(*lua.LFunction)
		if !ok {
			return &Error{Kind: ErrNoQuery, Func: "query", Msg: "query is not defined as a function"}
		}
		sv, ferr := r.decodeState(state, c.Key)
		if ferr != nil {
			return ferr
		}
		res, ferr := r.invoke(fn, 1, r.argValue(request), sv, r.ctxProxy)
		if ferr != nil {
			return ferr
		}
		if output, ferr = r.encodeResult(res[0], lim.MaxOutputBytes, true, ErrOutputSize, "output", 0); ferr != nil {
			return ferr
		}
		r.keepRead(c.Key, state, sv)
		return nil
	})
	if ferr != nil {
		return nil, ferr
	}
	return output, nil
}
