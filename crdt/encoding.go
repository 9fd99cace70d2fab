package crdt

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// Binary formats. Each encoding starts with one format byte naming both the
// type and the version, so a future version gets new bytes and old data stays
// readable. Lengths, counts and counters are minimal uvarints; node ids are a
// uvarint length (1..255) and the bytes; byte strings are a uvarint length and
// the bytes; sets are a uvarint count and strictly ascending members.
//
//	id       = counter node-or-empty      (bottom is counter 0, length 0)
//	infimum  = id participants value
//	delta    = kind (0x01 payload | 0x02 node | 0x03 node | 0x00 in patches only)
//	pending  = id delta acks
//	state    = 0x01 infimum count pending*      (pending ids ascending, above the infimum)
//	Infimum  = 0x02 infimum
//	Pending  = 0x03 pending
//	Patch    = 0x04 id participants count pending*
//
// Decoders accept only the canonical encoding of a valid value, so
// re-encoding what they return gives back the input bytes. They copy what
// they keep, so the input may be reused afterwards.
const (
	formatState   byte = 0x01
	formatInfimum byte = 0x02
	formatPending byte = 0x03
	formatPatch   byte = 0x04
)

// Smallest encodings, used to bound counts by the remaining input before
// allocating: a node id is at least 2 bytes; a pending entry at least 5
// (counter, node id, kind, ack count).
const (
	minNodeLen    = 2
	minPendingLen = 5
)

func appendID(dst []byte, id ID) []byte {
	dst = binary.AppendUvarint(dst, id.Counter)
	return appendNode(dst, id.Node)
}

func appendNode(dst []byte, n NodeID) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(n)))
	return append(dst, n...)
}

func appendNodes(dst []byte, set []NodeID) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(set)))
	for _, n := range set {
		dst = appendNode(dst, n)
	}
	return dst
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendInfimumBody(dst []byte, inf *Infimum) []byte {
	dst = appendID(dst, inf.ID)
	dst = appendNodes(dst, inf.Participants)
	return appendBytes(dst, inf.Value)
}

func (d Delta) appendBinary(dst []byte) []byte { return appendDelta(dst, d) }

func appendDelta(dst []byte, d Delta) []byte {
	dst = append(dst, byte(d.Kind))
	switch d.Kind {
	case KindEvent:
		dst = appendBytes(dst, d.Payload)
	case KindJoin, KindUnjoin:
		dst = appendNode(dst, d.Node)
	}
	return dst
}

func appendPendingBody(dst []byte, p *Pending) []byte {
	dst = appendID(dst, p.ID)
	dst = appendDelta(dst, p.Delta)
	return appendNodes(dst, p.Acks)
}

// AppendBinary appends the canonical encoding of the whole power state
// (infimum and pending deltas; not the projection cache). Replicas holding
// the same logical state produce the same bytes.
func (ps *PowerState) AppendBinary(dst []byte) []byte {
	dst = append(dst, formatState)
	dst = appendInfimumBody(dst, &ps.inf)
	dst = binary.AppendUvarint(dst, uint64(len(ps.pend)))
	for i := range ps.pend {
		dst = appendPendingBody(dst, &ps.pend[i])
	}
	return dst
}

// AppendBinary appends the canonical encoding of inf.
func (inf Infimum) AppendBinary(dst []byte) []byte {
	dst = slices.Grow(dst, 1+idSize(inf.ID)+nodesSize(inf.Participants)+binary.MaxVarintLen64+len(inf.Value))
	return appendInfimumBody(append(dst, formatInfimum), &inf)
}

// AppendBinary appends the canonical encoding of p.
func (p Pending) AppendBinary(dst []byte) []byte {
	dst = slices.Grow(dst, 1+idSize(p.ID)+1+binary.MaxVarintLen64+len(p.Delta.Payload)+len(p.Delta.Node)+nodesSize(p.Acks))
	return appendPendingBody(append(dst, formatPending), &p)
}

// BinaryLen returns len(p.AppendBinary(nil)) without encoding.
func (p Pending) BinaryLen() int {
	n := 1 + uvarintLen(p.ID.Counter) + nodeLen(p.ID.Node) + 1
	switch p.Delta.Kind {
	case KindEvent:
		n += uvarintLen(uint64(len(p.Delta.Payload))) + len(p.Delta.Payload)
	case KindJoin, KindUnjoin:
		n += nodeLen(p.Delta.Node)
	}
	n += uvarintLen(uint64(len(p.Acks)))
	for _, a := range p.Acks {
		n += nodeLen(a)
	}
	return n
}

func nodeLen(n NodeID) int { return uvarintLen(uint64(len(n))) + len(n) }

// uvarintLen is the length of binary.AppendUvarint's encoding of x.
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// idSize and nodesSize bound the bytes appendID and appendNodes append, so
// that encoders allocate once.
func idSize(id ID) int { return 2*binary.MaxVarintLen64 + len(id.Node) }

func nodesSize(set []NodeID) int {
	n := binary.MaxVarintLen64
	for _, x := range set {
		n += binary.MaxVarintLen64 + len(x)
	}
	return n
}

// AppendBinary appends the canonical encoding of p.
func (p Patch) AppendBinary(dst []byte) []byte {
	dst = append(dst, formatPatch)
	dst = appendID(dst, p.Infimum)
	dst = appendNodes(dst, p.Participants)
	dst = binary.AppendUvarint(dst, uint64(len(p.Events)))
	for i := range p.Events {
		dst = appendPendingBody(dst, &p.Events[i])
	}
	return dst
}

// decoder reads canonical encodings. After the first problem it records the
// reason, empties its input and returns zero values, so callers check once at
// the end; loops also stop early on failure.
type decoder struct {
	b      []byte
	intern []NodeID // node ids to reuse instead of allocating (sorted)
	// value, if its capacity suffices, holds the infimum's value rather
	// than a new allocation.
	value []byte
	bad   string
}

func (d *decoder) fail(why string) {
	if d.bad == "" {
		d.bad = why
	}
	d.b = nil
}

func (d *decoder) err() error {
	if d.bad == "" && len(d.b) != 0 {
		d.bad = "trailing bytes"
	}
	if d.bad != "" {
		return fmt.Errorf("%w: %s", ErrCorrupt, d.bad)
	}
	return nil
}

func (d *decoder) byte1() byte {
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	if n > 1 && d.b[n-1] == 0 {
		d.fail("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items each at least minLen bytes long, rejecting
// counts the remaining input cannot hold so that a hostile count never makes
// us allocate more than a small multiple of the input.
func (d *decoder) count(minLen int) int {
	v := d.uvarint()
	if v > uint64(len(d.b)/minLen) {
		d.fail("count exceeds input")
		return 0
	}
	return int(v)
}

func (d *decoder) node() NodeID {
	n := d.uvarint()
	if n == 0 || n > maxNodeLen || n > uint64(len(d.b)) {
		d.fail("bad node id")
		return ""
	}
	bs := d.b[:n]
	d.b = d.b[n:]
	lo, hi := 0, len(d.intern)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch s := string(d.intern[m]); {
		case string(bs) == s:
			return d.intern[m]
		case string(bs) < s:
			hi = m
		default:
			lo = m + 1
		}
	}
	return NodeID(bs)
}

func (d *decoder) nodes() []NodeID {
	n := d.count(minNodeLen)
	if n == 0 {
		return nil
	}
	if n == len(d.intern) && d.bad == "" {
		// Most sets are exactly the interned one (a node's own partitions
		// list it alone): share it. Node sets are never modified in place,
		// and the capped slice makes any append copy.
		rest, same := d.b, true
		for i := 0; i < n && same; i++ {
			same = d.node() == d.intern[i] && d.bad == ""
		}
		if same {
			return d.intern[:n:n]
		}
		d.b = rest
		d.bad = ""
	}
	set := make([]NodeID, n)
	for i := range set {
		set[i] = d.node()
		if d.bad != "" {
			return nil
		}
		if i > 0 && set[i-1] >= set[i] {
			d.fail("node set not strictly ascending")
			return nil
		}
	}
	return set
}

func (d *decoder) bytes() []byte { return d.bytesIn(nil) }

// bytesIn is bytes, in buf's array if it fits.
func (d *decoder) bytesIn(buf []byte) []byte {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	var b []byte
	if n <= cap(buf) {
		b = buf[:n:n]
	} else {
		b = make([]byte, n)
	}
	copy(b, d.b)
	d.b = d.b[n:]
	return b
}

func (d *decoder) id() ID {
	c := d.uvarint()
	if c == 0 {
		if d.uvarint() != 0 {
			d.fail("bottom id with a node")
		}
		return ID{}
	}
	if c == math.MaxUint64 {
		d.fail("counter exhausted")
		return ID{}
	}
	return ID{Counter: c, Node: d.node()}
}

func (d *decoder) infimum() Infimum {
	var inf Infimum
	inf.ID = d.id()
	inf.Participants = d.nodes()
	inf.Value = d.bytesIn(d.value)
	return inf
}

func (d *decoder) pending(ackOnly bool) Pending {
	var p Pending
	p.ID = d.id()
	if p.ID.IsZero() {
		d.fail("pending delta with bottom id")
		return p
	}
	p.Delta.Kind = Kind(d.byte1())
	switch p.Delta.Kind {
	case 0:
		if !ackOnly {
			d.fail("ack-only delta outside a patch")
		}
	case KindEvent:
		p.Delta.Payload = d.bytes()
	case KindJoin, KindUnjoin:
		p.Delta.Node = d.node()
	default:
		d.fail("unknown delta kind")
	}
	p.Acks = d.nodes()
	return p
}

// pendings reads a count and that many pending entries with ids strictly
// ascending above floor.
func (d *decoder) pendings(floor ID, ackOnly bool) []Pending {
	n := d.count(minPendingLen)
	if n == 0 {
		return nil
	}
	list := make([]Pending, n)
	for i := range list {
		list[i] = d.pending(ackOnly)
		if d.bad != "" {
			return nil
		}
		if list[i].ID.Compare(floor) <= 0 {
			d.fail("pending ids not ascending above the infimum")
			return nil
		}
		floor = list[i].ID
	}
	return list
}

func (d *decoder) format(want byte) {
	if d.byte1() != want && d.bad == "" {
		d.fail("unknown format")
	}
}

// Decode decodes a power state encoded by AppendBinary. It accepts only the
// canonical encoding of a state in normal form (as every operation leaves
// it), so Decode(b) succeeding implies AppendBinary gives back b. Errors wrap
// ErrCorrupt.
func Decode(b []byte) (*PowerState, error) { return DecodeInterned(b, nil) }

// DecodeInterned is Decode where node ids equal to one of known (sorted,
// as a node set) share its memory instead of being allocated: a node
// decoding its own partitions passes its own id.
func DecodeInterned(b []byte, known []NodeID) (*PowerState, error) {
	ps := new(PowerState)
	if err := ps.UnmarshalInterned(b, known, nil); err != nil {
		return nil, err
	}
	return ps, nil
}

// UnmarshalInterned is DecodeInterned into ps, which it overwrites (with
// the zero power state on error), and with the infimum's value in the
// array of value when it fits (ps retains it): a power state held inside
// a larger object, with room there for a small value, costs no allocation
// of its own.
func (ps *PowerState) UnmarshalInterned(b []byte, known []NodeID, value []byte) error {
	d := decoder{b: b, intern: known, value: value}
	d.format(formatState)
	inf := d.infimum()
	d.intern = inf.Participants
	pend := d.pendings(inf.ID, false)
	if err := d.err(); err != nil {
		*ps = PowerState{}
		return err
	}
	*ps = PowerState{inf: inf, pend: pend}
	if !ps.isNormal() {
		*ps = PowerState{}
		return fmt.Errorf("%w: power state not in normal form", ErrCorrupt)
	}
	return nil
}

// DecodeInfimum decodes an Infimum encoded by its AppendBinary.
func DecodeInfimum(b []byte) (Infimum, error) {
	d := decoder{b: b}
	d.format(formatInfimum)
	inf := d.infimum()
	if err := d.err(); err != nil {
		return Infimum{}, err
	}
	return inf, nil
}

// DecodePending decodes a Pending encoded by its AppendBinary. Ack-only
// entries (kind 0) exist only inside patches and are rejected here.
func DecodePending(b []byte) (Pending, error) {
	d := decoder{b: b}
	d.format(formatPending)
	p := d.pending(false)
	if err := d.err(); err != nil {
		return Pending{}, err
	}
	return p, nil
}

// DecodePatch decodes a Patch encoded by its AppendBinary.
func DecodePatch(b []byte) (Patch, error) {
	d := decoder{b: b}
	d.format(formatPatch)
	var p Patch
	p.Infimum = d.id()
	p.Participants = d.nodes()
	d.intern = p.Participants
	p.Events = d.pendings(p.Infimum, true)
	if err := d.err(); err != nil {
		return Patch{}, err
	}
	return p, nil
}

// AppendIDKey appends an order-preserving, prefix-free encoding of id: for
// any ids a < b, the encoding of a sorts bytewise before that of b and is not
// a prefix of it. The counter is 8 bytes big-endian; the node id follows with
// each 0x00 escaped as 0x00 0xFF, terminated by 0x00 0x01 (which sorts below
// both an escaped 0x00 and any other byte, so a shorter node id sorts first).
func AppendIDKey(dst []byte, id ID) []byte {
	dst = binary.BigEndian.AppendUint64(dst, id.Counter)
	for i := 0; i < len(id.Node); i++ {
		dst = append(dst, id.Node[i])
		if id.Node[i] == 0 {
			dst = append(dst, 0xFF)
		}
	}
	return append(dst, 0x00, 0x01)
}

// DecodeIDKey decodes an id encoded by AppendIDKey at the start of b and
// returns the bytes after it. Errors wrap ErrCorrupt.
func DecodeIDKey(b []byte) (id ID, rest []byte, err error) {
	if len(b) < 10 {
		return ID{}, nil, fmt.Errorf("%w: id key truncated", ErrCorrupt)
	}
	id.Counter = binary.BigEndian.Uint64(b)
	b = b[8:]
	var node []byte
	escaped := false
	for i := 0; ; i++ {
		if i+1 >= len(b) || i > 2*maxNodeLen {
			return ID{}, nil, fmt.Errorf("%w: id key unterminated", ErrCorrupt)
		}
		if b[i] != 0 {
			continue
		}
		switch b[i+1] {
		case 0x01:
			if escaped {
				node = unescapeKey(b[:i])
			} else {
				node = b[:i]
			}
			id.Node = NodeID(node)
			if !id.valid() {
				return ID{}, nil, fmt.Errorf("%w: invalid id in key", ErrCorrupt)
			}
			return id, b[i+2:], nil
		case 0xFF:
			escaped = true
			i++
		default:
			return ID{}, nil, fmt.Errorf("%w: bad escape in id key", ErrCorrupt)
		}
	}
}

func unescapeKey(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		out = append(out, b[i])
		if b[i] == 0 {
			i++ // skip the 0xFF
		}
	}
	return out
}
