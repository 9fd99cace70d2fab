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
