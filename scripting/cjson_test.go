package scripting

import (
	"testing"
)

// cjsonCases follow Redis's lua-cjson, except that object keys are sorted.
var cjsonCases = []struct{ expr, want string }{
	{`cjson.encode({1, 2, 3})`, `[1,2,3]`},
	{`cjson.encode({})`, `{}`},
	{`cjson.encode({a = 1, b = {true, false}})`, `{"a":1,"b":[true,false]}`},
	{`cjson.encode({z = 1, a = 2, m = 3, [5] = 4})`, `{"5":4,"a":2,"m":3,"z":1}`},
	{`cjson.encode({1, x = 2})`, `{"1":1,"x":2}`},
	{`cjson.encode({[0] = "zero"})`, `{"0":"zero"}`},
	{`cjson.encode({[1] = 1, [2] = 2, [4] = 4})`, `[1,2,null,4]`},
	{`cjson.encode({[1] = 1, [11] = 2})`, "ERR"},
	{`cjson.encode({[10] = 1})`, `[null,null,null,null,null,null,null,null,null,1]`},
	{`cjson.encode("a/b\"c\\d\n\t\1\127é")`, `"a\/b\"c\\d\n\t\u0001\u007fé"`},
	{`cjson.encode(0.1)`, `0.1`},
	{`cjson.encode(1/3)`, `0.33333333333333`},
	{`cjson.encode(1e100)`, `1e+100`},
	{`cjson.encode(-0.0)`, `-0`},
	{`cjson.encode(123456789012)`, `123456789012`},
	{`cjson.encode(2^53)`, `9007199254740992`},
	{`cjson.encode(2^60)`, `1.1529215046068e+18`},
	{`cjson.encode(cjson.null)`, `null`},
	{`cjson.encode(nil)`, `null`},
	{`cjson.encode({a = cjson.null})`, `{"a":null}`},
	{`cjson.encode(0/0)`, "ERR"},
	{`cjson.encode(1/0)`, "ERR"},
	{`cjson.encode(print)`, "ERR"},
	{`cjson.encode({[true] = 1})`, "ERR"},
	{`cjson.encode({f = print})`, "ERR"},
	{`cjson.decode('[1,2,3]')[2]`, `2`},
	{`#cjson.decode('[1,2,3]')`, `3`},
	{`cjson.decode('{"a":null}').a == cjson.null`, `true`},
	{`cjson.decode('[null]')[1] == cjson.null`, `true`},
	{`cjson.decode('"\\u00e9\\n\\/"')`, "é\n/"},
	{`cjson.decode('"\\ud83d\\ude00"')`, "😀"},
	{`cjson.decode('  1.5e2  ')`, `150`},
	{`cjson.decode('-0')`, `0`},
	{`cjson.decode('true'), cjson.decode('false')`, `true,false`},
	{`cjson.decode('{"a":{"b":[1,{"c":"d"}]}}').a.b[2].c`, `d`},
	{`cjson.decode('{"x":1,"x":2}').x`, `2`},
	{`type(cjson.decode('{}')), type(cjson.decode('[]'))`, `table,table`},
	{`cjson.decode('{"1":1}')["1"], cjson.decode('{"1":1}')[1]`, `1,nil`},
	{`cjson.decode('[1,]')`, "ERR"},
	{`cjson.decode('01')`, "ERR"},
	{`cjson.decode('1.')`, "ERR"},
	{`cjson.decode('NaN')`, "ERR"},
	{`cjson.decode('Infinity')`, "ERR"},
	{`cjson.decode('0x10')`, "ERR"},
	{`cjson.decode("'x'")`, "ERR"},
	{`cjson.decode('{"a" 1}')`, "ERR"},
	{`cjson.decode('{a:1}')`, "ERR"},
	{`cjson.decode('"\1"')`, "ERR"},
	{`cjson.decode('"\\x"')`, "ERR"},
	{`cjson.decode('"\\ud83d"')`, "ERR"},
	{`cjson.decode('"abc')`, "ERR"},
	{`cjson.decode('')`, "ERR"},
	{`cjson.decode('[1] x')`, "ERR"},
	{`cjson.decode('1e400')`, `+Inf`},
	{`#cjson.decode(string.rep("[", 1000) .. string.rep("]", 1000))`, `1`},
	{`cjson.encode(cjson.decode('{"b":[1,2,{"c":null}],"a":"x"}'))`, `{"a":"x","b":[1,2,{"c":null}]}`},
}

func TestCJSON(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	for _, c := range cjsonCases {
		got, err := runBody(t, e, "return show("+c.expr+")")
		if err != nil {
			got = "ERR"
		}
		if got != c.want {
			t.Errorf("%s\n  got  %q (%v)\n  want %q", c.expr, got, err, c.want)
		}
	}
}

func TestCJSONErrorMessages(t *testing.T) {
	e := NewEngine(testLimits())
	defer e.Close()
	cases := []struct{ expr, msg string }{
		{`cjson.encode({[1] = 1, [11] = 2})`, "Cannot serialise table: excessively sparse array"},
		{`cjson.encode(0/0)`, "Cannot serialise number: must not be NaN or Inf"},
		{`cjson.encode(print)`, "Cannot serialise function: type not supported"},
		{`cjson.encode({[true] = 1})`, "Cannot serialise boolean: table key must be a number or string"},
		{`(function() local t = {} t.t = t return cjson.encode(t) end)()`, "Cannot serialise, excessive nesting (1001)"},
		{`cjson.decode('[1,]')`, "Expected value but found T_ARR_END at character 4"},
		{`cjson.decode('{"a" 1}')`, "Expected colon but found T_NUMBER at character 6"},
		{`cjson.decode('{1:1}')`, "Expected object key string but found T_NUMBER at character 2"},
		{`cjson.decode('[1 2]')`, "Expected comma or array end but found T_NUMBER at character 4"},
		{`cjson.decode('{"a":1 "b":2}')`, "Expected comma or object end but found T_STRING at character 8"},
		{`cjson.decode('[1] x')`, "Expected the end but found invalid token at character 5"},
		{`cjson.decode('')`, "Expected value but found T_END at character 1"},
		{`cjson.decode('nul')`, "Expected value but found invalid token at character 1"},
		{`cjson.decode(string.rep('[', 1001))`, "Found too many nested data structures (1001) at character 1001"},
	}
	for _, c := range cases {
		_, err := runBody(t, e, "return "+c.expr)
		wantKind(t, err, ErrRuntime, c.msg)
	}
}
