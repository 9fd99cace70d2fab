package scripting

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// fuzzSeeds are canonical encodings plus a few near misses.
func fuzzSeeds(f *testing.F) {
	for _, h := range []string{
		"", "00", "01", "02", "0300", "0302", "043fe0000000000000", "047ff8000000000000", "0503616263",
		"0700", "0603030203040306", "0702030202030602", "0703050142030205016103040502616103 06",
		"0701050365727205026f6f", "0701050373657407010501610 2", "06020700070105017807 00",
		"0701050376657262617469 6d5f737472696e67070205066 66f726d617405037478740506737472696e67050178",
		"038000", "0600", "0702050162030205016103 02",
	} {
		b, err := hex.DecodeString(removeSpaces(h))
		if err == nil {
			f.Add(b)
		}
	}
}

func removeSpaces(s string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte(" "), nil))
}

func FuzzValidateValue(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		err := ValidateValue(b)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v does not wrap ErrCorrupt", err)
		}
	})
}

func FuzzAppendJSON(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := AppendJSON([]byte("x"), b)
		if (err == nil) != (ValidateValue(b) == nil) {
			t.Fatalf("AppendJSON err=%v disagrees with ValidateValue", err)
		}
		if err != nil && string(out) != "x" {
			t.Fatalf("dst changed on error: %q", out)
		}
	})
}

func FuzzAppendRESP(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, resp3 := range []bool{false, true} {
			out, err := AppendRESP([]byte("x"), b, resp3)
			if (err == nil) != (ValidateValue(b) == nil) {
				t.Fatalf("AppendRESP err=%v disagrees with ValidateValue", err)
			}
			if err != nil && string(out) != "x" {
				t.Fatalf("dst changed on error: %q", out)
			}
		}
	})
}

// FuzzRoundTrip checks canonicality: every accepted encoding decodes into
// Lua and re-encodes to the same bytes.
func FuzzRoundTrip(f *testing.F) {
	fuzzSeeds(f)
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	f.Fuzz(func(t *testing.T, b []byte) {
		if ValidateValue(b) != nil || len(b) == 0 {
			return
		}
		v, _, err := decodeLua(L, b, 1<<20)
		if err == errDecodeBudget {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		b2, _, kind, msg := encodeLua(v, 1<<30, false, ErrStateSize, "state")
		if kind != nil {
			t.Fatalf("re-encode: %s", msg)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("%x re-encoded as %x", b, b2)
		}
		// A fresh decode is what the state cache may keep, charged alike.
		if _, ok, _ := checkBoth(t, v); !ok {
			t.Fatalf("%x: a fresh decode does not match its encoding", b)
		}
	})
}

// FuzzCJSONDecode feeds arbitrary text to cjson.decode inside the sandbox:
// it must fail only with a Lua error, and whatever it accepts must survive
// an encode/decode round trip.
func FuzzCJSONDecode(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":null}]}`, `[]`, `"\u00e9\ud83d\ude00"`, `-1.5e-3`, `[1,]`, `{"a" 1}`, "\"\x01\"", `[[[[`} {
		f.Add([]byte(s))
	}
	l := testLimits()
	l.InstructionBudget = 1_000_000
	e := NewEngine(l)
	h, err := e.Load([]byte(`function apply(event)
  local ok, v = pcall(cjson.decode, event)
  if not ok then return "decode error" end
  local ok2, s = pcall(cjson.encode, v)
  if not ok2 then return "encode error" end
  local v2 = cjson.decode(s)
  local s2 = cjson.encode(v2)
  assert(s == s2, "round trip changed " .. s .. " into " .. s2)
  return s
end`))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, err := e.Apply(h, nil, b, Call{})
		if err != nil && !errors.Is(err, ErrBudget) {
			t.Fatalf("%q: %v", b, err)
		}
	})
}

// FuzzLoad compiles and runs arbitrary source in the sandbox: any outcome
// is fine except a panic, a hang or an internal error.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		counterSrc, "function apply(e, s) return s end", "x = ((1", "function apply() return ('x'):rep(10):gsub('x', '%0%0') end",
		"local t = setmetatable({}, {__index = function(t, k) return k end}) function apply() return t.x end",
		"function apply() return string.format('%5.2f %q', 1.5, 'a') end",
	} {
		f.Add([]byte(s))
	}
	l := testLimits()
	l.InstructionBudget = 100_000
	e := NewEngine(l)
	f.Fuzz(func(t *testing.T, src []byte) {
		h, err := e.Load(src)
		if err == nil {
			_, _, err = e.Apply(h, nil, []byte("ev"), Call{})
		}
		var se *Error
		if err != nil && (!errors.As(err, &se) || strings.Contains(se.Msg, "internal error")) {
			t.Fatalf("%q: %v", src, err)
		}
	})
}

// FuzzRefill checks refillLua: whenever it decodes an encoding into the
// table a fresh decode of another one built, that table is in every
// respect a fresh decode of it (what verifyLua checks, key order included),
// charged alike.
func FuzzRefill(f *testing.F) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	enc := func(build func(tb *lua.LTable)) []byte {
		tb := L.NewTable()
		build(tb)
		b, _, kind, msg := encodeLua(tb, 1<<20, false, ErrStateSize, "state")
		if kind != nil {
			f.Fatal(msg)
		}
		return b
	}
	ab := enc(func(tb *lua.LTable) { tb.RawSetString("a", lua.LNumber(1)); tb.RawSetString("b", lua.LString("x")) })
	ab2 := enc(func(tb *lua.LTable) {
		tb.RawSetString("a", lua.LTrue)
		sub := L.NewTable()
		sub.RawSetInt(1, lua.LNumber(2))
		tb.RawSetString("b", sub)
	})
	abc := enc(func(tb *lua.LTable) {
		for _, k := range []string{"a", "b", "c"} {
			tb.RawSetString(k, lua.LNumber(3))
		}
	})
	mixed := enc(func(tb *lua.LTable) { tb.RawSetInt(1, lua.LNumber(1)); tb.RawSetString("a", lua.LNumber(2)) })
	// An array of one, then an empty map: no key to compare, but an array
	// part that the decode of the map does not have.
	one, empty := []byte{0x06, 0x01, 0x03, 0x00}, []byte{0x07, 0x00}
	for _, p := range [][2][]byte{{ab, ab2}, {ab2, ab}, {abc, ab}, {ab, abc}, {mixed, ab}, {ab, mixed}, {ab, nil}, {one, empty}} {
		f.Add(p[0], p[1])
	}
	var bufs encodeBuffers
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if len(a) == 0 || ValidateValue(a) != nil || len(b) == 0 || ValidateValue(b) != nil {
			return // refillLua is given valid states only
		}
		v, _, err := decodeLua(L, a, 1<<20)
		tb, isTable := v.(*lua.LTable)
		if err != nil || !isTable {
			return
		}
		charge, ok := refillLua(L, tb, b, 1<<20, nil)
		if !ok {
			return
		}
		_, want, err := decodeLua(L, b, 1<<20)
		if err != nil {
			t.Fatalf("%x refilled with %x, which does not decode: %v", a, b, err)
		}
		if charge != want {
			t.Fatalf("%x refilled with %x charged %d, a decode %d", a, b, charge, want)
		}
		var m matcher
		if !verifyLua(tb, b, &bufs, &m) {
			t.Fatalf("%x refilled with %x is not what decoding it builds", a, b)
		}
	})
}
