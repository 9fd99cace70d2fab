package scripting

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// stringFuncs is Lua 5.1's string library (without dump), implemented here
// rather than taken from gopher-lua so that every function is byte-oriented
// (gopher-lua's lower/upper are Unicode-aware and rewrite invalid UTF-8),
// bounded by MaxStringBytes, and charged to the instruction budget.
func (r *runner) stringFuncs() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"byte":    r.strByte,
		"char":    r.strChar,
		"find":    func(L *lua.LState) int { return r.strFindAux(L, true) },
		"format":  r.strFormat,
		"gmatch":  r.strGmatch,
		"gsub":    r.strGsub,
		"len":     strLen,
		"lower":   r.strLower,
		"match":   func(L *lua.LState) int { return r.strFindAux(L, false) },
		"rep":     r.strRep,
		"reverse": r.strReverse,
		"sub":     strSub,
		"upper":   r.strUpper,
	}
}

// posrelat converts a relative string position (negative means from the
// end) as Lua 5.1 does.
func posrelat(pos int64, n int) int64 {
	if pos < 0 {
		pos += int64(n) + 1
	}
	if pos >= 0 {
		return pos
	}
	return 0
}

func strLen(L *lua.LState) int {
	L.Push(lua.LNumber(len(argString(L, 1))))
	return 1
}

func strSub(L *lua.LState) int {
	s := argString(L, 1)
	start := posrelat(argInt(L, 2), len(s))
	end := posrelat(optInt(L, 3, -1), len(s))
	if start < 1 {
		start = 1
	}
	if end > int64(len(s)) {
		end = int64(len(s))
	}
	if start <= end {
		L.Push(lua.LString(s[start-1 : end]))
	} else {
		L.Push(lua.LString(""))
	}
	return 1
}

func (r *runner) strByte(L *lua.LState) int {
	s := argString(L, 1)
	posi := posrelat(optInt(L, 2, 1), len(s))
	pose := posrelat(optInt(L, 3, posi), len(s))
	if posi <= 0 {
		posi = 1
	}
	if pose > int64(len(s)) {
		pose = int64(len(s))
	}
	if posi > pose {
		return 0
	}
	n := pose - posi + 1
	if n > maxResults {
		L.RaiseError("string slice too long")
	}
	r.charge(n)
	for i := posi; i <= pose; i++ {
		L.Push(lua.LNumber(s[i-1]))
	}
	return int(n)
}

func (r *runner) strChar(L *lua.LState) int {
	n := L.GetTop()
	r.charge(int64(n))
	b := make([]byte, n)
	for i := 1; i <= n; i++ {
		c := argInt(L, i)
		if c < 0 || c > 255 {
			L.ArgError(i, "invalid value")
		}
		b[i-1] = byte(c)
	}
	L.Push(lua.LString(b))
	return 1
}

func (r *runner) strRep(L *lua.LState) int {
	s := argString(L, 1)
	n := argInt(L, 2)
	if n <= 0 || s == "" {
		L.Push(lua.LString(""))
		return 1
	}
	if n > int64(r.lim.MaxStringBytes)/int64(len(s)) {
		r.checkString("string.rep", int64(r.lim.MaxStringBytes)+1)
	}
	r.checkString("string.rep", n*int64(len(s)))
	L.Push(lua.LString(strings.Repeat(s, int(n))))
	return 1
}

func (r *runner) strReverse(L *lua.LState) int {
	s := argString(L, 1)
	r.charge(int64(len(s)) / 32)
	b := make([]byte, len(s))
	for i := range b {
		b[i] = s[len(s)-1-i]
	}
	L.Push(lua.LString(b))
	return 1
}

func (r *runner) strLower(L *lua.LState) int {
	s := argString(L, 1)
	r.charge(int64(len(s)) / 32)
	b := []byte(s)
	for i, c := range b {
		if isUpper(c) {
			b[i] = c + ('a' - 'A')
		}
	}
	L.Push(lua.LString(b))
	return 1
}

func (r *runner) strUpper(L *lua.LState) int {
	s := argString(L, 1)
	r.charge(int64(len(s)) / 32)
	b := []byte(s)
	for i, c := range b {
		if isLower(c) {
			b[i] = c - ('a' - 'A')
		}
	}
	L.Push(lua.LString(b))
	return 1
}

const patternSpecials = "^$*+?.([%-"

func (r *runner) newMatchState(L *lua.LState, src, pat string) *matchState {
	return &matchState{r: r, L: L, src: src, pat: pat}
}

// strFindAux is string.find (find=true) and string.match.
func (r *runner) strFindAux(L *lua.LState, find bool) int {
	s := argString(L, 1)
	p := argString(L, 2)
	init := posrelat(optInt(L, 3, 1), len(s)) - 1
	if init < 0 {
		init = 0
	} else if init > int64(len(s)) {
		init = int64(len(s))
	}
	if find && (lua.LVAsBool(L.Get(4)) || !strings.ContainsAny(p, patternSpecials)) {
		r.charge((int64(len(s))-init)/32 + 1)
		if i := strings.Index(s[init:], p); i >= 0 {
			L.Push(lua.LNumber(init + int64(i) + 1))
			L.Push(lua.LNumber(init + int64(i) + int64(len(p))))
			return 2
		}
		L.Push(lua.LNil)
		return 1
	}
	ms := r.newMatchState(L, s, p)
	pi := 0
	anchor := len(p) > 0 && p[0] == '^'
	if anchor {
		pi = 1
	}
	for s1 := int(init); ; s1++ {
		ms.level, ms.depth = 0, 0
		if e := ms.match(s1, pi); e != -1 {
			ms.flush()
			if find {
				L.Push(lua.LNumber(s1 + 1))
				L.Push(lua.LNumber(e))
				return ms.pushCaptures(-1, 0, false) + 2
			}
			return ms.pushCaptures(s1, e, true)
		}
		if s1 >= len(s) || anchor {
			break
		}
	}
	ms.flush()
	L.Push(lua.LNil)
	return 1
}

func (r *runner) strGmatch(L *lua.LState) int {
	s := argString(L, 1)
	p := argString(L, 2)
	pos := 0
	iter := func(L *lua.LState) int {
		ms := r.newMatchState(L, s, p)
		for src := pos; src <= len(s); src++ {
			ms.level, ms.depth = 0, 0
			if e := ms.match(src, 0); e != -1 {
				ms.flush()
				pos = e
				if e == src {
					pos++
				}
				return ms.pushCaptures(src, e, true)
			}
		}
		ms.flush()
		pos = len(s) + 1
		return 0
	}
	L.Push(L.NewFunction(iter))
	return 1
}

func (r *runner) strGsub(L *lua.LState) int {
	src := argString(L, 1)
	p := argString(L, 2)
	repl := L.Get(3)
	switch repl.Type() {
	case lua.LTNumber, lua.LTString, lua.LTTable, lua.LTFunction:
	default:
		L.ArgError(3, "string/function/table expected")
	}
	maxN := optInt(L, 4, int64(len(src))+1)
	anchor := len(p) > 0 && p[0] == '^'
	pi := 0
	if anchor {
		pi = 1
	}
	ms := r.newMatchState(L, src, p)
	limit := int64(r.lim.MaxStringBytes)
	var b []byte
	grow := func(add int) {
		if int64(len(b))+int64(add) > limit {
			r.checkString("string.gsub", int64(len(b))+int64(add))
		}
	}
	s, n := 0, int64(0)
	for n < maxN {
		ms.level, ms.depth = 0, 0
		e := ms.match(s, pi)
		if e != -1 {
			n++
			ms.flush()
			b = r.gsubValue(ms, b, repl, s, e, grow)
		}
		if e != -1 && e > s {
			s = e
		} else if s < len(src) {
			grow(1)
			b = append(b, src[s])
			s++
		} else {
			break
		}
		if anchor {
			break
		}
	}
	ms.flush()
	grow(len(src) - s)
	b = append(b, src[s:]...)
	r.charge(int64(len(b)) / 32)
	if len(b) >= bigAlloc {
		r.checkMemory()
	}
	L.Push(lua.LString(b))
	L.Push(lua.LNumber(n))
	return 2
}

// gsubValue appends the replacement for the match src[s:e].
func (r *runner) gsubValue(ms *matchState, b []byte, repl lua.LValue, s, e int, grow func(int)) []byte {
	L := ms.L
	var val lua.LValue
	switch rv := repl.(type) {
	case lua.LString, lua.LNumber:
		news := lua.LVAsString(rv)
		if n, ok := rv.(lua.LNumber); ok {
			news = numberToString(float64(n))
		}
		for i := 0; i < len(news); i++ {
			c := news[i]
			if c != '%' {
				grow(1)
				b = append(b, c)
				continue
			}
			i++
			if i >= len(news) {
				break
			}
			c = news[i]
			switch {
			case !isDigit(c):
				grow(1)
				b = append(b, c)
			case c == '0':
				grow(e - s)
				b = append(b, ms.src[s:e]...)
			default:
				v := ms.getCapture(int(c-'1'), s, e)
				str := lua.LVAsString(v)
				if n, ok := v.(lua.LNumber); ok {
					str = numberToString(float64(n))
				}
				grow(len(str))
				b = append(b, str...)
			}
		}
		return b
	case *lua.LTable:
		val = L.GetTable(rv, ms.getCapture(0, s, e))
	case *lua.LFunction:
		top := L.GetTop()
		L.Push(rv)
		n := ms.pushCaptures(s, e, true)
		L.Call(n, 1)
		val = L.Get(-1)
		L.SetTop(top)
	}
	switch v := val.(type) {
	case *lua.LNilType:
		val = lua.LFalse
	case lua.LString:
		grow(len(v))
		return append(b, v...)
	case lua.LNumber:
		str := numberToString(float64(v))
		grow(len(str))
		return append(b, str...)
	}
	if val == lua.LFalse {
		grow(e - s)
		return append(b, ms.src[s:e]...)
	}
	L.RaiseError("invalid replacement value (a %s)", val.Type().String())
	return b
}
