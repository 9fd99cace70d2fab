package scripting

import (
	"math"

	lua "github.com/yuin/gopher-lua"
)

// mathFuncs is Lua 5.1's math library minus randomseed; random draws from
// the call's seeded PRNG.
func (r *runner) mathFuncs() map[string]lua.LGFunction {
	f1 := func(fn func(float64) float64) lua.LGFunction {
		return func(L *lua.LState) int {
			L.Push(lua.LNumber(fn(float64(L.CheckNumber(1)))))
			return 1
		}
	}
	f2 := func(fn func(a, b float64) float64) lua.LGFunction {
		return func(L *lua.LState) int {
			L.Push(lua.LNumber(fn(float64(L.CheckNumber(1)), float64(L.CheckNumber(2)))))
			return 1
		}
	}
	return map[string]lua.LGFunction{
		"abs":   f1(math.Abs),
		"acos":  f1(math.Acos),
		"asin":  f1(math.Asin),
		"atan":  f1(math.Atan),
		"atan2": f2(math.Atan2),
		"ceil":  f1(math.Ceil),
		"cos":   f1(math.Cos),
		"cosh":  f1(math.Cosh),
		"deg":   f1(func(x float64) float64 { return x * (180.0 / math.Pi) }),
		"exp":   f1(math.Exp),
		"floor": f1(math.Floor),
		"fmod":  f2(math.Mod),
		"mod":   f2(math.Mod),
		"log":   f1(math.Log),
		"log10": f1(math.Log10),
		"pow":   f2(math.Pow),
		"rad":   f1(func(x float64) float64 { return x * (math.Pi / 180.0) }),
		"sin":   f1(math.Sin),
		"sinh":  f1(math.Sinh),
		"sqrt":  f1(math.Sqrt),
		"tan":   f1(math.Tan),
		"tanh":  f1(math.Tanh),
		"frexp": func(L *lua.LState) int {
			m, e := math.Frexp(float64(L.CheckNumber(1)))
			L.Push(lua.LNumber(m))
			L.Push(lua.LNumber(e))
			return 2
		},
		"ldexp": func(L *lua.LState) int {
			e := argInt(L, 2)
			e = max(min(e, 1<<20), -(1 << 20))
			L.Push(lua.LNumber(math.Ldexp(float64(L.CheckNumber(1)), int(e))))
			return 1
		},
		"modf": func(L *lua.LState) int {
			x := float64(L.CheckNumber(1))
			if math.IsInf(x, 0) {
				L.Push(lua.LNumber(x))
				L.Push(lua.LNumber(0))
				return 2
			}
			ip, fp := math.Modf(x)
			L.Push(lua.LNumber(ip))
			L.Push(lua.LNumber(fp))
			return 2
		},
		"max": func(L *lua.LState) int {
			m := float64(L.CheckNumber(1))
			for i := 2; i <= L.GetTop(); i++ {
				if v := float64(L.CheckNumber(i)); v > m {
					m = v
				}
			}
			L.Push(lua.LNumber(m))
			return 1
		},
		"min": func(L *lua.LState) int {
			m := float64(L.CheckNumber(1))
			for i := 2; i <= L.GetTop(); i++ {
				if v := float64(L.CheckNumber(i)); v < m {
					m = v
				}
			}
			L.Push(lua.LNumber(m))
			return 1
		},
		"random": r.mathRandom,
	}
}

// mathRandom has Lua 5.1's argument semantics: random() in [0,1),
// random(m) in [1,m], random(m,n) in [m,n].
func (r *runner) mathRandom(L *lua.LState) int {
	x := r.random()
	switch L.GetTop() {
	case 0:
		L.Push(lua.LNumber(x))
	case 1:
		u := argInt(L, 1)
		if u < 1 {
			L.ArgError(1, "interval is empty")
		}
		L.Push(lua.LNumber(math.Floor(x*float64(u)) + 1))
	case 2:
		l, u := argInt(L, 1), argInt(L, 2)
		if l > u {
			L.ArgError(2, "interval is empty")
		}
		L.Push(lua.LNumber(math.Floor(x*float64(u-l+1)) + float64(l)))
	default:
		L.RaiseError("wrong number of arguments")
	}
	return 1
}
