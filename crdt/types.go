package crdt

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Errors. Every error returned by this package is, or wraps, one of these.
var (
	ErrCorrupt            = errors.New("crdt: corrupt encoding")
	ErrNotParticipant     = errors.New("crdt: not a participant")
	ErrAlreadyParticipant = errors.New("crdt: already a participant")
	ErrNeedState          = errors.New("crdt: patch needs the full power state")
	// ErrInvalidNode is returned when a node id argument is empty or longer
	// than 255 bytes.
	ErrInvalidNode = errors.New("crdt: invalid node id")
)

// maxNodeLen is the largest NodeID in bytes; it keeps every node id's length
// prefix within two bytes and storage keys short.
const maxNodeLen = 255

// NodeID names a participant. It is non-empty and at most 255 bytes; any
// bytes are allowed.
type NodeID string

func (n NodeID) valid() bool { return len(n) > 0 && len(n) <= maxNodeLen }

// ID is a state id: a Lamport counter paired with the node that created the
// delta. The zero ID is "bottom", the id of an infimum nothing has been folded
// into, and is smaller than every other ID.
type ID struct {
	Counter uint64
	Node    NodeID
}

// Compare returns -1, 0 or +1 as a is below, equal to or above b: counter
// first, then node id bytewise.
func (a ID) Compare(b ID) int {
	switch {
	case a.Counter < b.Counter:
		return -1
	case a.Counter > b.Counter:
		return 1
	}
	return strings.Compare(string(a.Node), string(b.Node))
}

// IsZero reports whether a is bottom.
func (a ID) IsZero() bool { return a.Counter == 0 && a.Node == "" }

// String returns "<counter>.<node>", e.g. "17.a1b2c3"; bottom is "0.".
func (a ID) String() string {
	return strconv.FormatUint(a.Counter, 10) + "." + string(a.Node)
}

// valid reports whether a is bottom or a well-formed delta id. The counter
// never reaches MaxUint64 so that NextID cannot overflow.
func (a ID) valid() bool {
	if a.IsZero() {
		return true
	}
	return a.Counter > 0 && a.Counter < math.MaxUint64 && a.Node.valid()
}

// Kind is the kind of a delta. Kind 0 appears only in patches, for entries
// that carry acknowledgements without the delta itself.
type Kind uint8

// Delta kinds.
const (
	KindEvent  Kind = 1
	KindJoin   Kind = 2
	KindUnjoin Kind = 3
)

// String returns "event", "join" or "unjoin".
func (k Kind) String() string {
	switch k {
	case KindEvent:
		return "event"
	case KindJoin:
		return "join"
	case KindUnjoin:
		return "unjoin"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Delta is one change to a power state.
type Delta struct {
	Kind    Kind
	Node    NodeID // Join/Unjoin: the node joining or leaving; empty for Event
	Payload []byte // Event: opaque bytes given by the caller; nil for Join/Unjoin
}

// Pending is one not-yet-folded delta.
type Pending struct {
	ID    ID
	Delta Delta
	Acks  []NodeID // sorted ascending, no duplicates
}

// Infimum is the part of a power state every participant agrees on.
type Infimum struct {
	ID           ID
	Participants []NodeID // sorted ascending, no duplicates
	Value        []byte   // opaque state bytes
}

// Folded reports a delta that reached the infimum during a call.
type Folded struct {
	ID     ID
	Kind   Kind
	Output []byte // Event only: the final output from apply
	Err    error  // Event only: the error apply returned; the value was left unchanged
}

// ApplyFunc runs the user's handler. It must be deterministic and must not
// modify or retain state or payload. An error means "this event changes
// nothing". The power state retains newState and output, so apply must not
// modify them after returning. They may share memory with state (newState may
// be state itself: values are immutable) but not with payload, which may be
// the caller's reusable buffer. apply gets slices whose capacity equals their
// length, so appending to them copies.
type ApplyFunc func(state []byte, id ID, payload []byte) (newState, output []byte, err error)

// Patch is what replication ships in steady state instead of whole states.
type Patch struct {
	Infimum      ID        // sender's infimum id
	Participants []NodeID  // sender's infimum participants
	Events       []Pending // pending deltas; a delta the peer already acked may be sent ack-only (Delta.Kind == 0, no payload)
}

// Node sets are sorted slices of NodeID, treated as immutable: the functions
// below return their argument when nothing changes and a new slice otherwise,
// so a set may be shared by many states.

func hasNode(set []NodeID, n NodeID) bool {
	_, ok := slices.BinarySearch(set, n)
	return ok
}

func withNode(set []NodeID, n NodeID) []NodeID {
	i, ok := slices.BinarySearch(set, n)
	if ok {
		return set
	}
	out := make([]NodeID, 0, len(set)+1)
	out = append(out, set[:i]...)
	out = append(out, n)
	return append(out, set[i:]...)
}

func withoutNode(set []NodeID, n NodeID) []NodeID {
	i, ok := slices.BinarySearch(set, n)
	if !ok {
		return set
	}
	if len(set) == 1 {
		return nil
	}
	out := make([]NodeID, 0, len(set)-1)
	out = append(out, set[:i]...)
	return append(out, set[i+1:]...)
}

// subsetNodes reports whether every node of a is in b.
func subsetNodes(a, b []NodeID) bool {
	if len(a) > len(b) {
		return false
	}
	j := 0
	for _, n := range a {
		for j < len(b) && b[j] < n {
			j++
		}
		if j == len(b) || b[j] != n {
			return false
		}
		j++
	}
	return true
}

func unionNodes(a, b []NodeID) []NodeID {
	if subsetNodes(b, a) {
		return a
	}
	if subsetNodes(a, b) {
		return b
	}
	out := make([]NodeID, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// validNodeSet reports whether set is strictly ascending and every member is a
// valid NodeID.
func validNodeSet(set []NodeID) bool {
	for i, n := range set {
		if !n.valid() || (i > 0 && set[i-1] >= n) {
			return false
		}
	}
	return true
}

// sameSlice reports whether a and b are the very same bytes in memory. Values
// are immutable, so this implies equal contents without comparing them; all
// empty slices are interchangeable.
func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// valid checks one delta; ackOnly admits the kind-0 entries of patches.
func (d *Delta) valid(ackOnly bool) bool {
	switch d.Kind {
	case 0:
		return ackOnly && d.Node == "" && len(d.Payload) == 0
	case KindEvent:
		return d.Node == ""
	case KindJoin, KindUnjoin:
		return d.Node.valid() && len(d.Payload) == 0
	}
	return false
}

func (p *Pending) valid(ackOnly bool) bool {
	return !p.ID.IsZero() && p.ID.valid() && p.Delta.valid(ackOnly) && validNodeSet(p.Acks)
}

func (inf *Infimum) valid() bool {
	return inf.ID.valid() && validNodeSet(inf.Participants)
}

func deltaEqual(a, b *Delta) bool {
	return a.Kind == b.Kind && a.Node == b.Node && string(a.Payload) == string(b.Payload)
}
