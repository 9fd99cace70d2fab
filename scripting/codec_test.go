package scripting

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

func encodeExpr(t *testing.T, L *lua.LState, expr string) []byte {
	t.Helper()
	b, _, kind, msg := encodeLua(luaValue(t, L, expr), 1<<20, false, ErrStateSize, "state")
	if kind != nil {
		t.Fatalf("encode %s: %v %s", expr, kind, msg)
	}
	return b
}

func TestCanonicalEncoding(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	cases := []struct {
		expr string
		hex  string
	}{
		{"nil", "00"},
		{"false", "01"},
		{"true", "02"},
		{"0", "0300"},
		{"-0", "0300"},
		{"1", "0302"},
		{"-1", "0301"},
		{"300", "03d804"},
		{"2^53", "0380808080808080808001"[0:2] + hex.EncodeToString(binary.AppendUvarint(nil, 1<<54))},
		{"-2^53", "03" + hex.EncodeToString(binary.AppendUvarint(nil, 1<<54-1))},
		{"2^53+2", "04" + "4340000000000001"},
		{"0.5", "043fe0000000000000"},
		{"1/0", "047ff0000000000000"},
		{"-1/0", "04fff0000000000000"},
		{"0/0", "047ff8000000000000"},
		{"-(0/0)", "047ff8000000000000"},
		{`"abc"`, "0503616263"},
		{`""`, "0500"},
		{"{}", "0700"},
		{"{1,2,3}", "0603030203040306"},
		{"{[1]=1,[2]=2,[3]=3}", "0603030203040306"},
		{"{[3]=3,[2]=2,[1]=1}", "0603030203040306"},
		{"{1,nil,3}", "0702" + "0302" + "0302" + "0306" + "0306"},
		{"{[1]=true,[3]=true}", "0702" + "030202" + "030602"},
		{`{b=1,a=2,[2]=3,[0.5]=4,[-1]=5}`,
			"0705" + "0301" + "030a" + "043fe0000000000000" + "0308" + "0304" + "0306" + "050161" + "0304" + "050162" + "0302"},
		{`{B=1,a=2,aa=3}`, "0703" + "050142" + "0302" + "050161" + "0304" + "05026161" + "0306"},
		{`{{},{x={}}}`, "0602" + "0700" + "0701" + "050178" + "0700"},
	}
	for _, c := range cases {
		got := hex.EncodeToString(encodeExpr(t, L, c.expr))
		if got != c.hex {
			t.Errorf("%s: got %s, want %s", c.expr, got, c.hex)
			continue
		}
		b, _ := hex.DecodeString(got)
		if err := ValidateValue(b); err != nil {
			t.Errorf("%s: own encoding rejected: %v", c.expr, err)
		}
	}
}

func TestCanonicalEquality(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	groups := [][]string{
		{"{1,2,3}", "{[1]=1,[2]=2,[3]=3}", "(function() local t = {} t[3]=3 t[1]=1 t[2]=2 return t end)()"},
		{"{a=1,b=2}", "{b=2,a=1}", "(function() local t = {b=2,c=3} t.c=nil t.a=1 return t end)()"},
		{"{}", "(function() local t = {1,2} t[1]=nil t[2]=nil return t end)()"},
		{"{[1]=1,[2.0]=2}", "{1,2}"},
	}
	// Metatables are ignored: encoding is raw.
	withMT := luaValue(t, L, "{1}").(*lua.LTable)
	withMT.Metatable = luaValue(t, L, "{__index={2,3}, __len=1}")
	if b, _, _, _ := encodeLua(withMT, 1<<20, false, ErrStateSize, "state"); !bytes.Equal(b, encodeExpr(t, L, "{1}")) {
		t.Errorf("metatable changed the encoding: %x", b)
	}
	for _, g := range groups {
		first := encodeExpr(t, L, g[0])
		for _, expr := range g[1:] {
			if got := encodeExpr(t, L, expr); !bytes.Equal(got, first) {
				t.Errorf("%s encodes as %x, %s as %x", g[0], first, expr, got)
			}
		}
	}
}

// TestRoundTrip decodes into Lua and re-encodes: canonical bytes must come
// back unchanged.
func TestRoundTrip(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	exprs := []string{
		"nil", "true", "false", "0", "-12345", "2^53", "-2^53", "2^60", "1e300", "-1e-300", "0.1", "1/0", "0/0",
		`"x"`, `"\0\255"`, "{}", "{1}", "{1,{2,{3,{}}}}", `{a={b={c="d"}},[1]=1,[1.5]=2,[-3]=4}`,
		`{[2^53]=1,[2^53+2]=2,["2"]=3,[2]=4}`, `{1,2,nil,4}`, `{x=true,y=false}`,
	}
	for _, expr := range exprs {
		b := encodeExpr(t, L, expr)
		v, _, err := decodeLua(L, b, 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		b2, _, kind, msg := encodeLua(v, 1<<20, false, ErrStateSize, "state")
		if kind != nil {
			t.Fatalf("%s: re-encode: %s", expr, msg)
		}
		if !bytes.Equal(b, b2) {
			t.Errorf("%s: %x re-encoded as %x", expr, b, b2)
		}
	}
}

func TestDecoderRejects(t *testing.T) {
	f64 := func(f float64) string {
		return hex.EncodeToString(binary.BigEndian.AppendUint64(nil, math.Float64bits(f)))
	}
	nested := func(n int) string {
		return strings.Repeat("0601", n-1) + "0700"
	}
	cases := []struct{ name, hex string }{
		{"trailing bytes", "0000"},
		{"unknown tag", "08"},
		{"truncated varint", "0380"},
		{"non-minimal varint", "038000"},
		{"varint overflow", "03ffffffffffffffffff02"},
		{"integer beyond 2^53", "03" + hex.EncodeToString(binary.AppendUvarint(nil, 1<<54+2))},
		{"integral float", "04" + f64(1)},
		{"negative zero float", "04" + f64(math.Copysign(0, -1))},
		{"non-canonical NaN", "047ff8000000000001"},
		{"truncated float", "043ff0"},
		{"string too long", "050561"},
		{"empty array", "0600"},
		{"array count beyond input", "0605020202"},
		{"nil in array", "060100"},
		{"nil map value", "0701050161" + "00"},
		{"unsorted keys", "0702050162" + "0302" + "050161" + "0302"},
		{"duplicate keys", "0702050161" + "0302" + "050161" + "0302"},
		{"number after string key", "0702050161" + "0302" + "0302" + "0302"},
		{"map that should be an array", "0702" + "0302" + "0302" + "0304" + "0302"},
		{"boolean key", "070102" + "0302"},
		{"table key", "07010700" + "0302"},
		{"NaN key", "070104" + "7ff8000000000000" + "0302"},
		{"map count beyond input", "0709"},
		{"nesting 201 deep", nested(201)},
		{"truncated table", "0602"},
	}
	for _, c := range cases {
		b, err := hex.DecodeString(c.hex)
		if err != nil {
			t.Fatalf("%s: bad hex", c.name)
		}
		if err := ValidateValue(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s (%s): ValidateValue = %v, want ErrCorrupt", c.name, c.hex, err)
		}
		if _, err := AppendJSON(nil, b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: AppendJSON = %v, want ErrCorrupt", c.name, err)
		}
		if _, err := AppendRESP(nil, b, true); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: AppendRESP = %v, want ErrCorrupt", c.name, err)
		}
	}
	b, _ := hex.DecodeString(nested(200))
	if err := ValidateValue(b); err != nil {
		t.Errorf("200 levels rejected: %v", err)
	}
	for _, ok := range [][]byte{nil, {}, NilValue()} {
		if err := ValidateValue(ok); err != nil {
			t.Errorf("%x: %v", ok, err)
		}
	}
}

func TestEncoderRefusesNonData(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	L.SetGlobal("f", L.NewFunction(func(*lua.LState) int { return 0 }))
	L.SetGlobal("u", L.NewUserData())
	cases := []struct{ expr, msg string }{
		{"f", "state: function is not data"},
		{"{items={1,2,{f=f}}}", "state.items[3].f: function is not data"},
		{"{x=u}", "state.x: userdata is not data"},
		{`{["a b"]={[1.5]=f}}`, `state["a b"][1.5]: function is not data`},
		{"(function() local t = {} t.self = t return t end)()", "state.self: cyclic table is not data"},
		{"{[true]=1}", "state: boolean key is not data"},
		{"{[{}]=1, [f]=2}", "state: function key is not data"},
	}
	for _, c := range cases {
		_, _, kind, msg := encodeLua(luaValue(t, L, c.expr), 1<<20, false, ErrStateSize, "state")
		if kind != ErrNotData || msg != c.msg {
			t.Errorf("%s: got %v %q, want %q", c.expr, kind, msg, c.msg)
		}
	}
	deep := luaValue(t, L, "(function() local t = {} for i = 1, 200 do t = {t} end return t end)()")
	if _, _, kind, msg := encodeLua(deep, 1<<20, false, ErrStateSize, "state"); kind != ErrNotData {
		t.Errorf("201 levels: %v %s", kind, msg)
	}
	ok := luaValue(t, L, "(function() local t = {} for i = 1, 199 do t = {t} end return t end)()")
	if _, _, kind, msg := encodeLua(ok, 1<<20, false, ErrStateSize, "state"); kind != nil {
		t.Errorf("200 levels: %v %s", kind, msg)
	}
	// Lenient output: functions and userdata vanish, bad keys are dropped.
	b, _, kind, _ := encodeLua(luaValue(t, L, "{1, f, u, x=f, [true]=1, y=2}"), 1<<20, true, ErrOutputSize, "output")
	if kind != nil {
		t.Fatal(kind)
	}
	if got, _ := AppendJSON(nil, b); string(got) != `{"1":1,"y":2}` {
		t.Errorf("lenient: %s", got)
	}
	if b, _, _, _ := encodeLua(luaValue(t, L, "f"), 1<<20, true, ErrOutputSize, "output"); !bytes.Equal(b, NilValue()) {
		t.Errorf("lenient function: %x", b)
	}
	// Size limit.
	if _, _, kind, _ := encodeLua(luaValue(t, L, `{"`+strings.Repeat("x", 100)+`"}`), 64, false, ErrStateSize, "state"); kind != ErrStateSize {
		t.Errorf("size: %v", kind)
	}
	// A DAG that would expand exponentially stops at the size limit.
	dag := luaValue(t, L, "(function() local t = {1} for i = 1, 60 do t = {t, t} end return t end)()")
	if _, _, kind, _ := encodeLua(dag, 1<<16, false, ErrStateSize, "state"); kind != ErrStateSize {
		t.Errorf("dag: %v", kind)
	}
}

func TestAppendJSON(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	cases := []struct{ expr, json string }{
		{"nil", "null"},
		{"true", "true"},
		{"42", "42"},
		{"-7", "-7"},
		{"2^53", "9007199254740992"},
		{"0.1", "0.1"},
		{"1e21", "1e+21"},
		{"1e-7", "1e-7"},
		{"123.456", "123.456"},
		{"1/0", "null"},
		{"0/0", "null"},
		{`"a\"b\\c\n\1/é"`, `"a\"b\\c\n\u0001/é"`},
		{`"\255x"`, `"\u00ffx"`},
		{"{}", "{}"},
		{"{1,2,{3}}", "[1,2,[3]]"},
		{`{a=1,[2]=true,[1.5]="x"}`, `{"1.5":"x","2":true,"a":1}`},
		{`{[2^63]=1}`, `{"9.223372036854776e+18":1}`},
	}
	for _, c := range cases {
		got, err := AppendJSON([]byte("<"), encodeExpr(t, L, c.expr))
		if err != nil || string(got) != "<"+c.json {
			t.Errorf("%s: got %s %v, want %s", c.expr, got, err, c.json)
		}
	}
	if got, _ := AppendJSON(nil, nil); string(got) != "null" {
		t.Errorf("empty: %s", got)
	}
	if got, err := AppendJSON([]byte("keep"), []byte{0x09}); err == nil || string(got) != "keep" {
		t.Errorf("corrupt: %s %v", got, err)
	}
}

func TestAppendRESP(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	cases := []struct{ expr, resp2, resp3 string }{
		{"nil", "$-1\r\n", "_\r\n"},
		{"true", ":1\r\n", "#t\r\n"},
		{"false", "$-1\r\n", "#f\r\n"},
		{"42", ":42\r\n", ":42\r\n"},
		{"-3.9", ":-3\r\n", ":-3\r\n"},
		{"3.9", ":3\r\n", ":3\r\n"},
		{"1e300", ":9223372036854775807\r\n", ":9223372036854775807\r\n"},
		{"0/0", ":0\r\n", ":0\r\n"},
		{`"hi"`, "$2\r\nhi\r\n", "$2\r\nhi\r\n"},
		{`""`, "$0\r\n\r\n", "$0\r\n\r\n"},
		{`{err="MY bad\r\nthing"}`, "-MY bad  thing\r\n", "-MY bad  thing\r\n"},
		{`{ok="FINE"}`, "+FINE\r\n", "+FINE\r\n"},
		{`{err="E", ok="O"}`, "-E\r\n", "-E\r\n"},
		{`{err=5, ok="O"}`, "+O\r\n", "+O\r\n"},
		{`{double=3.5}`, "$3\r\n3.5\r\n", ",3.5\r\n"},
		{`{double=2}`, "$1\r\n2\r\n", ",2\r\n"},
		{`{double=1/0}`, "$3\r\ninf\r\n", ",inf\r\n"},
		{`{double=-1/0}`, "$4\r\n-inf\r\n", ",-inf\r\n"},
		{`{double=0/0}`, "$3\r\nnan\r\n", ",nan\r\n"},
		{`{big_number="123456789012345678901234567890"}`, "$30\r\n123456789012345678901234567890\r\n", "(123456789012345678901234567890\r\n"},
		{`{verbatim_string={format="txt", string="hello"}}`, "$5\r\nhello\r\n", "=9\r\ntxt:hello\r\n"},
		{`{verbatim_string={format="markdown", string="x"}}`, "$1\r\nx\r\n", "=5\r\nmar:x\r\n"},
		{`{verbatim_string={format="txt"}, 7}`, "*1\r\n:7\r\n", "*1\r\n:7\r\n"},
		{`{map={a=1, b={2, 3}}}`, "*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*2\r\n:2\r\n:3\r\n", "%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*2\r\n:2\r\n:3\r\n"},
		{`{map={}}`, "*0\r\n", "%0\r\n"},
		{`{map={"x","y"}}`, "*4\r\n:1\r\n$1\r\nx\r\n:2\r\n$1\r\ny\r\n", "%2\r\n:1\r\n$1\r\nx\r\n:2\r\n$1\r\ny\r\n"},
		{`{map={[1.5]=true, z=false}}`, "*4\r\n:1\r\n:1\r\n$1\r\nz\r\n$-1\r\n", "%2\r\n:1\r\n#t\r\n$1\r\nz\r\n#f\r\n"},
		{`{set={b=true, a=true, c=false}}`, "*2\r\n$1\r\na\r\n$1\r\nb\r\n", "~2\r\n$1\r\na\r\n$1\r\nb\r\n"},
		{`{set={true, false, true}}`, "*2\r\n:1\r\n:3\r\n", "~2\r\n:1\r\n:3\r\n"},
		{`{1, "two", {3}, true, false}`, "*5\r\n:1\r\n$3\r\ntwo\r\n*1\r\n:3\r\n:1\r\n$-1\r\n", "*5\r\n:1\r\n$3\r\ntwo\r\n*1\r\n:3\r\n#t\r\n#f\r\n"},
		{`{1, 2, nil, 4}`, "*2\r\n:1\r\n:2\r\n", "*2\r\n:1\r\n:2\r\n"},
		{`{[0]=0, [0.5]=0, 1, 2, x=9}`, "*2\r\n:1\r\n:2\r\n", "*2\r\n:1\r\n:2\r\n"},
		{`{}`, "*0\r\n", "*0\r\n"},
		{`{x=1}`, "*0\r\n", "*0\r\n"},
		{`{{err="inner"}, {ok="o"}}`, "*2\r\n-inner\r\n+o\r\n", "*2\r\n-inner\r\n+o\r\n"},
	}
	for _, c := range cases {
		b := encodeExpr(t, L, c.expr)
		for _, resp3 := range []bool{false, true} {
			want := c.resp2
			if resp3 {
				want = c.resp3
			}
			got, err := AppendRESP([]byte("@"), b, resp3)
			if err != nil || string(got) != "@"+want {
				t.Errorf("%s resp3=%v: got %q %v, want %q", c.expr, resp3, got, err, want)
			}
		}
	}
	if got, _ := AppendRESP(nil, nil, false); string(got) != "$-1\r\n" {
		t.Errorf("empty: %q", got)
	}
}

// TestDecodeInternedKeys: decoding with a key table gives the same values
// and charge as without, and the second decode of a state shares its map
// keys with the first instead of allocating them.
func TestDecodeInternedKeys(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	var keys keyIntern
	exprs := []string{
		`{count=1}`, `{a={b={c="d"}},[1]=1,[1.5]=2,["2"]=3}`, `{x=true,y=false,["` + strings.Repeat("k", 40) + `"]=1}`, `{"v", w={"x"}}`,
	}
	for _, expr := range exprs {
		b := encodeExpr(t, L, expr)
		v1, c1, err1 := decodeLua(L, b, 1<<20)
		v2, c2, err2 := decodeLuaInterned(L, b, 1<<20, &keys)
		if err1 != nil || err2 != nil || c1 != c2 {
			t.Fatalf("%s: plain (charge %d, %v), interned (charge %d, %v)", expr, c1, err1, c2, err2)
		}
		for _, v := range []lua.LValue{v1, v2} {
			b2, _, kind, msg := encodeLua(v, 1<<20, false, ErrStateSize, "state")
			if kind != nil || !bytes.Equal(b, b2) {
				t.Fatalf("%s: re-encoded as %x (%s), want %x", expr, b2, msg, b)
			}
		}
	}
	b := encodeExpr(t, L, `{count=1}`)
	v1, _, _ := decodeLuaInterned(L, b, 1<<20, &keys)
	v2, _, _ := decodeLuaInterned(L, b, 1<<20, &keys)
	key := func(v lua.LValue) *byte {
		var k lua.LValue
		v.(*lua.LTable).ForEach(func(key, _ lua.LValue) { k = key })
		return unsafe.StringData(string(k.(lua.LString)))
	}
	if key(v1) != key(v2) {
		t.Error("the key of the second decode was allocated again")
	}
	if v1 == v2 {
		t.Error("two decodes share a table")
	}
}

// TestEncodeReusingBuffers: encodings that share working buffers, failed
// ones in between, give exactly what fresh encodings give, and leave no
// table reachable from the buffers.
func TestEncodeReusingBuffers(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	var bufs encodeBuffers
	exprs := []string{
		`{a={b={c="d"}},[1]=1,[1.5]=2,["2"]=3}`, `(function() local t = {} t.self = t return t end)()`,
		`{1,2,{3,{4,{5}}}}`, `{f=function() end, x={y={z=1}}}`, `{count=7}`, `"plain"`, `{}`,
	}
	for round := 0; round < 3; round++ {
		for _, expr := range exprs {
			for _, lenient := range []bool{false, true} {
				v := luaValue(t, L, expr)
				b1, c1, k1, m1 := encodeLua(v, 1<<20, lenient, ErrStateSize, "state")
				b2, c2, k2, m2 := encodeLuaReusing(v, 1<<20, lenient, ErrStateSize, "state", &bufs, len(b1), nil)
				if !bytes.Equal(b1, b2) || c1 != c2 || k1 != k2 || m1 != m2 {
					t.Fatalf("%s (lenient %v): fresh %x %d %v %q, reusing %x %d %v %q", expr, lenient, b1, c1, k1, m1, b2, c2, k2, m2)
				}
				for _, tb := range bufs.stack[:cap(bufs.stack)] {
					if tb != nil {
						t.Fatalf("%s: the stack still holds a table", expr)
					}
				}
				for _, en := range bufs.scratch[:cap(bufs.scratch)] {
					if en.k != nil || en.v != nil {
						t.Fatalf("%s: the scratch still holds an entry", expr)
					}
				}
			}
		}
	}
}
