package scripting

import (
	"math"
	"sort"
	"strconv"
)

// AppendRESP appends one RESP reply for the canonical value v (an apply or
// query output) to dst, following Redis's Lua-to-RESP conversion:
//
//	number            integer reply, truncated toward zero (NaN as 0, clamped to int64)
//	string            bulk string
//	true              :1 (RESP2) / #t (RESP3)
//	false             null bulk (RESP2) / #f (RESP3)
//	nil               null bulk (RESP2) / _ (RESP3)
//	{err="text"}      error reply -text
//	{ok="text"}       status reply +text
//	{double=x}        bulk string of x (RESP2) / ,x (RESP3)
//	{big_number="n"}  bulk string (RESP2) / (n (RESP3)
//	{verbatim_string={format="txt", string="s"}}  bulk string s (RESP2) / =len txt:s (RESP3)
//	{map={...}}       flat array k1 v1 k2 v2 ... (RESP2) / %n map (RESP3)
//	{set={...}}       array (RESP2) / ~n set (RESP3) of the keys whose value is true
//	other tables      array of t[1], t[2], ... up to the first missing index
//
// The special fields are checked in Redis's order (err, ok, double,
// big_number, verbatim_string, map, set) and only when their value has the
// expected type. Map and set members appear in canonical key order. CR and
// LF in error, status and big-number text are replaced by spaces. On error
// (wrapping ErrCorrupt) dst is returned unchanged.
func AppendRESP(dst, v []byte, resp3 bool) ([]byte, error) {
	if len(v) == 0 {
		v = []byte{tagNil}
	}
	var ends []span
	val := validator{d: decoder{b: v}, ends: &ends}
	if err := val.value(0); err != nil {
		return dst, err
	}
	if val.d.p != len(v) {
		return dst, corruptf(val.d.p, "trailing bytes")
	}
	w := respWriter{b: v, ends: ends, out: dst, resp3: resp3}
	if _, err := w.value(0); err != nil {
		return dst, err
	}
	return w.out, nil
}

type respWriter struct {
	b     []byte
	ends  []span
	out   []byte
	resp3 bool
}

// at decodes the token at p and returns it with the offset after its header.
func (w *respWriter) at(p int) (token, int, error) {
	d := decoder{b: w.b, p: p}
	t, err := d.next()
	return t, d.p, err
}

// skip returns the offset after the value starting at p.
func (w *respWriter) skip(p int) (int, error) {
	t, next, err := w.at(p)
	if err != nil {
		return 0, err
	}
	if (t.tag == tagArray || t.tag == tagMap) && t.n > 0 {
		i := sort.Search(len(w.ends), func(i int) bool { return w.ends[i].start >= p })
		if i == len(w.ends) || w.ends[i].start != p {
			return 0, corruptf(p, "table index mismatch")
		}
		return w.ends[i].end, nil
	}
	return next, nil
}

func (w *respWriter) line(prefix byte, s []byte) {
	w.out = append(w.out, prefix)
	for _, c := range s {
		if c == '\r' || c == '\n' {
			c = ' '
		}
		w.out = append(w.out, c)
	}
	w.out = append(w.out, '\r', '\n')
}

func (w *respWriter) header(prefix byte, n int) {
	w.out = append(w.out, prefix)
	w.out = strconv.AppendInt(w.out, int64(n), 10)
	w.out = append(w.out, '\r', '\n')
}

func (w *respWriter) bulk(s []byte) {
	w.header('$', len(s))
	w.out = append(w.out, s...)
	w.out = append(w.out, '\r', '\n')
}

func (w *respWriter) null() {
	if w.resp3 {
		w.out = append(w.out, '_', '\r', '\n')
	} else {
		w.out = append(w.out, "$-1\r\n"...)
	}
}

func (w *respWriter) integer(f float64) {
	var i int64
	switch {
	case f != f:
		i = 0
	case f >= 9.223372036854775807e18:
		i = math.MaxInt64
	case f <= -9.223372036854775808e18:
		i = math.MinInt64
	default:
		i = int64(f)
	}
	w.out = append(w.out, ':')
	w.out = strconv.AppendInt(w.out, i, 10)
	w.out = append(w.out, '\r', '\n')
}

func formatDouble(f float64) []byte {
	switch {
	case math.IsNaN(f):
		return []byte("nan")
	case math.IsInf(f, 1):
		return []byte("inf")
	case math.IsInf(f, -1):
		return []byte("-inf")
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64)
}

// value writes the reply for the value at p and returns the offset after it.
func (w *respWriter) value(p int) (int, error) {
	t, next, err := w.at(p)
	if err != nil {
		return 0, err
	}
	switch t.tag {
	case tagNil:
		w.null()
	case tagFalse:
		if w.resp3 {
			w.out = append(w.out, '#', 'f', '\r', '\n')
		} else {
			w.null()
		}
	case tagTrue:
		if w.resp3 {
			w.out = append(w.out, '#', 't', '\r', '\n')
		} else {
			w.out = append(w.out, ':', '1', '\r', '\n')
		}
	case tagInt, tagFloat:
		w.integer(t.f)
	case tagStr:
		w.bulk(t.s)
	case tagArray:
		w.header('*', t.n)
		for i := 0; i < t.n; i++ {
			if next, err = w.value(next); err != nil {
				return 0, err
			}
		}
	case tagMap:
		return w.table(t, next)
	}
	return next, nil
}

// special holds the value offsets of Redis's reply-type fields (-1: absent
// or of the wrong type).
type special struct {
	err, ok, double, bigNumber, verbatim, mapv, set int
}

func (w *respWriter) table(t token, first int) (int, error) {
	sp := special{-1, -1, -1, -1, -1, -1, -1}
	nseq := 0 // t[1..nseq] present
	p := first
	for i := 0; i < t.n; i++ {
		k, vpos, err := w.at(p)
		if err != nil {
			return 0, err
		}
		vt, _, err := w.at(vpos)
		if err != nil {
			return 0, err
		}
		if k.tag == tagInt && k.i == int64(nseq+1) {
			nseq++
		}
		if k.tag == tagStr {
			isStr := vt.tag == tagStr
			isTable := vt.tag == tagArray || vt.tag == tagMap
			switch string(k.s) {
			case "err":
				if isStr {
					sp.err = vpos
				}
			case "ok":
				if isStr {
					sp.ok = vpos
				}
			case "double":
				if vt.tag == tagInt || vt.tag == tagFloat {
					sp.double = vpos
				}
			case "big_number":
				if isStr {
					sp.bigNumber = vpos
				}
			case "verbatim_string":
				if isTable {
					sp.verbatim = vpos
				}
			case "map":
				if isTable {
					sp.mapv = vpos
				}
			case "set":
				if isTable {
					sp.set = vpos
				}
			}
		}
		if p, err = w.skip(vpos); err != nil {
			return 0, err
		}
	}
	end := p

	str := func(pos int) []byte {
		s, _, _ := w.at(pos)
		return s.s
	}
	switch {
	case sp.err >= 0:
		w.line('-', str(sp.err))
		return end, nil
	case sp.ok >= 0:
		w.line('+', str(sp.ok))
		return end, nil
	case sp.double >= 0:
		num, _, _ := w.at(sp.double)
		if w.resp3 {
			w.line(',', formatDouble(num.f))
		} else {
			w.bulk(formatDouble(num.f))
		}
		return end, nil
	case sp.bigNumber >= 0:
		s := str(sp.bigNumber)
		if w.resp3 {
			w.line('(', s)
		} else {
			w.bulk(sanitizeBytes(s))
		}
		return end, nil
	}
	if sp.verbatim >= 0 {
		format, s, ok, err := w.verbatimFields(sp.verbatim)
		if err != nil {
			return 0, err
		}
		if ok {
			if w.resp3 {
				w.header('=', len(s)+4)
				var f [3]byte
				for i := range f {
					f[i] = ' '
					if i < len(format) {
						f[i] = format[i]
					}
				}
				w.out = append(w.out, f[0], f[1], f[2], ':')
				w.out = append(w.out, s...)
				w.out = append(w.out, '\r', '\n')
			} else {
				w.bulk(s)
			}
			return end, nil
		}
	}
	if sp.mapv >= 0 {
		return end, w.mapReply(sp.mapv)
	}
	if sp.set >= 0 {
		return end, w.setReply(sp.set)
	}
	// Plain array: t[1..nseq], which are the first integer keys in order.
	w.header('*', nseq)
	p = first
	for i, emitted := 0, 0; i < t.n && emitted < nseq; i++ {
		k, vpos, err := w.at(p)
		if err != nil {
			return 0, err
		}
		if k.tag == tagInt && k.i == int64(emitted+1) {
			if p, err = w.value(vpos); err != nil {
				return 0, err
			}
			emitted++
			continue
		}
		if p, err = w.skip(vpos); err != nil {
			return 0, err
		}
	}
	return end, nil
}

func sanitizeBytes(s []byte) []byte {
	out := make([]byte, len(s))
	for i, c := range s {
		if c == '\r' || c == '\n' {
			c = ' '
		}
		out[i] = c
	}
	return out
}

// verbatimFields reads format and string from the table at p.
func (w *respWriter) verbatimFields(p int) (format, s []byte, ok bool, err error) {
	t, next, err := w.at(p)
	if err != nil || t.tag != tagMap {
		return nil, nil, false, err
	}
	var haveF, haveS bool
	for i := 0; i < t.n; i++ {
		k, vpos, err := w.at(next)
		if err != nil {
			return nil, nil, false, err
		}
		v, _, err := w.at(vpos)
		if err != nil {
			return nil, nil, false, err
		}
		if k.tag == tagStr && v.tag == tagStr {
			switch string(k.s) {
			case "format":
				format, haveF = v.s, true
			case "string":
				s, haveS = v.s, true
			}
		}
		if next, err = w.skip(vpos); err != nil {
			return nil, nil, false, err
		}
	}
	return format, s, haveF && haveS, nil
}

// mapReply writes the table at p as a map (RESP3) or flat array (RESP2).
func (w *respWriter) mapReply(p int) error {
	t, next, err := w.at(p)
	if err != nil {
		return err
	}
	if w.resp3 {
		w.header('%', t.n)
	} else {
		w.header('*', 2*t.n)
	}
	for i := 0; i < t.n; i++ {
		if t.tag == tagArray {
			w.integer(float64(i + 1))
		} else if next, err = w.value(next); err != nil {
			return err
		}
		if next, err = w.value(next); err != nil {
			return err
		}
	}
	return nil
}

// setReply writes the keys of the table at p whose value is true.
func (w *respWriter) setReply(p int) error {
	t, first, err := w.at(p)
	if err != nil {
		return err
	}
	count := 0
	next := first
	for i := 0; i < t.n; i++ {
		vpos := next
		if t.tag == tagMap {
			if vpos, err = w.skip(next); err != nil {
				return err
			}
		}
		if vpos < len(w.b) && w.b[vpos] == tagTrue {
			count++
		}
		if next, err = w.skip(vpos); err != nil {
			return err
		}
	}
	if w.resp3 {
		w.header('~', count)
	} else {
		w.header('*', count)
	}
	next = first
	for i := 0; i < t.n; i++ {
		kpos, vpos := next, next
		if t.tag == tagMap {
			if vpos, err = w.skip(next); err != nil {
				return err
			}
		}
		if vpos < len(w.b) && w.b[vpos] == tagTrue {
			if t.tag == tagArray {
				w.integer(float64(i + 1))
			} else if _, err = w.value(kpos); err != nil {
				return err
			}
		}
		if next, err = w.skip(vpos); err != nil {
			return err
		}
	}
	return nil
}
