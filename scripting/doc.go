// Package scripting runs user-supplied Lua "handlers" next to the data.
//
// A handler is a Lua 5.1 script (executed by gopher-lua) that defines
//
//	function apply(event, state, ctx)   -- required: returns output, new state
//	function index(state, key)          -- optional: returns a list of tags
//	function query(request, state, ctx) -- optional: read-only
//
// Legion runs apply on the node that accepts an event and replays it on every
// replica, so the package enforces one law above all: the same (handler,
// state bytes, event, ctx) produce the same bytes on every machine and every
// run, and a hostile handler can never crash, hang or exhaust the server.
//
// # Sandbox contract
//
//   - Only an allow-list of libraries exists: a safe subset of the base
//     library (assert, error, ipairs, next, pairs, pcall, xpcall, rawequal,
//     rawget, rawset, select, setmetatable, getmetatable, tonumber, tostring,
//     type, unpack, loadstring, print as a no-op, _VERSION, _G), string
//     (without dump), table, math (without randomseed), os with only
//     os.time(), and cjson. There is no io, debug, require, module, dofile,
//     loadfile, load, collectgarbage, getfenv, setfenv, newproxy, coroutine
//     or channel.
//   - Everything that could observe the machine is replaced by a deterministic
//     equivalent: math.random is a PRNG seeded from the call (ctx.id for
//     apply, the key for index and query), os.time() is floor(ctx.time/1000),
//     tostring of tables and functions numbers objects in the order the call
//     first prints them, table.sort is a stable merge sort, string functions
//     are byte-oriented (C locale) and pattern matching is this package's own
//     Lua 5.1 matcher, and state tables are rebuilt from canonical bytes so
//     that #t, next and pairs iterate identically everywhere. (With the
//     state cache on, a call may get the table an earlier call left, but
//     only one identical to that rebuild in every respect, see
//     statecache.go, and charged the same.)
//   - Globals are frozen: the top-level chunk may define globals; afterwards
//     creating or assigning one is an error. Library tables, ctx, _G and the
//     string metatable are read-only proxies guarded by __metatable.
//   - Nothing survives from one call to the next: the compiled chunk runs
//     again in a fresh environment for every call.
//   - Every call is bounded: a deterministic instruction budget (VM
//     instructions plus a charge for work done inside library functions),
//     call depth, string sizes, state/output/event sizes and tag counts. When
//     an event is first accepted, a wall-clock timeout and a process heap
//     bound apply as well; those two are not deterministic and their errors
//     are Transient: they must never be recorded as an event's result.
//
// # Values
//
// States and outputs are stored in a canonical binary encoding (see
// ValidateValue) in which equal Lua values have equal bytes. AppendJSON and
// AppendRESP render that encoding for clients.
//
// # Concurrency and ownership
//
// An Engine is safe for concurrent use; each call borrows a pooled LState
// for its duration. A Handler is immutable and may be shared. Byte slices
// passed in are not retained; slices returned are freshly allocated and
// owned by the caller, who must not modify a state Apply returns: with the
// state cache on (SetStateCache), the engine keeps it to recognize the
// state when it is passed in again.
//
// # Known gaps
//
// A few single VM instructions do work the package cannot meter: string
// concatenation (..) of large strings, assigning a very large integer key
// (gopher-lua allocates a dense array up to it) and #t over such an array.
// They cost one instruction each; when accepting, the background watcher
// stops the call within about a millisecond of the deadline or of the heap
// passing MaxMemoryBytes, which the server must set (with MaxMemoryBytes 0,
// s = s .. s can exhaust memory). Replays only re-run events that were
// accepted under those bounds. Transcendental math functions come from Go's
// math package and are bit-identical only across machines of the same
// GOARCH.
package scripting
