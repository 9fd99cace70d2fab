package scripting

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the JSON text of the canonical value v to dst (for
// LEGION.GET). Arrays become JSON arrays, maps JSON objects whose number keys
// are written as their Lua tostring (so {[1]=…, ["1"]=…} yields a duplicate
// name), the empty table is {}, nil is null, integers have no ".0", other
// finite numbers use the shortest form that round-trips (ECMAScript style),
// NaN and ±Inf become null. Strings are escaped for JSON; bytes that are not
// valid UTF-8 are written as \u00XX of the raw byte (so they read back as
// U+0080..U+00FF: lossy but stable). On error (wrapping ErrCorrupt) dst is
// returned unchanged.
func AppendJSON(dst, v []byte) ([]byte, error) {
	if len(v) == 0 {
		return append(dst, "null"...), nil
	}
	if err := ValidateValue(v); err != nil {
		return dst, err
	}
	d := decoder{b: v}
	out, err := appendJSONValue(dst, &d)
	if err != nil {
		return dst, err
	}
	return out, nil
}

func appendJSONValue(dst []byte, d *decoder) ([]byte, error) {
	t, err := d.next()
	if err != nil {
		return dst, err
	}
	switch t.tag {
	case tagNil:
		return append(dst, "null"...), nil
	case tagFalse:
		return append(dst, "false"...), nil
	case tagTrue:
		return append(dst, "true"...), nil
	case tagInt:
		return strconv.AppendInt(dst, t.i, 10), nil
	case tagFloat:
		return appendJSONFloat(dst, t.f), nil
	case tagStr:
		return appendJSONString(dst, t.s), nil
	case tagArray:
		dst = append(dst, '[')
		for i := 0; i < t.n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendJSONValue(dst, d); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	default: // tagMap
		dst = append(dst, '{')
		for i := 0; i < t.n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			k, err := d.next()
			if err != nil {
				return dst, err
			}
			if k.tag == tagStr {
				dst = appendJSONString(dst, k.s)
			} else {
				dst = append(dst, '"')
				dst = append(dst, numberToString(k.f)...)
				dst = append(dst, '"')
			}
			dst = append(dst, ':')
			if dst, err = appendJSONValue(dst, d); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	}
}

// appendJSONFloat formats like ECMAScript (and encoding/json): plain
// decimal for 1e-6 <= |f| < 1e21, exponent form otherwise.
func appendJSONFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c >= 0x20:
				dst = append(dst, c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\b':
				dst = append(dst, '\\', 'b')
			case c == '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			i++
			continue
		}
		dst = append(dst, s[i:i+size]...)
		i += size
	}
	return append(dst, '"')
}
