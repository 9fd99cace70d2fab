package crdt

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
)

// PowerState is one replica's copy of a partition key's replicated state. The
// zero value is not usable; build one with New, Restore or Decode.
//
// Invariants between calls ("normal form", which Decode insists on): pending
// deltas are sorted by id, all above the infimum id; none of them is one that
// can never fold (a renegade, or a delta lost to an Unjoin); and the smallest
// one cannot fold yet.
type PowerState struct {
	inf  Infimum
	pend []Pending
	// proj caches the projection chain and is either nil or parallel to
	// pend. An entry is only trusted for the exact input slice recorded in
	// it, so stale entries are harmless: they simply miss.
	proj []projection
	// sole holds what soleEvent returns as folded, so the event of a
	// single node allocates nothing for it.
	sole [1]Folded
}

// projection is the cached result of applying one pending event.
type projection struct {
	ok    bool
	in    []byte // the input slice apply saw
	state []byte // newState; nil when err != nil
	out   []byte
	err   error
}

// New returns a power state whose infimum is bottom with the given
// participants (copied, sorted, deduplicated) and value (retained: the caller
// must not modify it afterwards). It panics if a participant is not a valid
// NodeID, which is a programming error.
func New(participants []NodeID, value []byte) *PowerState {
	parts := slices.Clone(participants)
	slices.Sort(parts)
	parts = slices.Compact(parts)
	for _, p := range parts {
		if !p.valid() {
			panic(fmt.Sprintf("crdt.New: invalid node id %q", p))
		}
	}
	if len(parts) == 0 {
		parts = nil
	}
	if len(value) == 0 {
		value = nil
	}
	return &PowerState{inf: Infimum{Participants: parts, Value: value}}
}

// Restore rebuilds a power state from stored parts: an infimum and the
// pending deltas, in any order. It validates every invariant (valid ids, node
// ids and kinds, sorted unique participant and ack sets, unique pending ids
// above the infimum id) and returns an error wrapping ErrCorrupt if one does
// not hold; then it drops what can never fold and reduces, reporting what
// folded. Restore retains the slices inside inf and pending (not the pending
// slice itself); the caller must not modify them afterwards.
func Restore(inf Infimum, pending []Pending, apply ApplyFunc) (*PowerState, []Folded, error) {
	if !inf.valid() {
		return nil, nil, fmt.Errorf("%w: invalid infimum", ErrCorrupt)
	}
	if len(inf.Participants) == 0 {
		inf.Participants = nil
	}
	if len(inf.Value) == 0 {
		inf.Value = nil
	}
	var pend []Pending
	if len(pending) > 0 {
		pend = slices.Clone(pending)
		slices.SortFunc(pend, func(a, b Pending) int { return a.ID.Compare(b.ID) })
	}
	for i := range pend {
		p := &pend[i]
		if !p.valid(false) {
			return nil, nil, fmt.Errorf("%w: invalid pending delta %v", ErrCorrupt, p.ID)
		}
		if p.ID.Compare(inf.ID) <= 0 {
			return nil, nil, fmt.Errorf("%w: pending delta %v at or below the infimum %v", ErrCorrupt, p.ID, inf.ID)
		}
		if i > 0 && pend[i-1].ID == p.ID {
			return nil, nil, fmt.Errorf("%w: duplicate pending delta %v", ErrCorrupt, p.ID)
		}
		if len(p.Delta.Payload) == 0 {
			p.Delta.Payload = nil
		}
		if len(p.Acks) == 0 {
			p.Acks = nil
		}
	}
	ps := &PowerState{inf: inf, pend: pend}
	folded := ps.normalize(apply, nil)
	return ps, folded, nil
}

// Clone returns a copy of ps; mutating one never affects the other. The
// immutable parts (values, payloads, node sets) are shared.
func (ps *PowerState) Clone() *PowerState {
	return &PowerState{
		inf:  ps.inf,
		pend: slices.Clone(ps.pend),
		proj: slices.Clone(ps.proj),
	}
}

// Infimum returns the infimum. It shares memory with ps: callers must not
// modify it.
func (ps *PowerState) Infimum() Infimum { return ps.inf }

// Pending returns the pending deltas in id order. It shares memory with ps
// and is valid until the next call that changes ps: read-only.
func (ps *PowerState) Pending() []Pending { return ps.pend[:len(ps.pend):len(ps.pend)] }

// Participants returns the projected participants: the infimum participants
// with the pending Joins and Unjoins applied in id order. The result may
// share memory with ps: read-only.
func (ps *PowerState) Participants() []NodeID {
	parts := ps.inf.Participants
	for i := range ps.pend {
		switch d := &ps.pend[i].Delta; d.Kind {
		case KindJoin:
			parts = withNode(parts, d.Node)
		case KindUnjoin:
			parts = withoutNode(parts, d.Node)
		}
	}
	return parts
}

// isProjected reports whether n is a projected participant, without
// allocating.
func (ps *PowerState) isProjected(n NodeID) bool {
	in := hasNode(ps.inf.Participants, n)
	for i := range ps.pend {
		if d := &ps.pend[i].Delta; d.Node == n {
			in = d.Kind == KindJoin
		}
	}
	return in
}

// NextID returns the id the next delta created by self gets: one more than
// the largest counter known (pending ids sort by counter first, so the last
// one has the largest).
func (ps *PowerState) NextID(self NodeID) ID {
	c := ps.inf.ID.Counter
	if n := len(ps.pend); n > 0 {
		c = max(c, ps.pend[n-1].ID.Counter)
	}
	return ID{Counter: c + 1, Node: self}
}

// Projected returns the infimum value with every pending Event applied in id
// order; events whose apply errors are skipped. The result shares memory with
// ps: read-only. Nothing is recomputed when nothing changed since the last
// call.
func (ps *PowerState) Projected(apply ApplyFunc) []byte {
	v := ps.inf.Value
	for i := range ps.pend {
		if ps.pend[i].Delta.Kind == KindEvent {
			if c := ps.eval(i, v, apply); c.err == nil {
				v = c.state
			}
		}
	}
	return v
}

// eval returns the result of applying pending event i to v, calling apply
// only if the cache holds no result for this very input slice.
func (ps *PowerState) eval(i int, v []byte, apply ApplyFunc) *projection {
	if ps.proj == nil {
		ps.proj = make([]projection, len(ps.pend))
	}
	c := &ps.proj[i]
	if c.ok && sameSlice(c.in, v) {
		return c
	}
	p := &ps.pend[i]
	ns, out, err := callApply(apply, v, p.ID, p.Delta.Payload)
	*c = projection{ok: true, in: v, state: ns, out: out, err: err}
	return c
}

// callApply caps both slices so that an apply appending to its input can
// never write into memory another slice sees, and normalizes the result: an
// empty state is nil, and an error leaves neither state nor output.
func callApply(apply ApplyFunc, state []byte, id ID, payload []byte) (newState, output []byte, err error) {
	newState, output, err = apply(state[:len(state):len(state)], id, payload[:len(payload):len(payload)])
	if err != nil {
		return nil, nil, err
	}
	if len(newState) == 0 {
		newState = nil
	}
	return newState, output, nil
}

// selfAck returns the ack set {self}, sharing the participants' memory when
// self is an infimum participant (the common case) to avoid an allocation.
func (ps *PowerState) selfAck(self NodeID) []NodeID {
	parts := ps.inf.Participants
	if i, ok := slices.BinarySearch(parts, self); ok {
		return parts[i : i+1 : i+1]
	}
	return []NodeID{self}
}

// add appends a new delta created by the caller. Its id is above every
// pending id, so it goes last and no cached projection is disturbed.
func (ps *PowerState) add(p Pending, c projection) {
	if ps.proj == nil && c.ok {
		ps.proj = make([]projection, len(ps.pend), len(ps.pend)+1)
	}
	ps.pend = append(ps.pend, p)
	if ps.proj != nil {
		ps.proj = append(ps.proj, c)
	}
}

// Event creates an event by self (acks = {self}), computes its output on the
// projected value, adds it and reduces. The returned output is the tentative
// one on the projected value; the final output is the one reported in Folded
// when the event folds (the same unless concurrent deltas order before it).
// Errors: ErrNotParticipant if self is not a projected participant; apply's
// error, in which case the power state is unchanged. Event does not retain
// payload after it returns (it keeps a copy if the event stays pending).
// The folded slice may be reused by the next Event on ps.
func (ps *PowerState) Event(self NodeID, payload []byte, apply ApplyFunc) (id ID, output []byte, folded []Folded, err error) {
	if len(ps.pend) == 0 && len(ps.inf.Participants) == 1 && ps.inf.Participants[0] == self {
		return ps.soleEvent(self, payload, apply)
	}
	return ps.event(self, payload, apply)
}

// soleEvent is Event when self is the only participant and nothing is
// pending (every event of a single node): the event folds at once. It is
// what event does, without the pending and projection arrays that event
// fills and folding empties (TestSoleEventMatchesGeneral).
func (ps *PowerState) soleEvent(self NodeID, payload []byte, apply ApplyFunc) (id ID, output []byte, folded []Folded, err error) {
	id = ps.NextID(self)
	if len(payload) == 0 {
		payload = nil
	}
	ns, out, err := callApply(apply, ps.inf.Value, id, payload)
	if err != nil {
		return ID{}, nil, nil, err
	}
	ps.inf.Value, ps.inf.ID = ns, id
	ps.pend, ps.proj = nil, nil
	ps.sole[0] = Folded{ID: id, Kind: KindEvent, Output: out}
	return id, out, ps.sole[:], nil
}

// event is Event's general path.
func (ps *PowerState) event(self NodeID, payload []byte, apply ApplyFunc) (id ID, output []byte, folded []Folded, err error) {
	if !ps.isProjected(self) {
		return ID{}, nil, nil, fmt.Errorf("%w: %q", ErrNotParticipant, self)
	}
	id = ps.NextID(self)
	if len(payload) == 0 {
		payload = nil
	}
	v := ps.Projected(apply)
	ns, out, err := callApply(apply, v, id, payload)
	if err != nil {
		return ID{}, nil, nil, err
	}
	ps.add(Pending{ID: id, Delta: Delta{Kind: KindEvent, Payload: payload}, Acks: ps.selfAck(self)},
		projection{ok: true, in: v, state: ns, out: out})
	folded = ps.normalize(apply, nil)
	if n := len(ps.pend); n > 0 && ps.pend[n-1].ID == id && payload != nil {
		// Still pending: stop sharing the caller's buffer. Skipped in the
		// common case where the event folded at once.
		ps.pend[n-1].Delta.Payload = bytes.Clone(payload)
	}
	return id, out, folded, nil
}

// Join creates a Join of node by self. Errors: ErrInvalidNode,
// ErrNotParticipant if self is not a projected participant,
// ErrAlreadyParticipant if node is one.
func (ps *PowerState) Join(self, node NodeID, apply ApplyFunc) (ID, []Folded, error) {
	if !node.valid() {
		return ID{}, nil, fmt.Errorf("%w: %q", ErrInvalidNode, node)
	}
	if !ps.isProjected(self) {
		return ID{}, nil, fmt.Errorf("%w: %q", ErrNotParticipant, self)
	}
	if ps.isProjected(node) {
		return ID{}, nil, fmt.Errorf("%w: %q", ErrAlreadyParticipant, node)
	}
	id := ps.NextID(self)
	ps.add(Pending{ID: id, Delta: Delta{Kind: KindJoin, Node: node}, Acks: ps.selfAck(self)}, projection{})
	return id, ps.normalize(apply, nil), nil
}

// Unjoin creates an Unjoin of node by self (node may be self). Errors:
// ErrInvalidNode, ErrNotParticipant if node or self is not a projected
// participant, or if self removes another node while its own Join has not
// folded here (self is not an infimum participant).
//
// When self removes another node, self first acknowledges every pending
// delta: deltas by node below the Unjoin that self has not acknowledged are
// dropped everywhere (self never saw them, so the cluster cannot agree on
// them), and the ones self holds must survive. The remover must be an
// infimum participant so that it was required to see every such delta.
func (ps *PowerState) Unjoin(self, node NodeID, apply ApplyFunc) (ID, []Folded, error) {
	if !node.valid() {
		return ID{}, nil, fmt.Errorf("%w: %q", ErrInvalidNode, node)
	}
	if !ps.isProjected(self) || (node != self && !hasNode(ps.inf.Participants, self)) {
		return ID{}, nil, fmt.Errorf("%w: %q", ErrNotParticipant, self)
	}
	if !ps.isProjected(node) {
		return ID{}, nil, fmt.Errorf("%w: %q", ErrNotParticipant, node)
	}
	if node != self {
		ps.ackAll(self, "")
	}
	id := ps.NextID(self)
	ps.add(Pending{ID: id, Delta: Delta{Kind: KindUnjoin, Node: node}, Acks: ps.selfAck(self)}, projection{})
	return id, ps.normalize(apply, nil), nil
}

// Eject is an Unjoin(node) created by self on behalf of a node that is gone
// for good (a cluster decision made elsewhere): it also adds node's ack (and
// self's) to every pending delta, all of which have ids below the new
// Unjoin's, and to the Unjoin itself, so the survivors can fold without it.
// Events by node that self never saw are lost. Errors: ErrInvalidNode,
// ErrNotParticipant if self is not an infimum participant (see Unjoin) and
// projected participant, or node is neither a projected participant nor the
// target of a pending Unjoin (so a voluntary Unjoin whose target died can
// still be pushed through).
func (ps *PowerState) Eject(self, node NodeID, apply ApplyFunc) (ID, []Folded, error) {
	if !node.valid() {
		return ID{}, nil, fmt.Errorf("%w: %q", ErrInvalidNode, node)
	}
	if !ps.isProjected(self) || !hasNode(ps.inf.Participants, self) {
		return ID{}, nil, fmt.Errorf("%w: %q", ErrNotParticipant, self)
	}
	if !ps.isProjected(node) && !ps.unjoinAfter(-1, node) {
		return ID{}, nil, fmt.Errorf("%w: %q", ErrNotParticipant, node)
	}
	ps.ackAll(self, node)
	id := ps.NextID(self)
	acks := []NodeID{self, node}
	if node < self {
		acks[0], acks[1] = node, self
	} else if node == self {
		acks = acks[:1]
	}
	ps.add(Pending{ID: id, Delta: Delta{Kind: KindUnjoin, Node: node}, Acks: acks}, projection{})
	return id, ps.normalize(apply, nil), nil
}

// Acknowledge adds self to the acks of every pending delta, then reduces. It
// does nothing if self is not a valid NodeID.
func (ps *PowerState) Acknowledge(self NodeID, apply ApplyFunc) []Folded {
	if !self.valid() {
		return nil
	}
	ps.ackAll(self, "")
	return ps.normalize(apply, nil)
}

// ackAll adds a and b (if non-empty) to every pending ack set. Ack sets are
// immutable, so a changed set is a new slice.
//
// A node that removed another never acknowledges a delta of the removed node
// below its Unjoin that it had not acknowledged when it created the Unjoin:
// that delta is one the remover never saw, which lostMarks dooms everywhere,
// and a late acknowledgement would revive it at some replicas only.
func (ps *PowerState) ackAll(a, b NodeID) {
	var removed map[NodeID]ID // node -> highest pending Unjoin of it by a
	for i := range ps.pend {
		if p := &ps.pend[i]; p.Delta.Kind == KindUnjoin && p.ID.Node == a && p.Delta.Node != a {
			if removed == nil {
				removed = map[NodeID]ID{}
			}
			removed[p.Delta.Node] = p.ID
		}
	}
	for i := range ps.pend {
		p := &ps.pend[i]
		if removed != nil && !hasNode(p.Acks, a) {
			if u, ok := removed[p.ID.Node]; ok && p.ID.Compare(u) < 0 {
				continue
			}
		}
		p.Acks = withNode(p.Acks, a)
		if b != "" {
			p.Acks = withNode(p.Acks, b)
		}
	}
}

// Divergent lists (sorted) the projected participants missing from the acks
// of at least one pending delta: the peers that still need to hear from us.
func (ps *PowerState) Divergent() []NodeID {
	var out []NodeID
	for _, n := range ps.Participants() {
		for i := range ps.pend {
			if !hasNode(ps.pend[i].Acks, n) {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// normalize brings ps back to normal form after deltas were added or the
// infimum changed: drop doomed deltas, reduce, and repeat while reducing
// changed something (a fold can doom more deltas, e.g. an Unjoin turns the
// removed node's later deltas into renegades).
func (ps *PowerState) normalize(apply ApplyFunc, folded []Folded) []Folded {
	for {
		for ps.prune() {
		}
		var changed bool
		folded, changed = ps.reduce(apply, folded)
		if !changed {
			return folded
		}
	}
}

// reduce folds the smallest pending delta into the infimum while every
// infimum participant has acknowledged it (or is excused), and drops it
// instead if its creator is not a participant at that point. It reports
// whether it changed anything.
func (ps *PowerState) reduce(apply ApplyFunc, folded []Folded) ([]Folded, bool) {
	n := 0
	var excused map[NodeID]int // node -> index of its last pending Unjoin; built on demand
	for ; n < len(ps.pend); n++ {
		p := &ps.pend[n]
		if !hasNode(ps.inf.Participants, p.ID.Node) {
			continue // renegade: its creator was removed before it
		}
		if !ps.acknowledged(n, &excused) {
			break
		}
		switch p.Delta.Kind {
		case KindEvent:
			c := ps.eval(n, ps.inf.Value, apply)
			if c.err == nil {
				ps.inf.Value = c.state
			}
			folded = append(folded, Folded{ID: p.ID, Kind: KindEvent, Output: c.out, Err: c.err})
		case KindJoin:
			ps.inf.Participants = withNode(ps.inf.Participants, p.Delta.Node)
			folded = append(folded, Folded{ID: p.ID, Kind: KindJoin})
			excused = nil // it depends on the participants
		case KindUnjoin:
			ps.inf.Participants = withoutNode(ps.inf.Participants, p.Delta.Node)
			folded = append(folded, Folded{ID: p.ID, Kind: KindUnjoin})
			excused = nil
		}
		ps.inf.ID = p.ID
	}
	if n == 0 {
		return folded, false
	}
	ps.dropFront(n)
	return folded, true
}

// acknowledged reports whether pending delta i, the smallest one still
// pending, may fold: every infimum participant has acked it or is excused.
//
// A participant p is excused by a pending Unjoin of p above i that p itself
// created or that an infimum participant e created. The excuse is sound
// because every delta by p below the Unjoin that will ever fold travels with
// the Unjoin: p's own Unjoin is created after all of p's earlier deltas; e
// acknowledged everything it held before creating its Unjoin, and the deltas
// by p that e had not seen are dropped (lostMarks; e is a participant since
// before any of them, so it was required to see them). An Unjoin created by a
// node that is not yet an infimum participant excuses nothing: deltas by p
// from before that node's Join fold without its acknowledgement, so it may
// not have them.
func (ps *PowerState) acknowledged(i int, excused *map[NodeID]int) bool {
	acks := ps.pend[i].Acks
	for _, p := range ps.inf.Participants {
		if hasNode(acks, p) {
			continue
		}
		if *excused == nil {
			m := map[NodeID]int{}
			for j := range ps.pend {
				u := &ps.pend[j]
				if u.Delta.Kind == KindUnjoin && (u.ID.Node == u.Delta.Node || hasNode(ps.inf.Participants, u.ID.Node)) {
					m[u.Delta.Node] = j
				}
			}
			*excused = m
		}
		if j, ok := (*excused)[p]; !ok || j <= i {
			return false
		}
	}
	return true
}

// unjoinAfter reports whether an Unjoin of n is pending above index i.
func (ps *PowerState) unjoinAfter(i int, n NodeID) bool {
	for j := i + 1; j < len(ps.pend); j++ {
		if d := &ps.pend[j].Delta; d.Kind == KindUnjoin && d.Node == n {
			return true
		}
	}
	return false
}

// dropFront removes the first n pending deltas, clearing the vacated tail so
// that it does not pin memory.
func (ps *PowerState) dropFront(n int) {
	if n == 0 {
		return
	}
	m := copy(ps.pend, ps.pend[n:])
	if m == 0 {
		// Most power states spend their life with nothing pending (on one
		// node every event folds at once): keep no arrays for them.
		ps.pend, ps.proj = nil, nil
		return
	}
	clear(ps.pend[m:])
	ps.pend = ps.pend[:m]
	if ps.proj != nil {
		copy(ps.proj, ps.proj[n:])
		clear(ps.proj[m:])
		ps.proj = ps.proj[:m]
	}
}

// prune drops every doomed pending delta and reports whether it dropped any.
func (ps *PowerState) prune() bool {
	marks := ps.doomedMarks()
	if marks == nil {
		return false
	}
	w := 0
	for i := range ps.pend {
		if marks[i] {
			continue
		}
		ps.pend[w] = ps.pend[i]
		if ps.proj != nil {
			ps.proj[w] = ps.proj[i]
		}
		w++
	}
	clear(ps.pend[w:])
	ps.pend = ps.pend[:w]
	if ps.proj != nil {
		clear(ps.proj[w:])
		ps.proj = ps.proj[:w]
	}
	return true
}

// doomedMarks marks the pending deltas that can never fold, or nil if there
// are none (the common case, found without allocating):
//
//   - deltas at or below the infimum id;
//   - renegades: the creator is neither an infimum participant nor the target
//     of a pending Join;
//   - lost deltas (see lostMarks).
func (ps *PowerState) doomedMarks() []bool {
	var marks []bool
	mark := func(i int) {
		if marks == nil {
			marks = make([]bool, len(ps.pend))
		}
		marks[i] = true
	}
	for i := 0; i < len(ps.pend) && ps.pend[i].ID.Compare(ps.inf.ID) <= 0; i++ {
		mark(i)
	}
	var joins map[NodeID]bool
	for i := range ps.pend {
		c := ps.pend[i].ID.Node
		if hasNode(ps.inf.Participants, c) {
			continue
		}
		if joins == nil {
			joins = map[NodeID]bool{}
			for j := range ps.pend {
				if d := &ps.pend[j].Delta; d.Kind == KindJoin {
					joins[d.Node] = true
				}
			}
		}
		if !joins[c] {
			mark(i)
		}
	}
	for i, lost := range ps.lostMarks(len(ps.pend), nil, false) {
		if lost {
			mark(i)
		}
	}
	return marks
}

// lostMarks marks, among the first limit pending deltas, each delta x by a
// node n for which some Unjoin of n with an id above x was created by another
// node e that has not acknowledged x. A node removing another acknowledges
// everything it holds first (see Unjoin and Eject), and every state holding
// the Unjoin also holds e's acknowledgements, so such an x is one e never saw:
// e will never acknowledge it, and every replica that knows the Unjoin drops
// it, consistently.
//
// Unjoins are taken from ps and from extra. Unless anyWitness is set, only
// removers that are infimum participants count: a remover that joined after
// x is not required to have seen x. (When its Join folds it becomes an
// infimum participant and the next prune catches x, before x can fold.)
//
// The scan runs from the top down, gathering for each removed node the set of
// removers above the current delta, so its cost is linear in the size of the
// state apart from map operations.
func (ps *PowerState) lostMarks(limit int, extra []Pending, anyWitness bool) []bool {
	type unjoin struct {
		id      ID
		node    NodeID
		remover NodeID
	}
	var us []unjoin
	collect := func(list []Pending) {
		for i := range list {
			p := &list[i]
			if p.Delta.Kind != KindUnjoin || p.ID.Node == p.Delta.Node {
				continue
			}
			if anyWitness || hasNode(ps.inf.Participants, p.ID.Node) {
				us = append(us, unjoin{p.ID, p.Delta.Node, p.ID.Node})
			}
		}
	}
	collect(ps.pend)
	collect(extra)
	if len(us) == 0 {
		return nil
	}
	slices.SortFunc(us, func(a, b unjoin) int { return a.id.Compare(b.id) })
	removers := map[NodeID]map[NodeID]bool{}
	var marks []bool
	j := len(us)
	for i := limit - 1; i >= 0; i-- {
		x := &ps.pend[i]
		for j > 0 && us[j-1].id.Compare(x.ID) > 0 {
			j--
			u := us[j]
			if removers[u.node] == nil {
				removers[u.node] = map[NodeID]bool{}
			}
			removers[u.node][u.remover] = true
		}
		set := removers[x.ID.Node]
		if len(set) == 0 {
			continue
		}
		lost := len(set) > len(x.Acks) // then some remover is surely missing
		if !lost {
			for e := range set {
				if !hasNode(x.Acks, e) {
					lost = true
					break
				}
			}
		}
		if lost {
			if marks == nil {
				marks = make([]bool, len(ps.pend))
			}
			marks[i] = true
		}
	}
	return marks
}

// isNormal reports whether ps is in normal form (see PowerState).
func (ps *PowerState) isNormal() bool {
	for i := range ps.pend {
		if ps.pend[i].ID.Compare(ps.inf.ID) <= 0 || (i > 0 && ps.pend[i-1].ID.Compare(ps.pend[i].ID) >= 0) {
			return false
		}
	}
	if ps.doomedMarks() != nil {
		return false
	}
	if len(ps.pend) > 0 {
		var excused map[NodeID]int
		if !hasNode(ps.inf.Participants, ps.pend[0].ID.Node) || ps.acknowledged(0, &excused) {
			return false
		}
	}
	return true
}

// compareEncoded orders two values by their encodings; it breaks ties between
// different contents under one id so that merging stays commutative even on
// odd input.
func compareEncoded[T any](a, b T, enc func(T, []byte) []byte) int {
	return cmp.Compare(string(enc(a, nil)), string(enc(b, nil)))
}
