package scripting

import (
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

func (r *runner) baseFuncs() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"assert":       r.baseAssert,
		"error":        baseError,
		"getmetatable": baseGetMetatable,
		"ipairs":       r.baseIpairs,
		"loadstring":   r.baseLoadString,
		"next":         baseNext,
		"pairs":        r.basePairs,
		"pcall":        r.basePCall,
		"print":        func(*lua.LState) int { return 0 },
		"rawequal":     baseRawEqual,
		"rawget":       baseRawGet,
		"rawset":       r.baseRawSet,
		"select":       baseSelect,
		"setmetatable": baseSetMetatable,
		"tonumber":     baseToNumber,
		"tostring":     r.baseToString,
		"type":         baseType,
		"unpack":       r.baseUnpack,
		"xpcall":       r.baseXPCall,
	}
}

func (r *runner) baseAssert(L *lua.LState) int {
	if lua.LVAsBool(L.CheckAny(1)) {
		return L.GetTop()
	}
	switch msg := L.Get(2).(type) {
	case *lua.LNilType:
		L.RaiseError("assertion failed!")
	case lua.LString, lua.LNumber:
		L.RaiseError("%s", lua.LVAsString(msg))
	default:
		L.Error(msg, 0)
	}
	return 0
}

func baseError(L *lua.LState) int {
	obj := L.Get(1)
	level := int(optInt(L, 2, 1))
	L.Error(obj, level)
	return 0
}

func baseGetMetatable(L *lua.LState) int {
	L.Push(L.GetMetatable(L.CheckAny(1)))
	return 1
}

func ipairsIter(L *lua.LState) int {
	tb := L.CheckTable(1)
	i := argInt(L, 2) + 1
	v := tb.RawGet(lua.LNumber(i))
	if v == lua.LNil {
		return 0
	}
	L.Push(lua.LNumber(i))
	L.Push(v)
	return 2
}

func (r *runner) baseIpairs(L *lua.LState) int {
	tb := L.CheckTable(1)
	L.Push(r.ipairsIterFn)
	L.Push(tb)
	L.Push(lua.LNumber(0))
	return 3
}

func baseNext(L *lua.LState) int {
	tb := L.CheckTable(1)
	k, v := tb.Next(L.Get(2))
	if k == lua.LNil {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(k)
	L.Push(v)
	return 2
}

func (r *runner) basePairs(L *lua.LState) int {
	tb := L.CheckTable(1)
	L.Push(r.nextFn)
	L.Push(tb)
	L.Push(lua.LNil)
	return 3
}

// errorValue is what pcall hands to the script for a caught error: the raised
// object, with Go pointers removed from messages so that it is deterministic.
func errorValue(err error) lua.LValue {
	if aerr, ok := err.(*lua.ApiError); ok {
		if s, ok := aerr.Object.(lua.LString); ok {
			return lua.LString(sanitizeAddresses(string(s)))
		}
		return aerr.Object
	}
	return lua.LString(sanitizeAddresses(err.Error()))
}

func (r *runner) basePCall(L *lua.LState) int {
	L.CheckAny(1)
	nargs := L.GetTop() - 1
	if err := L.PCall(nargs, lua.MultRet, nil); err != nil {
		if r.bctx.stop != nil { // limits cannot be caught
			L.RaiseError("%s", kindText(r.bctx.stop))
		}
		L.Push(lua.LFalse)
		L.Push(errorValue(err))
		return 2
	}
	L.Insert(lua.LTrue, 1)
	return L.GetTop()
}

func (r *runner) baseXPCall(L *lua.LState) int {
	L.CheckAny(1)
	handler := L.CheckFunction(2)
	L.SetTop(1)
	if err := L.PCall(0, lua.MultRet, handler); err != nil {
		if r.bctx.stop != nil {
			L.RaiseError("%s", kindText(r.bctx.stop))
		}
		L.Push(lua.LFalse)
		L.Push(errorValue(err))
		return 2
	}
	L.Insert(lua.LTrue, 1)
	return L.GetTop()
}

func baseRawEqual(L *lua.LState) int {
	L.Push(lua.LBool(L.CheckAny(1) == L.CheckAny(2)))
	return 1
}

func baseRawGet(L *lua.LState) int {
	L.Push(L.CheckTable(1).RawGet(L.CheckAny(2)))
	return 1
}

func (r *runner) baseRawSet(L *lua.LState) int {
	tb := L.CheckTable(1)
	if r.isProtected(tb) {
		L.RaiseError("Attempt to modify a readonly table")
	}
	L.RawSet(tb, L.CheckAny(2), L.CheckAny(3))
	L.SetTop(1)
	return 1
}

func baseSelect(L *lua.LState) int {
	n := L.GetTop()
	if s, ok := L.Get(1).(lua.LString); ok && s == "#" {
		L.Push(lua.LNumber(n - 1))
		return 1
	}
	i := argInt(L, 1)
	if i < 0 {
		i = int64(n) + i
	} else if i > int64(n) {
		i = int64(n)
	}
	if i < 1 {
		L.ArgError(1, "index out of range")
	}
	return n - int(i)
}

// baseSetMetatable accepts only tables, unlike gopher-lua's, which would let
// a script set a metatable for all numbers or functions of the LState.
func baseSetMetatable(L *lua.LState) int {
	tb := L.CheckTable(1)
	mt := L.Get(2)
	if mt != lua.LNil && mt.Type() != lua.LTTable {
		L.ArgError(2, "nil or table expected")
	}
	if old, ok := tb.Metatable.(*lua.LTable); ok && old.RawGetString("__metatable") != lua.LNil {
		L.RaiseError("cannot change a protected metatable")
	}
	tb.Metatable = mt
	L.SetTop(1)
	return 1
}

func isLuaSpace(c byte) bool {
	return c == ' ' || c >= '\t' && c <= '\r'
}

// parseLuaNumber converts a string the way Lua 5.1's tonumber does
// (decimal or 0x-hex, surrounding whitespace allowed).
func parseLuaNumber(s string) (float64, bool) {
	s = strings.TrimFunc(s, func(r rune) bool { return r < 128 && isLuaSpace(byte(r)) })
	if s == "" {
		return 0, false
	}
	body, neg := s, false
	if body[0] == '-' || body[0] == '+' {
		neg, body = body[0] == '-', body[1:]
	}
	if len(body) > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X') {
		u, err := strconv.ParseUint(body[2:], 16, 64)
		if err != nil {
			return 0, false
		}
		if neg {
			return -float64(u), true
		}
		return float64(u), true
	}
	for i := 0; i < len(body); i++ {
		if c := body[i]; c == '_' || c == 'x' || c == 'X' || c == 'p' || c == 'P' {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
			return 0, false
		}
	}
	return f, true
}

func baseToNumber(L *lua.LState) int {
	v := L.CheckAny(1)
	if L.Get(2) == lua.LNil {
		switch v := v.(type) {
		case lua.LNumber:
			L.Push(v)
		case lua.LString:
			if f, ok := parseLuaNumber(string(v)); ok {
				L.Push(lua.LNumber(f))
			} else {
				L.Push(lua.LNil)
			}
		default:
			L.Push(lua.LNil)
		}
		return 1
	}
	base := argInt(L, 2)
	if base < 2 || base > 36 {
		L.ArgError(2, "base out of range")
	}
	s := strings.TrimFunc(argString(L, 1), func(r rune) bool { return r < 128 && isLuaSpace(byte(r)) })
	neg := false
	if s != "" && s[0] == '-' {
		neg, s = true, s[1:]
	}
	u, err := strconv.ParseUint(s, int(base), 64)
	if err != nil || strings.ContainsRune(s, '_') {
		L.Push(lua.LNil)
		return 1
	}
	f := float64(u)
	if neg {
		f = -f
	}
	L.Push(lua.LNumber(f))
	return 1
}

func (r *runner) baseToString(L *lua.LState) int {
	L.Push(r.tostring(L, L.CheckAny(1)))
	return 1
}

func baseType(L *lua.LState) int {
	L.Push(lua.LString(L.CheckAny(1).Type().String()))
	return 1
}

func (r *runner) baseUnpack(L *lua.LState) int {
	tb := L.CheckTable(1)
	i := optInt(L, 2, 1)
	var j int64
	if L.Get(3) == lua.LNil {
		j = int64(tb.Len())
	} else {
		j = argInt(L, 3)
	}
	if i > j {
		return 0
	}
	n := j - i + 1
	if n > maxResults {
		L.RaiseError("too many results to unpack")
	}
	r.charge(n)
	for k := i; k <= j; k++ {
		L.Push(tb.RawGet(lua.LNumber(k)))
	}
	return int(n)
}

// baseLoadString compiles source text into the sandbox: the function's
// environment is the call's (frozen) environment. Binary chunks are refused.
func (r *runner) baseLoadString(L *lua.LState) int {
	src := L.CheckString(1)
	name := chunkID(optString(L, 2, src))
	if strings.HasPrefix(src, "\x1b") {
		L.Push(lua.LNil)
		L.Push(lua.LString("loadstring: binary chunks are not allowed"))
		return 2
	}
	r.charge(int64(len(src)))
	proto, cerr := compileLua([]byte(src), name)
	if cerr != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(cerr.msg))
		return 2
	}
	fn := L.NewFunctionFromProto(proto)
	fn.Env = r.env
	L.Push(fn)
	return 1
}

// chunkID mimics Lua's luaO_chunkid for loadstring chunk names.
func chunkID(name string) string {
	switch {
	case strings.HasPrefix(name, "="):
		return name[1:]
	case strings.HasPrefix(name, "@"):
		return name[1:]
	}
	line, _, cut := strings.Cut(name, "\n")
	if len(line) > 45 {
		line, cut = line[:45], true
	}
	if cut {
		line += "..."
	}
	return `[string "` + line + `"]`
}

func (r *runner) osTime(L *lua.LState) int {
	if L.GetTop() > 0 {
		L.RaiseError("os.time accepts no arguments in handlers")
	}
	L.Push(r.timeSec)
	return 1
}
