package scripting

import (
	"fmt"
	gomath "math"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"
)

const (
	// checkInterval is how many budget units pass between checks of the
	// wall clock.
	checkInterval = 1024
	// maxResults bounds the values unpack, string.byte and friends may push
	// (Lua 5.1's LUAI_MAXCSTACK).
	maxResults = 8000
	// bigAlloc is the allocation size above which library functions sample
	// the heap at once instead of waiting for the watcher.
	bigAlloc = 1 << 20
	// chunkName names the handler in Lua messages: "handler:3: boom".
	chunkName = "handler"
	// guardText is what getmetatable returns for protected tables.
	guardText = "protected"
)

// budgetCtx is installed as the LState's context. gopher-lua's VM calls
// Done once per instruction, which makes it an exact, deterministic
// instruction counter; library functions add their own charges to n. Once a
// limit is hit the stop is sticky: every later instruction raises again, so
// pcall cannot swallow it.
type budgetCtx struct {
	n         int64 // units used
	next      int64 // when to run slow() next
	budget    int64
	deadline  time.Time     // zero: none
	memOver   *atomic.Bool  // nil: no memory bound
	attention atomic.Bool   // set by the watcher: deadline passed or heap over the bound
	watch     watched       // the current call, as the watcher sees it
	stop      error         // the sentinel that stopped the call
	closed    chan struct{} // always closed
	// calls and units total the runner's calls and their budget units.
	// Only the runner's owner writes them; Engine.Usage sums them over
	// every runner, so calls on different cores share no counter.
	calls, units atomic.Int64
}

func (c *budgetCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *budgetCtx) Value(any) any               { return nil }

func (c *budgetCtx) Err() error {
	if c.stop != nil {
		return c.stop
	}
	return nil
}

func (c *budgetCtx) Done() <-chan struct{} {
	c.n++
	if c.n >= c.next || c.attention.Load() {
		return c.slow()
	}
	return nil
}

func (c *budgetCtx) slow() <-chan struct{} {
	if c.stop == nil {
		switch {
		case c.n > c.budget:
			c.stop = ErrBudget
		case c.memOver != nil && c.memOver.Load():
			c.stop = ErrMemory
		case !c.deadline.IsZero() && !time.Now().Before(c.deadline):
			c.stop = ErrTimeout
		}
	}
	if c.stop != nil {
		return c.closed
	}
	c.attention.Store(false)
	c.next = min(c.n+checkInterval, c.budget+1)
	return nil
}

// runner is one pooled LState with its sandbox. It is used by one goroutine
// at a time; everything a call creates is dropped when the call ends.
type runner struct {
	L   *lua.LState
	eng *Engine
	gen uint64
	lim Limits

	bctx   budgetCtx
	sample []metrics.Sample

	base         *lua.LTable // real globals; reachable only through __index chains
	defsMT       *lua.LTable // {__index = base}: metatable of each call's defs
	env          *lua.LTable // empty proxy: the chunk's environment and _G
	envMT        *lua.LTable // {__index = defs, __newindex = defs | envGuard}
	envIndex     lua.LValue  // envMT's __index now (LNil or a defs table)
	envNewIndex  lua.LValue  // envMT's __newindex now
	envGuard     *lua.LFunction
	ctxProxy     *lua.LTable
	null         *lua.LUserData // cjson.null
	nextFn       *lua.LFunction
	ipairsIterFn *lua.LFunction
	protected    map[*lua.LTable]bool

	keys       keyIntern     // map keys of decoded states
	match      matcher       // checks tables for the state cache
	encBufs    encodeBuffers // the encoder's working slices
	defsTable  *lua.LTable   // the reusable defs table
	defsUses   int
	keyScratch []lua.LValue
	results    [2]lua.LValue // invoke's results
	// pure keeps the globals of stateless chunks (see stateless): running
	// such a chunk again would rebuild exactly these values, so they are
	// reused, and the instructions the run took are charged instead.
	pure map[*lua.FunctionProto]pureDefs

	// per call
	fname    string
	accept   bool
	pureUsed bool  // defs is a pure cache entry: end must not empty it
	memLimit int64 // heap bound of this call, 0 if none
	defs     *lua.LTable
	key      []byte // the call's key, valid during the call; ctx.key is made of it when read
	ctxID    lua.LString
	idSeq    uint64 // with idNode, ctx.id until it is first read (see Call)
	idNode   string
	ctxSHA   lua.LString
	ctxTime  lua.LNumber
	timeSec  lua.LNumber
	rng      uint64
	ids      map[lua.LValue]int
	stopMsg  string
	taken    *cachedState // the call's state, from the state cache

	// across calls
	handoff handoff    // the small state the last apply returned
	lastKey string     // the last call's key, reused by a call on the same key
	keyV    lua.LValue // lastKey as a Lua value, or nil
	lastArg lua.LValue // the last event or request, a string
}

// argValue returns b as a Lua string, the last call's if it is the same
// short bytes (the same event applied again): no allocation. A long one
// is not kept, so an idle runner holds little.
func (r *runner) argValue(b []byte) lua.LValue {
	if len(b) > maxKeptArg {
		return lua.LString(b)
	}
	if s, ok := r.lastArg.(lua.LString); !ok || string(s) != string(b) {
		r.lastArg = lua.LString(b)
	}
	return r.lastArg
}

// maxKeptArg is the longest event or request argValue keeps.
const maxKeptArg = 128

// keyString returns k as a string, the last call's if it is the same key
// (an apply and its index are on the same key): no allocation.
func (r *runner) keyString(k []byte) string {
	if string(k) != r.lastKey {
		r.lastKey, r.keyV = string(k), nil
	}
	return r.lastKey
}

// keyValue returns the key keyString last returned as a Lua value, made
// once per key.
func (r *runner) keyValue() lua.LValue {
	if r.keyV == nil {
		r.keyV = lua.LString(r.lastKey)
	}
	return r.keyV
}

// handoff is a state under minCachedState bytes that an apply returned,
// with its key and what its decode is charged, kept by the runner for its
// next call: if that call is on the same key and state, usually the index
// call that follows the apply, it takes the table instead of decoding the
// bytes again. Small states do not go to the shared cache, whose upkeep
// would cost about what it saves. A call on another key or state decodes
// its state into that table when the shapes allow (see refillLua). Either
// way, the next call ends the handoff.
//
// After an index or query call, the table of its small state becomes a
// spare: enc is nil, as the call may have changed it, and the next call
// only decodes into it.
type handoff struct {
	key, enc []byte // key is the runner's copy; enc is never modified
	tb       *lua.LTable
	charge   int64
}

func newRunner(e *Engine, lim Limits, gen uint64) *runner {
	L := lua.NewState(lua.Options{
		SkipOpenLibs:     true,
		CallStackSize:    lim.MaxCallDepth,
		RegistrySize:     1024,
		RegistryMaxSize:  lim.MaxCallDepth*256 + 2*maxResults,
		RegistryGrowStep: 512,
	})
	r := &runner{L: L, eng: e, gen: gen, lim: lim, sample: make([]metrics.Sample, 1)}
	r.bctx.closed = make(chan struct{})
	close(r.bctx.closed)
	L.SetContext(&r.bctx)
	r.protected = make(map[*lua.LTable]bool)
	r.null = L.NewUserData()
	r.openSandbox()
	e.watch.register(&r.bctx)
	return r
}

func (r *runner) close() {
	r.eng.watch.unregister(&r.bctx)
	r.L.Close()
}

// readonly returns an empty proxy whose reads go to real and whose writes
// fail. rawset, table.insert and friends refuse it too.
func (r *runner) readonly(real *lua.LTable, index lua.LValue) *lua.LTable {
	mt := r.L.CreateTable(0, 3)
	if index == nil {
		index = real
	}
	mt.RawSetString("__index", index)
	mt.RawSetString("__newindex", r.L.NewFunction(r.refuseWrite))
	mt.RawSetString("__metatable", lua.LString(guardText))
	r.protected[mt] = true
	proxy := r.L.CreateTable(0, 0)
	proxy.Metatable = mt
	return proxy
}

func (r *runner) isProtected(tb *lua.LTable) bool {
	mt, ok := tb.Metatable.(*lua.LTable)
	return ok && r.protected[mt]
}

func (r *runner) refuseWrite(L *lua.LState) int {
	L.RaiseError("Attempt to modify a readonly table")
	return 0
}

// guardGlobal is __newindex of the environment once the chunk has run.
func (r *runner) guardGlobal(L *lua.LState) int {
	k := L.Get(2)
	if r.defs != nil && r.defs.RawGet(k) != lua.LNil || r.base.RawGet(k) != lua.LNil {
		L.RaiseError("Attempt to modify a readonly table")
	}
	name := k.String()
	if s, ok := k.(lua.LString); ok {
		name = string(s)
	} else if n, ok := k.(lua.LNumber); ok {
		name = numberToString(float64(n))
	} else {
		name = k.Type().String()
	}
	L.RaiseError("Script attempted to create global variable '%s'", name)
	return 0
}

func (r *runner) ctxIndex(L *lua.LState) int {
	switch L.Get(2) {
	case lua.LString("key"):
		r.keyString(r.key)
		L.Push(r.keyValue())
	case lua.LString("id"):
		if r.idNode != "" {
			r.ctxID = lua.LString(appendID(nil, r.idSeq, r.idNode))
			r.idSeq, r.idNode = 0, ""
		}
		L.Push(r.ctxID)
	case lua.LString("sha"):
		L.Push(r.ctxSHA)
	case lua.LString("time"):
		L.Push(r.ctxTime)
	default:
		L.Push(lua.LNil)
	}
	return 1
}

// openSandbox builds the allow-listed globals. Library functions are Go
// closures bound to this runner; the tables are never exposed directly, only
// through read-only proxies.
func (r *runner) openSandbox() {
	L := r.L
	r.base = L.CreateTable(0, 32)
	r.nextFn = L.NewFunction(baseNext)
	r.ipairsIterFn = L.NewFunction(ipairsIter)
	reg := func(t *lua.LTable, fns map[string]lua.LGFunction) {
		for name, fn := range fns {
			t.RawSetString(name, L.NewFunction(fn))
		}
	}
	reg(r.base, r.baseFuncs())
	r.base.RawSetString("_VERSION", lua.LString("Lua 5.1"))

	str := L.CreateTable(0, 16)
	reg(str, r.stringFuncs())
	tab := L.CreateTable(0, 8)
	reg(tab, r.tableFuncs())
	math := L.CreateTable(0, 32)
	reg(math, r.mathFuncs())
	math.RawSetString("pi", lua.LNumber(gomath.Pi))
	math.RawSetString("huge", lua.LNumber(gomath.Inf(1)))
	os := L.CreateTable(0, 1)
	os.RawSetString("time", L.NewFunction(r.osTime))
	cjson := L.CreateTable(0, 4)
	reg(cjson, r.cjsonFuncs())
	cjson.RawSetString("null", r.null)

	r.base.RawSetString("string", r.readonly(str, nil))
	r.base.RawSetString("table", r.readonly(tab, nil))
	r.base.RawSetString("math", r.readonly(math, nil))
	r.base.RawSetString("os", r.readonly(os, nil))
	r.base.RawSetString("cjson", r.readonly(cjson, nil))

	// The string metatable lets ("x"):upper() work; its guard keeps scripts
	// from reaching or changing it.
	smt := L.CreateTable(0, 2)
	smt.RawSetString("__index", str)
	smt.RawSetString("__metatable", lua.LString(guardText))
	r.protected[smt] = true
	L.SetMetatable(lua.LString(""), smt)

	r.ctxProxy = r.readonly(nil, L.NewFunction(r.ctxIndex))

	r.defsMT = L.CreateTable(0, 1)
	r.defsMT.RawSetString("__index", r.base)
	r.envGuard = L.NewFunction(r.guardGlobal)
	r.envMT = L.CreateTable(0, 3)
	r.envMT.RawSetString("__metatable", lua.LString(guardText))
	r.protected[r.envMT] = true
	r.env = L.CreateTable(0, 0)
	r.env.Metatable = r.envMT
	r.envIndex, r.envNewIndex = lua.LNil, lua.LNil
	r.base.RawSetString("_G", r.env)
}

// callSpec describes one call.
type callSpec struct {
	fname  string // "apply", "index", "query", "load"
	accept bool   // timeout and memory bound apply
	seed   string // math.random seed
	key    []byte
	id     string
	// seq and node stand for id "<seq>.<node>" (and the seed) when id is
	// empty and node is not (see Call).
	seq  uint64
	node string
	time int64
	sha  string
}

func (r *runner) begin(cs *callSpec) {
	r.fname = cs.fname
	r.accept = cs.accept
	c := &r.bctx
	c.n = 0
	c.budget = r.lim.InstructionBudget
	c.next = min(int64(checkInterval), c.budget+1)
	c.stop = nil
	c.deadline = time.Time{}
	c.memOver = nil
	c.attention.Store(false)
	r.memLimit = 0
	if cs.accept {
		c.deadline = time.Now().Add(r.lim.Timeout)
		if r.lim.MaxMemoryBytes > 0 {
			r.memLimit = r.lim.MaxMemoryBytes
			c.memOver = &r.eng.watch.memOver
		}
		r.eng.watch.enter(c, r.memLimit)
	}
	r.key = cs.key
	r.ctxID = lua.LString(cs.id)
	r.idSeq, r.idNode = 0, ""
	r.ctxSHA = lua.LString(cs.sha)
	r.ctxTime = lua.LNumber(cs.time)
	r.timeSec = lua.LNumber(floorDiv(cs.time, 1000))
	if cs.id == "" && cs.seed == "" && cs.node != "" {
		// The id's string is made if ctx.id is read; the seed hashes the
		// same bytes.
		r.idSeq, r.idNode = cs.seq, cs.node
		var buf [48]byte
		r.rng = seedRNG(appendID(buf[:0], cs.seq, cs.node))
	} else {
		r.rng = seedRNG(cs.seed)
	}
	r.ids = nil
	r.stopMsg = ""
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// end drops every reference to the call's values so that a pooled runner
// pins nothing.
func (r *runner) end() {
	r.bctx.calls.Store(r.bctx.calls.Load() + 1)
	r.bctx.units.Store(r.bctx.units.Load() + r.bctx.n)
	if r.accept {
		r.eng.watch.exit(&r.bctx)
		r.accept = false
	}
	r.bctx.memOver = nil
	r.bctx.attention.Store(false)
	r.L.SetTop(0)
	r.results = [2]lua.LValue{}
	// A stateless chunk's globals stay the environment's fallback: they
	// are kept for the runner's next calls anyway, and the next call of
	// the same handler then has nothing to set.
	kept := r.pureUsed
	if r.pureUsed {
		r.defs, r.pureUsed = nil, false
	}
	if r.defs != nil {
		keys := r.keyScratch[:0]
		fresh := false
		r.defs.ForEach(func(k, _ lua.LValue) {
			keys = append(keys, k)
			_, isStr := k.(lua.LString)
			fresh = fresh || !isStr
		})
		for i, k := range keys {
			r.defs.RawSet(k, lua.LNil)
			keys[i] = nil
		}
		r.keyScratch = keys[:0]
		if fresh || len(keys) > 64 {
			r.defsTable = nil // unusual keys or many names: start afresh
		}
	}
	r.defs = nil
	if !kept {
		r.setEnv(lua.LNil, lua.LNil)
	}
	r.ids = nil
	r.key, r.ctxID, r.ctxSHA = nil, "", ""
	r.idSeq, r.idNode = 0, ""
	r.taken = nil // a call that failed drops the table it took
}

// pureDefs are the globals a stateless chunk defined, and the budget
// units its run took.
type pureDefs struct {
	defs  *lua.LTable
	units int64
}

// maxPure bounds the stateless chunks a runner remembers.
const maxPure = 32

// runChunk executes the handler's top-level chunk in a fresh environment
// and then freezes the globals. A stateless chunk (see stateless) runs once
// per runner; later calls reuse its globals and are charged the same
// instructions, so the budget stays a property of the call alone.
func (r *runner) runChunk(proto *lua.FunctionProto, isStateless bool) *Error {
	L := r.L
	if isStateless {
		if pd, ok := r.pure[proto]; ok {
			r.defs, r.pureUsed = pd.defs, true
			r.setEnv(pd.defs, r.envGuard)
			r.bctx.n += pd.units
			return nil
		}
		defs := L.CreateTable(0, 4)
		defs.Metatable = r.defsMT
		before := r.bctx.n
		if ferr := r.execChunk(proto, defs); ferr != nil {
			return ferr
		}
		if len(r.pure) >= maxPure || r.pure == nil {
			r.pure = make(map[*lua.FunctionProto]pureDefs, maxPure)
		}
		r.pure[proto] = pureDefs{defs: defs, units: r.bctx.n - before}
		r.pureUsed = true
		return nil
	}
	// defs is reused (emptied at the end of every call) to save its maps;
	// it is rebuilt now and then so that names of many handlers cannot
	// accumulate in gopher-lua's key index.
	if r.defsTable == nil || r.defsUses >= 256 {
		r.defsTable = L.CreateTable(0, 4)
		r.defsTable.Metatable = r.defsMT
		r.defsUses = 0
	}
	r.defsUses++
	return r.execChunk(proto, r.defsTable)
}

// execChunk runs the chunk with defs receiving its globals.
func (r *runner) execChunk(proto *lua.FunctionProto, defs *lua.LTable) *Error {
	L := r.L
	r.defs = defs
	r.setEnv(defs, defs)
	fn := L.NewFunctionFromProto(proto)
	fn.Env = r.env
	L.SetTop(0)
	L.Push(fn)
	err := L.PCall(0, 0, nil)
	r.setEnv(defs, r.envGuard)
	if err != nil || r.bctx.stop != nil {
		return r.failure(err)
	}
	return nil
}

// setEnv points the environment's metatable at index (reads of globals
// the chunk did not define) and newindex (writes of globals), skipping
// what is set already.
func (r *runner) setEnv(index, newindex lua.LValue) {
	if index != r.envIndex {
		r.envMT.RawSetString("__index", index)
		r.envIndex = index
	}
	if newindex != r.envNewIndex {
		r.envMT.RawSetString("__newindex", newindex)
		r.envNewIndex = newindex
	}
}

func (r *runner) global(name string) lua.LValue {
	return r.defs.RawGetString(name)
}

// invoke calls fn with args in protected mode and returns its nret (at
// most 2) results, valid until the call ends.
func (r *runner) invoke(fn lua.LValue, nret int, args ...lua.LValue) ([]lua.LValue, *Error) {
	L := r.L
	L.SetTop(0)
	L.Push(fn)
	for _, a := range args {
		L.Push(a)
	}
	err := L.PCall(len(args), nret, nil)
	if err != nil || r.bctx.stop != nil {
		return nil, r.failure(err)
	}
	out := r.results[:nret]
	for i := range out {
		out[i] = L.Get(i + 1)
	}
	L.SetTop(0)
	return out, nil
}

// failure converts a PCall error (or a sticky stop) into an *Error.
func (r *runner) failure(err error) *Error {
	e := &Error{Kind: ErrRuntime, Func: r.fname}
	var obj lua.LValue = lua.LNil
	if aerr, ok := err.(*lua.ApiError); ok {
		obj = aerr.Object
		if aerr.Type == lua.ApiErrorPanic {
			e.Msg = "internal error: " + sanitizeAddresses(obj.String())
		}
	} else if err != nil {
		obj = lua.LString(err.Error())
	}
	if s, ok := obj.(lua.LString); ok {
		e.Line = lineOf(string(s))
	}
	if r.bctx.stop != nil {
		e.Kind = r.bctx.stop
		e.Msg = kindText(e.Kind)
		if r.stopMsg != "" {
			e.Msg = r.stopMsg
		}
		return e
	}
	if e.Msg != "" {
		return e
	}
	switch o := obj.(type) {
	case lua.LString:
		e.Msg = sanitizeAddresses(string(o))
		if isStackOverflow(e.Msg) {
			e.Kind = ErrCallDepth
		}
	case *lua.LTable:
		if s, ok := o.RawGetString("err").(lua.LString); ok {
			e.Reply = sanitizeLine(string(s))
			e.Msg = e.Reply
		} else {
			e.Msg = "(error object is a table value)"
		}
	case lua.LNumber:
		e.Msg = numberToString(float64(o))
	default:
		e.Msg = "(error object is a " + obj.Type().String() + " value)"
	}
	return e
}

func isStackOverflow(msg string) bool {
	return strings.HasSuffix(msg, " stack overflow") || strings.HasSuffix(msg, " registry overflow") ||
		msg == "stack overflow" || msg == "registry overflow"
}

// lineOf extracts LINE from a "handler:LINE: ..." message.
func lineOf(msg string) int {
	rest, ok := strings.CutPrefix(msg, chunkName+":")
	if !ok {
		return 0
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i >= len(rest) || rest[i] != ':' {
		return 0
	}
	n, _ := strconv.Atoi(rest[:i])
	return n
}

// sanitizeAddresses replaces Go pointers that gopher-lua prints for tables,
// functions and the like ("table: 0xc000123456") so that error messages are
// the same on every machine.
func sanitizeAddresses(s string) string {
	if !strings.Contains(s, ": 0x") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, ": 0x")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := i + 4
		for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] >= 'a' && s[j] <= 'f') {
			j++
		}
		b.WriteString(s[:i])
		if j-(i+4) >= 6 {
			b.WriteString(": 0x?")
		} else {
			b.WriteString(s[i:j])
		}
		s = s[j:]
	}
}

// charge adds library work to the budget and raises once a limit is hit.
func (r *runner) charge(units int64) {
	c := &r.bctx
	c.n += units
	if c.n >= c.next || c.stop != nil {
		if c.slow() != nil {
			r.L.RaiseError("%s", kindText(c.stop))
		}
	}
}

// stopWith makes kind the call's sticky failure and raises msg.
func (r *runner) stopWith(kind error, msg string) {
	if r.bctx.stop == nil {
		r.bctx.stop = kind
		r.stopMsg = msg
	}
	r.L.RaiseError("%s", msg)
}

// checkString is called before building a string of n bytes.
func (r *runner) checkString(what string, n int64) {
	if n > int64(r.lim.MaxStringBytes) || n < 0 {
		r.stopWith(ErrStringSize, fmt.Sprintf("%s: result of %d bytes exceeds the %d-byte string limit", what, n, r.lim.MaxStringBytes))
	}
	r.charge(n / 32)
	if n >= bigAlloc {
		r.checkMemory()
	}
}

// checkMemory samples the heap at once (only where a bound applies).
func (r *runner) checkMemory() {
	if r.bctx.memOver == nil {
		return
	}
	if heapBytes(r.sample) > r.lim.MaxMemoryBytes {
		r.stopWith(ErrMemory, kindText(ErrMemory))
	}
}

// tostring is the deterministic tostring: tables, functions and userdata
// are numbered in the order this call first converts them.
func (r *runner) tostring(L *lua.LState, v lua.LValue) lua.LValue {
	if mm := L.GetMetaField(v, "__tostring"); mm != lua.LNil {
		L.Push(mm)
		L.Push(v)
		L.Call(1, 1)
		res := L.Get(-1)
		L.Pop(1)
		switch res.(type) {
		case lua.LString, lua.LNumber:
			return lua.LString(lua.LVAsString(res))
		}
		L.RaiseError("'__tostring' must return a string")
	}
	switch v := v.(type) {
	case lua.LString:
		return v
	case lua.LNumber:
		return lua.LString(numberToString(float64(v)))
	case *lua.LNilType:
		return lua.LString("nil")
	case lua.LBool:
		if v {
			return lua.LString("true")
		}
		return lua.LString("false")
	}
	if v == r.null {
		return lua.LString("userdata: NULL")
	}
	if r.ids == nil {
		r.ids = make(map[lua.LValue]int)
	}
	id, ok := r.ids[v]
	if !ok {
		id = len(r.ids) + 1
		r.ids[v] = id
	}
	return lua.LString(fmt.Sprintf("%s: #%d", v.Type().String(), id))
}

// ---- deterministic PRNG (SplitMix64) ----

// appendID appends the event id "<seq>.<node>" (crdt.ID's String).
func appendID(dst []byte, seq uint64, node string) []byte {
	return append(append(strconv.AppendUint(dst, seq, 10), '.'), node...)
}

func seedRNG[S ~string | ~[]byte](seed S) uint64 {
	h := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(seed); i++ {
		h ^= uint64(seed[i])
		h *= 1099511628211
	}
	return h
}

func (r *runner) random() float64 {
	r.rng += 0x9e3779b97f4a7c15
	z := r.rng
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}

// ---- argument helpers (deterministic on every CPU) ----

// toInt truncates toward zero and clamps to ±2^62 (NaN is 0), unlike Go's
// float-to-int conversion whose out-of-range result depends on the CPU.
func toInt(f float64) int64 {
	switch {
	case f != f:
		return 0
	case f >= 1<<62:
		return 1 << 62
	case f <= -(1 << 62):
		return -(1 << 62)
	}
	return int64(f)
}

func argInt(L *lua.LState, n int) int64 { return toInt(float64(L.CheckNumber(n))) }

func optInt(L *lua.LState, n int, def int64) int64 {
	if L.Get(n) == lua.LNil {
		return def
	}
	return argInt(L, n)
}

// argString accepts strings and numbers, as Lua's luaL_checklstring does.
func argString(L *lua.LState, n int) string {
	switch v := L.Get(n).(type) {
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return numberToString(float64(v))
	}
	L.TypeError(n, lua.LTString)
	return ""
}

func optString(L *lua.LState, n int, def string) string {
	if L.Get(n) == lua.LNil {
		return def
	}
	return argString(L, n)
}
