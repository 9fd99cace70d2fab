package crdt

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
)

// Merge merges other into ps: the join of the two power states. It does not
// acknowledge anything; other is not modified (its immutable parts become
// shared with ps).
//
// When other's infimum is higher, ps first folds its own pending deltas up to
// other's infimum id and keeps the result if it is exactly other's infimum
// (id, participants and value), so that this replica reports the final
// outputs of those deltas like everyone else; otherwise it adopts other's
// infimum and drops its deltas at or below it, as the plain CRDT join does.
// Either way the resulting state is the same.
func (ps *PowerState) Merge(other *PowerState, apply ApplyFunc) []Folded {
	if other == ps {
		return nil
	}
	var folded []Folded
	switch c := other.inf.ID.Compare(ps.inf.ID); {
	case c > 0:
		var ok bool
		folded, ok = ps.advance(other.inf, other.pend, true, apply)
		if !ok {
			ps.setInfimum(other.inf)
		}
	case c == 0:
		if !infimumEqual(&ps.inf, &other.inf) &&
			compareEncoded(other.inf, ps.inf, Infimum.AppendBinary) > 0 {
			ps.setInfimum(other.inf)
		}
	}
	ps.mergeEntries(other.pend, other.proj)
	return ps.normalize(apply, folded)
}

func infimumEqual(a, b *Infimum) bool {
	return a.ID == b.ID && slices.Equal(a.Participants, b.Participants) && bytes.Equal(a.Value, b.Value)
}

// setInfimum replaces the infimum and drops the pending deltas at or below
// it. Cached projections need no reset: the new value is another slice.
func (ps *PowerState) setInfimum(inf Infimum) {
	ps.inf = inf
	ps.dropFront(ps.countUpTo(inf.ID))
}

// countUpTo returns how many pending deltas have ids at or below id.
func (ps *PowerState) countUpTo(id ID) int {
	return sort.Search(len(ps.pend), func(i int) bool { return ps.pend[i].ID.Compare(id) > 0 })
}

// advance folds the pending deltas at or below target.ID regardless of acks,
// because a peer at target has proven them fully acknowledged, dropping the
// ones whose creator is not a participant at that point exactly as reduce
// would. It commits only if it lands exactly on target's id and participants
// (and value, if checkValue), and reports whether it did.
//
// With checkValue (a whole state from a peer), deltas that an Unjoin held
// here or in extra may have doomed (see unjoinBlocked) are resolved by trying
// which of them the peer folded: a remover holds a prefix (by id) of the
// removed node's deltas, since a state carrying one of them carries the
// earlier ones, so the candidates are the cuts of that list.
func (ps *PowerState) advance(target Infimum, extra []Pending, checkValue bool, apply ApplyFunc) ([]Folded, bool) {
	n := ps.countUpTo(target.ID)
	if n == 0 {
		return nil, false
	}
	var doubtful []int
	if checkValue {
		for i, m := range ps.lostMarks(n, extra, true) {
			if m {
				doubtful = append(doubtful, i)
			}
		}
	}
	cuts := []int{len(doubtful)} // fold the first cut doubtful deltas, skip the rest
	if len(doubtful) > 0 {
		cuts = append(cuts, 0)
		single := true
		for _, i := range doubtful {
			single = single && ps.pend[i].ID.Node == ps.pend[doubtful[0]].ID.Node
		}
		for k := len(doubtful) - 1; single && k > 0 && len(cuts) < 16; k-- {
			cuts = append(cuts, k)
		}
	}
	for _, k := range cuts {
		skip := doubtful[k:]
		// A dry run without apply first, so that a mismatch costs little.
		if dry, _ := ps.foldPrefix(n, skip, nil); dry.ID != target.ID || !slices.Equal(dry.Participants, target.Participants) {
			continue
		}
		res, folded := ps.foldPrefix(n, skip, apply)
		if checkValue && !bytes.Equal(res.Value, target.Value) {
			continue
		}
		ps.inf = res
		ps.dropFront(n)
		return folded, true
	}
	return nil, false
}

// foldPrefix computes the infimum that folding the first n pending deltas,
// except the indexes in skip (ascending), would give, without changing ps
// (apart from the projection cache). With a nil apply it leaves the value
// alone and reports nothing.
func (ps *PowerState) foldPrefix(n int, skip []int, apply ApplyFunc) (Infimum, []Folded) {
	inf := ps.inf
	var folded []Folded
	for i := 0; i < n; i++ {
		if len(skip) > 0 && skip[0] == i {
			skip = skip[1:]
			continue
		}
		p := &ps.pend[i]
		if !hasNode(inf.Participants, p.ID.Node) {
			continue
		}
		switch p.Delta.Kind {
		case KindEvent:
			if apply != nil {
				c := ps.eval(i, inf.Value, apply)
				if c.err == nil {
					inf.Value = c.state
				}
				folded = append(folded, Folded{ID: p.ID, Kind: KindEvent, Output: c.out, Err: c.err})
			}
		case KindJoin:
			inf.Participants = withNode(inf.Participants, p.Delta.Node)
			folded = append(folded, Folded{ID: p.ID, Kind: KindJoin})
		case KindUnjoin:
			inf.Participants = withoutNode(inf.Participants, p.Delta.Node)
			folded = append(folded, Folded{ID: p.ID, Kind: KindUnjoin})
		}
		inf.ID = p.ID
	}
	return inf, folded
}

// unjoinBlocked reports whether a pending delta at or below limit could be
// lost to an Unjoin (held here or listed in extra) whose remover has not
// acknowledged it here. The peer at limit has decided such a delta, folded or
// dropped, and we cannot tell which, so we must not fold past it on our own.
func (ps *PowerState) unjoinBlocked(limit ID, extra []Pending) bool {
	return ps.lostMarks(ps.countUpTo(limit), extra, true) != nil
}

// mergeEntries unions src (sorted by id) into the pending deltas: new deltas
// are inserted, acks are unioned, and two different deltas under one id are
// resolved by keeping the larger encoding. Entries at or below the infimum are
// ignored, and so are ack-only entries (kind 0) for deltas not held. srcProj
// is src's projection cache, or nil.
func (ps *PowerState) mergeEntries(src []Pending, srcProj []projection) {
	skip := sort.Search(len(src), func(i int) bool { return src[i].ID.Compare(ps.inf.ID) > 0 })
	src = src[skip:]
	if srcProj != nil {
		srcProj = srcProj[skip:]
	}
	if !ps.mergeNeeded(src) {
		return
	}
	if ps.proj == nil {
		ps.proj = make([]projection, len(ps.pend))
	}
	out := make([]Pending, 0, len(ps.pend)+len(src))
	outProj := make([]projection, 0, len(ps.pend)+len(src))
	srcCache := func(j int) projection {
		if srcProj == nil {
			return projection{}
		}
		return srcProj[j]
	}
	a, b := 0, 0
	for a < len(ps.pend) || b < len(src) {
		var c int
		switch {
		case b == len(src):
			c = -1
		case a == len(ps.pend):
			c = 1
		default:
			c = ps.pend[a].ID.Compare(src[b].ID)
		}
		switch {
		case c < 0:
			out = append(out, ps.pend[a])
			outProj = append(outProj, ps.proj[a])
			a++
		case c > 0:
			if s := src[b]; s.Delta.Kind != 0 {
				if len(s.Delta.Payload) == 0 {
					s.Delta.Payload = nil
				}
				if len(s.Acks) == 0 {
					s.Acks = nil
				}
				out = append(out, s)
				outProj = append(outProj, srcCache(b))
			}
			b++
		default:
			e, pr, s := ps.pend[a], ps.proj[a], &src[b]
			if s.Delta.Kind != 0 && !deltaEqual(&e.Delta, &s.Delta) &&
				compareEncoded(s.Delta, e.Delta, Delta.appendBinary) > 0 {
				e.Delta, pr = s.Delta, srcCache(b)
			}
			e.Acks = unionNodes(e.Acks, s.Acks)
			out = append(out, e)
			outProj = append(outProj, pr)
			a++
			b++
		}
	}
	ps.pend, ps.proj = out, outProj
}

// mergeNeeded reports whether mergeEntries(src) would change anything, so
// that merging a state we already know costs no allocation.
func (ps *PowerState) mergeNeeded(src []Pending) bool {
	a := 0
	for i := range src {
		s := &src[i]
		for a < len(ps.pend) && ps.pend[a].ID.Compare(s.ID) < 0 {
			a++
		}
		if a == len(ps.pend) || ps.pend[a].ID != s.ID {
			if s.Delta.Kind != 0 {
				return true
			}
			continue
		}
		if !subsetNodes(s.Acks, ps.pend[a].Acks) ||
			(s.Delta.Kind != 0 && !deltaEqual(&s.Delta, &ps.pend[a].Delta)) {
			return true
		}
	}
	return false
}

// PatchFor returns what ps should send to peer: its infimum id and
// participants and every pending delta, the ones peer has already acked as
// ack-only entries. The patch shares memory with ps: read-only, and valid
// only until ps changes.
func (ps *PowerState) PatchFor(peer NodeID) Patch {
	var evs []Pending
	if len(ps.pend) > 0 {
		evs = make([]Pending, len(ps.pend))
		for i := range ps.pend {
			p := &ps.pend[i]
			if hasNode(p.Acks, peer) {
				evs[i] = Pending{ID: p.ID, Acks: p.Acks}
			} else {
				evs[i] = *p
			}
		}
	}
	return Patch{Infimum: ps.inf.ID, Participants: ps.inf.Participants, Events: evs}
}

// MergePatch unions the patch's deltas and acks into ps. If the patch's
// infimum id is above ours, every local pending delta with id <= it is known
// to be fully acknowledged and is folded; if we then would not reach exactly
// that infimum (id and participants), or cannot be sure we hold every delta
// the sender folded (self is not an infimum participant, self is being
// removed, or a removal may have dropped one of them), it returns an error
// wrapping ErrNeedState and leaves ps unchanged. It also returns ErrNeedState,
// after merging, when self is not in our own infimum participants (we were
// never given a full state). On ErrNeedState the caller must fetch the whole
// power state and Merge it. Ack-only entries for deltas we do not hold are
// ignored. An invalid patch gives an error wrapping ErrCorrupt and changes
// nothing. MergePatch retains the slices inside p; the caller must not modify
// them afterwards.
func (ps *PowerState) MergePatch(self NodeID, p Patch, apply ApplyFunc) ([]Folded, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	var folded []Folded
	switch c := p.Infimum.Compare(ps.inf.ID); {
	case c > 0:
		if reason := ps.patchBlocked(self, &p); reason != "" {
			return nil, fmt.Errorf("%w: %s", ErrNeedState, reason)
		}
		var ok bool
		folded, ok = ps.advance(Infimum{ID: p.Infimum, Participants: p.Participants}, nil, false, apply)
		if !ok {
			return nil, fmt.Errorf("%w: cannot reach infimum %v from %v", ErrNeedState, p.Infimum, ps.inf.ID)
		}
	case c == 0:
		if !slices.Equal(p.Participants, ps.inf.Participants) {
			return nil, fmt.Errorf("%w: infimum %v has other participants", ErrNeedState, p.Infimum)
		}
	}
	ps.mergeEntries(p.Events, nil)
	folded = ps.normalize(apply, folded)
	if !hasNode(ps.inf.Participants, self) {
		return folded, fmt.Errorf("%w: %q is not an infimum participant", ErrNeedState, self)
	}
	return folded, nil
}

// patchBlocked returns why ps cannot safely fold up to the patch's infimum on
// the patch's word, or "". Safe means we hold every delta the sender folded:
// that holds when self had to acknowledge each of them, i.e. self is an
// infimum participant and not excused by a pending Unjoin of itself.
func (ps *PowerState) patchBlocked(self NodeID, p *Patch) string {
	if !hasNode(ps.inf.Participants, self) {
		return fmt.Sprintf("%q is not an infimum participant", self)
	}
	if ps.unjoinAfter(-1, self) {
		return fmt.Sprintf("%q is being removed", self)
	}
	for i := range p.Events {
		if d := &p.Events[i].Delta; d.Kind == KindUnjoin && d.Node == self {
			return fmt.Sprintf("%q is being removed", self)
		}
	}
	if ps.unjoinBlocked(p.Infimum, p.Events) {
		return "a pending removal may have dropped a delta"
	}
	return ""
}

// validate checks a patch's invariants.
func (p *Patch) validate() error {
	if !p.Infimum.valid() || !validNodeSet(p.Participants) {
		return fmt.Errorf("%w: invalid patch infimum", ErrCorrupt)
	}
	prev := p.Infimum
	for i := range p.Events {
		e := &p.Events[i]
		if e.ID.Compare(prev) <= 0 {
			return fmt.Errorf("%w: patch delta %v out of order or at or below the infimum", ErrCorrupt, e.ID)
		}
		if !e.valid(true) {
			return fmt.Errorf("%w: invalid patch delta %v", ErrCorrupt, e.ID)
		}
		prev = e.ID
	}
	return nil
}
