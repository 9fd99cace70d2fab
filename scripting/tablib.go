package scripting

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// tableFuncs is Lua 5.1's table library with byte-for-byte 5.1 semantics
// for insert and remove, a size-checked concat, and a deterministic stable
// merge sort. Functions that write refuse protected (read-only) tables.
func (r *runner) tableFuncs() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"concat": r.tableConcat,
		"getn":   tableGetN,
		"insert": r.tableInsert,
		"maxn":   r.tableMaxN,
		"remove": r.tableRemove,
		"sort":   r.tableSort,
	}
}

func (r *runner) writableTable(L *lua.LState, n int) *lua.LTable {
	tb := L.CheckTable(n)
	if r.isProtected(tb) {
		L.RaiseError("Attempt to modify a readonly table")
	}
	return tb
}

func tableGetN(L *lua.LState) int {
	L.Push(lua.LNumber(L.CheckTable(1).Len()))
	return 1
}

func (r *runner) tableMaxN(L *lua.LState) int {
	tb := L.CheckTable(1)
	m := 0.0
	count := int64(0)
	tb.ForEach(func(k, _ lua.LValue) {
		count++
		if n, ok := k.(lua.LNumber); ok && float64(n) > m {
			m = float64(n)
		}
	})
	r.charge(count)
	L.Push(lua.LNumber(m))
	return 1
}

func (r *runner) tableInsert(L *lua.LState) int {
	tb := r.writableTable(L, 1)
	e := int64(tb.Len()) + 1
	var pos int64
	switch L.GetTop() {
	case 2:
		pos = e
	case 3:
		pos = argInt(L, 2)
		if pos > e {
			e = pos
		}
		r.charge(e - pos)
		for i := e; i > pos; i-- {
			tb.RawSet(lua.LNumber(i), tb.RawGet(lua.LNumber(i-1)))
		}
	default:
		L.RaiseError("wrong number of arguments to 'insert'")
	}
	L.RawSet(tb, lua.LNumber(pos), L.Get(L.GetTop()))
	return 0
}

func (r *runner) tableRemove(L *lua.LState) int {
	tb := r.writableTable(L, 1)
	e := int64(tb.Len())
	pos := optInt(L, 2, e)
	if pos < 1 || pos > e {
		return 0
	}
	r.charge(e - pos)
	L.Push(tb.RawGet(lua.LNumber(pos)))
	for ; pos < e; pos++ {
		tb.RawSet(lua.LNumber(pos), tb.RawGet(lua.LNumber(pos+1)))
	}
	tb.RawSet(lua.LNumber(e), lua.LNil)
	return 1
}

func (r *runner) tableConcat(L *lua.LState) int {
	tb := L.CheckTable(1)
	sep := optString(L, 2, "")
	i := optInt(L, 3, 1)
	var last int64
	if L.Get(4) == lua.LNil {
		last = int64(tb.Len())
	} else {
		last = argInt(L, 4)
	}
	if i > last {
		L.Push(lua.LString(""))
		return 1
	}
	r.charge(last - i + 1)
	total := int64(0)
	for k := i; k <= last; k++ {
		switch v := tb.RawGet(lua.LNumber(k)).(type) {
		case lua.LString:
			total += int64(len(v))
		case lua.LNumber:
			total += int64(len(numberToString(float64(v))))
		default:
			L.RaiseError("invalid value (at index %d) in table for 'concat'", k)
		}
		if k != last {
			total += int64(len(sep))
		}
		if total > int64(r.lim.MaxStringBytes) {
			break
		}
	}
	r.checkString("table.concat", total)
	var b strings.Builder
	b.Grow(int(total))
	for k := i; k <= last; k++ {
		switch v := tb.RawGet(lua.LNumber(k)).(type) {
		case lua.LString:
			b.WriteString(string(v))
		case lua.LNumber:
			b.WriteString(numberToString(float64(v)))
		}
		if k != last {
			b.WriteString(sep)
		}
	}
	L.Push(lua.LString(b.String()))
	return 1
}

// tableSort sorts t[1..#t] with a stable merge sort: unlike Go's sort
// package, its comparison sequence (and so the result for inconsistent
// comparators or equal elements) never changes between Go versions.
func (r *runner) tableSort(L *lua.LState) int {
	tb := r.writableTable(L, 1)
	var cmp lua.LValue = lua.LNil
	if L.GetTop() >= 2 && L.Get(2) != lua.LNil {
		cmp = L.CheckFunction(2)
	}
	n := tb.Len()
	if n < 2 {
		return 0
	}
	r.charge(int64(n))
	vals := make([]lua.LValue, n)
	for i := range vals {
		vals[i] = tb.RawGetInt(i + 1)
	}
	less := func(a, b lua.LValue) bool {
		r.charge(1)
		if cmp == lua.LNil {
			return L.LessThan(a, b)
		}
		L.Push(cmp)
		L.Push(a)
		L.Push(b)
		L.Call(2, 1)
		res := lua.LVAsBool(L.Get(-1))
		L.Pop(1)
		return res
	}
	tmp := make([]lua.LValue, n)
	mergeSort(vals, tmp, less)
	for i, v := range vals {
		tb.RawSetInt(i+1, v)
	}
	return 0
}

// mergeSort is a bottom-up stable merge sort.
func mergeSort(a, tmp []lua.LValue, less func(a, b lua.LValue) bool) {
	n := len(a)
	src, dst := a, tmp
	for width := 1; width < n; width *= 2 {
		for lo := 0; lo < n; lo += 2 * width {
			mid := min(lo+width, n)
			hi := min(lo+2*width, n)
			i, j, k := lo, mid, lo
			for i < mid && j < hi {
				if less(src[j], src[i]) {
					dst[k] = src[j]
					j++
				} else {
					dst[k] = src[i]
					i++
				}
				k++
			}
			k += copy(dst[k:], src[i:mid])
			copy(dst[k:], src[j:hi])
		}
		src, dst = dst, src
	}
	if &src[0] != &a[0] {
		copy(a, src)
	}
}
