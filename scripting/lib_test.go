package scripting

import (
	"fmt"
	"strings"
	"testing"
)

// libCases compare library results with what Lua 5.1 (as embedded in
// Redis) prints for the same expressions.
var libCases = []struct{ expr, want string }{
	// string
	{`string.find("hello world", "o w")`, "5,7"},
	{`string.find("hello", "l+")`, "3,4"},
	{`string.find("hello", "xyz")`, "nil"},
	{`string.find("a.b", ".", 1, true)`, "2,2"},
	{`string.find("abc", "", 10)`, "4,3"},
	{`string.find("abc", "b", -1)`, "nil"},
	{`string.find("key=val", "(%w+)=(%w+)")`, "1,7,key,val"},
	{`string.match("key=val", "(%w+)=(%w+)")`, "key,val"},
	{`string.match("  x  ", "^%s*(.-)%s*$")`, "x"},
	{`string.match("hello", "()ll()")`, "3,5"},
	{`string.match([[he said "hi"]], "([\"'])(.-)%1")`, `",hi`},
	{`string.match("2024-01-15", "(%d+)-(%d+)-(%d+)")`, "2024,01,15"},
	{`string.match("abc", "^b")`, "nil"},
	{`string.match("[x]", "%[(.)%]")`, "x"},
	{`string.match("a1_B2", "[%a_]+")`, "a"},
	{`string.match("x=-1.5e3", "[+-]?%d+%.?%d*[eE]?[+-]?%d*")`, "-1.5e3"},
	{`string.find("(foo(bar))baz", "%b()")`, "1,10"},
	{`string.gsub("THE (quick) fox", "%f[%a]%a+", "X")`, "X (X) X,3"},
	{`string.gsub("hello world", "o", "0")`, "hell0 w0rld,2"},
	{`string.gsub("abc", "%w", "%0%0")`, "aabbcc,3"},
	{`string.gsub("hello world", "(%w+)", "<%1>")`, "<hello> <world>,2"},
	{`string.gsub("abc", "", "-")`, "-a-b-c-,4"},
	{`string.gsub("abc", "b*", "-")`, "-a--c-,4"}, // Lua 5.1 (5.4 says -a-c-)
	{`string.gsub("hello", "l", "L", 1)`, "heLlo,1"},
	{`string.gsub("$1,$2", "%$(%d)", {["1"] = "one"})`, "one,$2,2"},
	{`string.gsub("a b", "%w", function(c) return c:upper() .. "!" end)`, "A! B!,2"},
	{`string.gsub("a b", "%w", function(c) return nil end)`, "a b,2"},
	{`string.gsub("100%", "%%", "%%%%")`, "100%%,1"},
	{`string.gsub("^ab^", "^%^", "")`, "ab^,1"},
	{`(function() local t = {} for w in string.gmatch("one two  three", "%a+") do t[#t+1] = w end return table.concat(t, "|") end)()`, "one|two|three"},
	{`(function() local t = {} for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do t[#t+1] = k .. v end return table.concat(t, "|") end)()`, "a1|b2"},
	{`(function() local n = 0 for _ in string.gmatch("abc", "") do n = n + 1 end return n end)()`, "4"},
	{`string.format("%5.2f|%d|%s|%x|%X|%5s|%-5s|%c|%o|%e", 3.14159, 42, "hi", 255, 255, "ab", "ab", 65, 8, 12345.678)`, " 3.14|42|hi|ff|FF|   ab|ab   |A|10|1.234568e+04"},
	{`string.format("%q", 'a"b\n\0c\\')`, "\"a\\\"b\\\n\\000c\\\\\""},
	{`string.format("%g|%g|%g|%.3g|%g", 1e20, 0.1, 100000, 2/3, 1e-5)`, "1e+20|0.1|100000|0.667|1e-05"},
	{`string.format("%d|%i|%5.1s|%.0f|%+d|%05d", 3.99, -3.99, "xyz", 2.5, 5, -42)`, "3|-3|    x|2|+5|-0042"},
	{`string.format("%f|%5.1f|%e", 1/0, -1/0, 0/0)`, "inf| -inf|nan"},
	{`string.format("%s %s", 1, 2.5)`, "1 2.5"},
	{`string.format("%%")`, "%"},
	{`string.format("%5%")`, "ERR"},
	{`string.format("%s", {})`, "ERR"},
	{`string.format("%d")`, "ERR"},
	{`string.format("%100d", 1)`, "ERR"},
	{`string.rep("ab", 3)`, "ababab"},
	{`string.rep("x", 0)`, ""},
	{`string.rep("x", -1)`, ""},
	{`string.byte("ABC")`, "65"},
	{`string.byte("ABC", 1, -1)`, "65,66,67"},
	{`string.byte("ABC", 10)`, ""},
	{`string.char(72, 105)`, "Hi"},
	{`string.char(256)`, "ERR"},
	{`string.sub("hello", 2, -2)`, "ell"},
	{`string.sub("hello", -3)`, "llo"},
	{`string.sub("hello", 0)`, "hello"},
	{`string.sub("hello", 10)`, ""},
	{`string.upper("abc\195\169")`, "ABC\xc3\xa9"},
	{`string.lower("ABC\255")`, "abc\xff"},
	{`string.reverse("abc")`, "cba"},
	{`string.len("\0\0")`, "2"},
	{`("x"):rep(2) .. ("%d"):format(7)`, "xx7"},
	{`#"abc"`, "3"},
	// base
	{`tonumber("0x10")`, "16"},
	{`tonumber("1e2")`, "100"},
	{`tonumber("  5  ")`, "5"},
	{`tonumber("5x")`, "nil"},
	{`tonumber("")`, "nil"},
	{`tonumber("ff", 16)`, "255"},
	{`tonumber("z", 36)`, "35"},
	{`tonumber("8", 8)`, "nil"},
	{`tonumber({})`, "nil"},
	{`tonumber("1", 99)`, "ERR"},
	{`select("#", 1, nil, 3)`, "3"},
	{`select(2, "a", "b", "c")`, "b,c"},
	{`select(-1, "a", "b", "c")`, "c"},
	{`select(0, "a")`, "ERR"},
	{`type(nil), type(1), type("x"), type({}), type(print)`, "nil,number,string,table,function"},
	{`rawequal("a", "a"), rawequal({}, {})`, "true,false"},
	{`rawget(setmetatable({}, {__index = function() return 1 end}), "x")`, "nil"},
	{`unpack({1, 2, 3})`, "1,2,3"},
	{`unpack({1, 2, 3}, 2)`, "2,3"},
	{`unpack({1, 2, 3}, 2, 5)`, "2,3,nil,nil"},
	{`assert(1, "m")`, "1,m"},
	{`assert(false, "custom message")`, "ERR"},
	{`(function() local t = setmetatable({}, {__index = {a = 1}}) return t.a, getmetatable(t).__index.a end)()`, "1,1"},
	{`getmetatable("x")`, "protected"},
	{`getmetatable(_G)`, "protected"},
	{`(function() local n = 0 for i, v in ipairs({1, 2, nil, 4}) do n = n + v end return n end)()`, "3"},
	{`(function() local s = 0 for k, v in pairs({10, 20, x = 5}) do s = s + v end return s end)()`, "35"},
	{`next({})`, "nil"},
	{`loadstring("return 1 + ...")(41)`, "42"},
	{`loadstring("syntax error here")`, "nil,[string \"syntax error here\"]:1: parse error near 'error'"},
	{`select("#", print("ignored"))`, "0"},
	{`_G == _G, _G.string == string, _G._G == _G`, "true,true,true"},
	// table
	{`table.concat({1, 2, "x"}, ", ")`, "1, 2, x"},
	{`table.concat({1, 2, 3}, "-", 2, 3)`, "2-3"},
	{`table.concat({}, "x")`, ""},
	{`table.concat({1, {}, 3})`, "ERR"},
	{`(function() local t = {1, 2, 3} table.insert(t, 4) table.insert(t, 1, 0) return table.concat(t, ",") end)()`, "0,1,2,3,4"},
	{`(function() local t = {1, 2, 3} local r = table.remove(t, 1) return r, table.concat(t, ",") end)()`, "1,2,3"},
	{`(function() local t = {1, 2, 3} local r = table.remove(t) return r, #t end)()`, "3,2"},
	{`table.remove({})`, ""},
	{`(function() local t = {5, 2, 8, 1} table.sort(t) return table.concat(t, ",") end)()`, "1,2,5,8"},
	{`(function() local t = {"b", "a", "C"} table.sort(t) return table.concat(t, ",") end)()`, "C,a,b"},
	{`(function() local t = {5, 2, 8, 1} table.sort(t, function(a, b) return a > b end) return table.concat(t, ",") end)()`, "8,5,2,1"},
	{`(function() local t = {{k=2,v="a"},{k=1,v="b"},{k=2,v="c"},{k=1,v="d"}} table.sort(t, function(a, b) return a.k < b.k end) local o = {} for i, x in ipairs(t) do o[i] = x.v end return table.concat(o) end)()`, "bdac"},
	{`table.maxn({1, 2, [10] = 1, [2.5] = 1})`, "10"},
	{`table.getn({1, 2, 3})`, "3"},
	// math
	{`math.floor(3.7), math.ceil(3.2), math.abs(-2), math.max(1, 5, 3), math.min(4, 2)`, "3,4,2,5,2"},
	{`math.huge, -math.huge, math.pi`, "+Inf,-Inf,3.141592653589793"},
	{`math.fmod(7, 3), math.modf(3.5), math.sqrt(16), 2^10, 7 % 3, -7 % 3`, "1,3,4,1024,1,2"},
	{`math.frexp(8), math.ldexp(0.5, 4)`, "0.5,8"},
	{`math.modf(-3.5)`, "-3,-0.5"},
	{`math.frexp(8)`, "0.5,4"},
	{`math.max()`, "ERR"},
	{`math.random(5, 5), math.random(1) `, "5,1"},
	{`(function() for i = 1, 1000 do local r = math.random(3, 7) if r < 3 or r > 7 or r % 1 ~= 0 then return "bad" end end return "ok" end)()`, "ok"},
	{`(function() for i = 1, 1000 do local r = math.random() if r < 0 or r >= 1 then return "bad" end end return "ok" end)()`, "ok"},
	{`math.random(1, 2, 3)`, "ERR"},
	// os
	{`os.time()`, "1700000000"},
}

func TestLibraries(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	for _, c := range libCases {
		got, err := runBody(t, e, "return show("+c.expr+")")
		if err != nil {
			got = "ERR"
		}
		if got != c.want {
			t.Errorf("%s\n  got  %q (%v)\n  want %q", c.expr, got, err, c.want)
		}
	}
}

func TestRandomSeeding(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	h, err := e.Load([]byte("function apply() local t = {} for i = 1, 5 do t[i] = math.random(1000) end return table.concat(t, ',') end\n" +
		"function index(s, k) return {tostring(math.random(1000000))} end"))
	if err != nil {
		t.Fatal(err)
	}
	seq := func(id string) string {
		_, out, err := e.Apply(h, nil, nil, Call{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		return outputText(t, out)
	}
	if a, b := seq("1-1"), seq("1-1"); a != b {
		t.Errorf("same id, different sequences: %s %s", a, b)
	}
	if a, b := seq("1-1"), seq("1-2"); a == b {
		t.Errorf("different ids, same sequence: %s", a)
	}
	tag := func(key string) string {
		tags, err := e.Index(h, nil, Call{Key: []byte(key), ID: "ignored", Seq: 1, Node: "ignored"})
		if err != nil {
			t.Fatal(err)
		}
		return tags[0]
	}
	if tag("a") != tag("a") || tag("a") == tag("b") {
		t.Error("index is not seeded by the key")
	}
}

// TestIDFromParts checks that an id given as Seq and Node is, to the
// handler, exactly the id given as a string: ctx.id and the math.random
// sequence it seeds, whether ctx.id is read before, after or never.
func TestIDFromParts(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	long := strings.Repeat("n", 100) // longer than the seed's stack buffer
	for _, src := range []string{
		"function apply(ev, s, ctx) local r = math.random(1e9) return ctx.id .. ',' .. r .. ',' .. math.random(1e9) .. ',' .. ctx.id end",
		"function apply(ev, s, ctx) return ctx.id .. ',' .. math.random(1e9) .. ',' .. math.random() end",
		"function apply() return math.random(1e9) .. ',' .. math.random(1e9) end",
	} {
		h, err := e.Load([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []struct {
			seq  uint64
			node string
		}{{1, "a1b2c3"}, {18446744073709551614, "n"}, {42, long}} {
			_, want, err := e.Apply(h, nil, []byte("ev"), Call{Key: []byte("k"), ID: fmt.Sprintf("%d.%s", id.seq, id.node)})
			if err != nil {
				t.Fatal(err)
			}
			// Twice: the second call must not see the first's id string.
			for range 2 {
				_, got, err := e.Apply(h, nil, []byte("ev"), Call{Key: []byte("k"), Seq: id.seq, Node: id.node})
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != string(want) {
					t.Errorf("%s with id %d.%.10s: got %q from the parts, %q from the string", src, id.seq, id.node, outputText(t, got), outputText(t, want))
				}
			}
		}
	}
}
