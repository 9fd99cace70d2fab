package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// The simulation runs replicas that start from the same New state and talk
// through a network that delays, reorders and duplicates messages. Each
// message is encoded and decoded, so the encodings are exercised too.

type simConfig struct {
	nodes    int  // initial participants
	steps    int  // random steps before the final sync
	patches  bool // ship patches as well as whole states
	joins    int  // at most this many Joins of new nodes
	unjoins  bool // voluntary Unjoins (of self or another node)
	ejects   bool // Ejects of a node that then dies
	snapshot bool // collect states for the law tests
}

type replica struct {
	name    NodeID
	ps      *PowerState // nil until a new node gets its first full state
	dead    bool        // ejected: does nothing, receives nothing
	removed bool        // target of an Unjoin or Eject
	initial bool        // one of the initial participants
	folds   []Folded
}

const (
	msgState = iota
	msgPatch
	msgNeed // "send me your whole state"
)

type message struct {
	from, to NodeID
	kind     int
	data     []byte
}

type created struct {
	creator NodeID
	payload []byte
	output  []byte
}

type sim struct {
	t         testing.TB
	rng       *rand.Rand
	cfg       simConfig
	reps      []*replica
	net       []message
	events    map[ID]created
	removal   ID // the latest removal; another waits until every live replica has folded past it
	joined    int
	initial   []byte
	snapshots [][]byte
}

func newSim(t testing.TB, rng *rand.Rand, cfg simConfig) *sim {
	s := &sim{t: t, rng: rng, cfg: cfg, events: map[ID]created{}}
	s.initial = []byte(fmt.Sprintf("initial-%d", rng.IntN(1000)))
	var names []NodeID
	for i := 0; i < cfg.nodes; i++ {
		names = append(names, NodeID(fmt.Sprintf("n%d", i)))
	}
	for _, n := range names {
		s.reps = append(s.reps, &replica{name: n, ps: New(names, s.initial), initial: true})
	}
	return s
}

func (s *sim) replica(n NodeID) *replica {
	for _, r := range s.reps {
		if r.name == n {
			return r
		}
	}
	return nil
}

func (s *sim) pick(ok func(*replica) bool) *replica {
	var c []*replica
	for _, r := range s.reps {
		if ok(r) {
			c = append(c, r)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[s.rng.IntN(len(c))]
}

func (s *sim) live(r *replica) bool { return !r.dead && r.ps != nil }

func (s *sim) participant(r *replica) bool { return s.live(r) && r.ps.isProjected(r.name) }

func (s *sim) record(r *replica, f []Folded) {
	r.folds = append(r.folds, f...)
	if *flagTrace == string(r.name) && len(f) > 0 {
		s.t.Logf("%s folded %v", r.name, f)
	}
}

func (s *sim) trace(r *replica, what string) {
	if *flagTrace == string(r.name) && r.ps != nil {
		s.t.Logf("%s %s: %s\n   %x", r.name, what, dump(r.ps), enc(r.ps))
	}
}

// check verifies r's state invariants; on a random quarter of the calls, to
// keep the default test run short.
func (s *sim) check(r *replica) {
	s.t.Helper()
	if s.rng.IntN(4) == 0 {
		checkState(s.t, r.ps, hashApply)
	}
}

func (s *sim) run() {
	for step := 0; step < s.cfg.steps; step++ {
		if s.cfg.snapshot && s.rng.IntN(8) == 0 {
			s.snap()
		}
		switch x := s.rng.IntN(100); {
		case x < 30:
			s.event()
		case x < 60:
			s.send()
		case x < 94:
			s.deliver(true)
		case x < 96:
			s.join()
		default:
			s.remove()
		}
	}
	s.finish()
}

func (s *sim) snap() {
	if !s.cfg.snapshot {
		return
	}
	if r := s.pick(s.live); r != nil {
		s.snapshots = append(s.snapshots, enc(r.ps))
	}
}

func (s *sim) event() {
	r := s.pick(s.participant)
	if r == nil {
		return
	}
	payload := make([]byte, 1+s.rng.IntN(8))
	for i := range payload {
		payload[i] = byte(s.rng.IntN(256))
	}
	if s.rng.IntN(20) == 0 {
		payload[0] = 0xFF // rejected by hashApply
	} else if payload[0] == 0xFF {
		payload[0] = 0
	}
	before := enc(r.ps)
	id, out, f, err := r.ps.Event(r.name, payload, hashApply)
	if err != nil {
		if !errors.Is(err, errRejected) {
			s.t.Fatalf("%s: Event: %v", r.name, err)
		}
		if !bytes.Equal(before, enc(r.ps)) {
			s.t.Fatalf("%s: rejected Event changed the state", r.name)
		}
		return
	}
	s.events[id] = created{r.name, slices.Clone(payload), out}
	for i := range payload {
		payload[i] = 0xEE // the state must not have kept the caller's buffer
	}
	s.record(r, f)
	s.check(r)
}

func (s *sim) join() {
	if s.joined >= s.cfg.joins {
		return
	}
	r := s.pick(s.participant)
	if r == nil {
		return
	}
	node := NodeID(fmt.Sprintf("j%d", s.joined))
	_, f, err := r.ps.Join(r.name, node, hashApply)
	if err != nil {
		s.t.Fatalf("%s: Join(%s): %v", r.name, node, err)
	}
	s.joined++
	s.record(r, f)
	s.check(r)
	s.reps = append(s.reps, &replica{name: node})
}

// remove runs an Unjoin or an Eject. Removals are cluster decisions: one at
// a time, the next only once every live replica has folded the previous one.
func (s *sim) remove() {
	if !s.cfg.unjoins && !s.cfg.ejects {
		return
	}
	for _, r := range s.reps {
		if s.live(r) && r.ps.inf.ID.Compare(s.removal) < 0 {
			return
		}
	}
	r := s.pick(func(r *replica) bool { return s.participant(r) && hasNode(r.ps.inf.Participants, r.name) })
	if r == nil {
		return
	}
	parts := r.ps.Participants()
	alive := 0
	for _, p := range parts {
		if q := s.replica(p); q != nil && !q.dead {
			alive++
		}
	}
	if alive <= 2 {
		return
	}
	eject := s.cfg.ejects && (!s.cfg.unjoins || s.rng.IntN(2) == 0)
	target := parts[s.rng.IntN(len(parts))]
	if eject && target == r.name {
		return
	}
	var id ID
	var f []Folded
	var err error
	if eject {
		id, f, err = r.ps.Eject(r.name, target, hashApply)
	} else {
		id, f, err = r.ps.Unjoin(r.name, target, hashApply)
	}
	if err != nil {
		s.t.Fatalf("%s: remove %s (eject=%v): %v", r.name, target, eject, err)
	}
	s.removal = id
	s.record(r, f)
	s.check(r)
	q := s.replica(target)
	q.removed = true
	if eject {
		q.dead = true // messages it already sent stay in flight
	}
}

func (s *sim) send() {
	from := s.pick(s.live)
	if from == nil {
		return
	}
	to := s.pick(func(r *replica) bool { return r != from && !r.dead })
	if to == nil {
		return
	}
	if s.cfg.patches && s.rng.IntN(2) == 0 {
		s.net = append(s.net, message{from.name, to.name, msgPatch, from.ps.PatchFor(to.name).AppendBinary(nil)})
	} else {
		s.net = append(s.net, message{from.name, to.name, msgState, enc(from.ps)})
	}
}

// deliver delivers one random message, sometimes leaving a copy behind.
func (s *sim) deliver(mayDuplicate bool) {
	if len(s.net) == 0 {
		return
	}
	i := s.rng.IntN(len(s.net))
	m := s.net[i]
	if !mayDuplicate || s.rng.IntN(10) != 0 {
		s.net = slices.Delete(s.net, i, i+1)
	}
	s.receive(m)
}

func (s *sim) receive(m message) {
	s.t.Helper()
	r := s.replica(m.to)
	if r.dead {
		return
	}
	switch m.kind {
	case msgNeed:
		if r.ps != nil {
			s.net = append(s.net, message{r.name, m.from, msgState, enc(r.ps)})
		}
		return
	case msgState:
		other, err := Decode(m.data)
		if err != nil {
			s.t.Fatalf("Decode state from %s: %v", m.from, err)
		}
		s.trace(r, "before state")
		if *flagTrace == string(r.name) {
			s.t.Logf("  state from %s: %s", m.from, dump(other))
		}
		if r.ps == nil {
			r.ps = other
		} else {
			s.record(r, r.ps.Merge(other, hashApply))
		}
	case msgPatch:
		if r.ps == nil {
			s.net = append(s.net, message{r.name, m.from, msgNeed, nil})
			return
		}
		p, err := DecodePatch(m.data)
		if err != nil {
			s.t.Fatalf("DecodePatch from %s: %v", m.from, err)
		}
		before := enc(r.ps)
		s.trace(r, fmt.Sprintf("before patch from %s (inf %v parts %v, %d events)", m.from, p.Infimum, p.Participants, len(p.Events)))
		f, err := r.ps.MergePatch(r.name, p, hashApply)
		s.record(r, f)
		if err != nil {
			if !errors.Is(err, ErrNeedState) {
				s.t.Fatalf("%s: MergePatch: %v", r.name, err)
			}
			if p.Infimum.Compare(r.ps.inf.ID) > 0 && !bytes.Equal(before, enc(r.ps)) {
				s.t.Fatalf("%s: MergePatch changed the state and asked for more", r.name)
			}
			s.net = append(s.net, message{r.name, m.from, msgNeed, nil})
		}
	}
	s.check(r)
	s.trace(r, "merged")
	s.record(r, r.ps.Acknowledge(r.name, hashApply))
	s.check(r)
}

// finish delivers everything, syncs all pairs until quiet and checks the
// outcome.
func (s *sim) finish() {
	t := s.t
	for i := 0; len(s.net) > 0; i++ {
		if i > 100000 {
			t.Fatalf("network does not drain")
		}
		s.deliver(false)
	}
	var live []*replica
	for _, r := range s.reps {
		if !r.dead {
			live = append(live, r)
		}
	}
	quiet := false
	for round := 0; round < 20 && !quiet; round++ {
		quiet = true
		for _, a := range live {
			for _, b := range live {
				if a == b || a.ps == nil {
					continue
				}
				var before []byte
				if b.ps != nil {
					before = enc(b.ps)
				}
				s.receive(message{a.name, b.name, msgState, enc(a.ps)})
				if !bytes.Equal(before, enc(b.ps)) {
					quiet = false
				}
			}
		}
	}
	if !quiet {
		t.Fatalf("replicas do not become quiet")
	}

	// Identical bytes, nothing pending.
	want := enc(live[0].ps)
	for _, r := range live {
		if got := enc(r.ps); !bytes.Equal(got, want) {
			t.Fatalf("replica %s differs:\n%s\n%s", r.name, dump(r.ps), dump(live[0].ps))
		}
		if len(r.ps.pend) != 0 {
			t.Fatalf("replica %s still has pending deltas: %s", r.name, dump(r.ps))
		}
	}
	final := live[0].ps.inf

	// Folds: in id order per replica, with the same outputs everywhere.
	type result struct {
		kind Kind
		out  []byte
		err  string
	}
	ref := map[ID]result{}
	for _, r := range s.reps {
		for i, f := range r.folds {
			if i > 0 && r.folds[i-1].ID.Compare(f.ID) >= 0 {
				t.Fatalf("%s folded %v after %v", r.name, f.ID, r.folds[i-1].ID)
			}
			res := result{f.Kind, f.Output, fmt.Sprint(f.Err)}
			if f.Err == nil {
				res.err = ""
			}
			if old, ok := ref[f.ID]; ok {
				if old.kind != res.kind || !bytes.Equal(old.out, res.out) || old.err != res.err {
					t.Fatalf("%v folded differently: %+v and %+v (at %s)", f.ID, old, res, r.name)
				}
			} else {
				ref[f.ID] = res
			}
		}
	}

	// Initial participants that were never removed saw everything fold.
	var survivors []*replica
	for _, r := range s.reps {
		if r.initial && !r.removed {
			survivors = append(survivors, r)
		}
	}
	ids := func(r *replica) []ID {
		out := make([]ID, len(r.folds))
		for i, f := range r.folds {
			out[i] = f.ID
		}
		return out
	}
	wantIDs := ids(survivors[0])
	for _, r := range survivors[1:] {
		if got := ids(r); !slices.Equal(got, wantIDs) {
			t.Fatalf("survivors %s and %s folded different deltas:\n%v\n%v", r.name, survivors[0].name, got, wantIDs)
		}
	}
	for id, c := range s.events {
		if hasNode(final.Participants, c.creator) {
			if _, ok := ref[id]; !ok {
				t.Fatalf("event %v by %s (still a participant) never folded", id, c.creator)
			}
		}
	}
	if len(wantIDs) > 0 && wantIDs[len(wantIDs)-1] != final.ID {
		t.Fatalf("last fold %v, infimum %v", wantIDs[len(wantIDs)-1], final.ID)
	}

	// Replaying the survivors' folded events reproduces their outputs and
	// the final value.
	v := s.initial
	for _, f := range survivors[0].folds {
		if f.Kind != KindEvent {
			continue
		}
		c, ok := s.events[f.ID]
		if !ok {
			t.Fatalf("folded event %v was never created", f.ID)
		}
		ns, out, err := hashApply(v, f.ID, c.payload)
		if (err != nil) != (f.Err != nil) || !bytes.Equal(out, f.Output) {
			t.Fatalf("replaying %v gives (%x, %v), folded (%x, %v)", f.ID, out, err, f.Output, f.Err)
		}
		if err == nil {
			v = ns
		}
	}
	if !bytes.Equal(v, final.Value) {
		t.Fatalf("replay gives value %x, replicas hold %x", v, final.Value)
	}
}

func TestSimulation(t *testing.T) {
	forSeeds(t, 100, func(t *testing.T, rng *rand.Rand) {
		newSim(t, rng, simConfig{nodes: 3, steps: 200}).run()
	})
}

func TestSimulationPatches(t *testing.T) {
	forSeeds(t, 100, func(t *testing.T, rng *rand.Rand) {
		newSim(t, rng, simConfig{nodes: 3, steps: 200, patches: true}).run()
	})
}

func TestSimulationMembership(t *testing.T) {
	forSeeds(t, 100, func(t *testing.T, rng *rand.Rand) {
		newSim(t, rng, simConfig{nodes: 4 + rng.IntN(2), steps: 300, patches: rng.IntN(2) == 0,
			joins: 2, unjoins: true}).run()
	})
}

func TestSimulationEject(t *testing.T) {
	forSeeds(t, 100, func(t *testing.T, rng *rand.Rand) {
		newSim(t, rng, simConfig{nodes: 4 + rng.IntN(2), steps: 300, patches: rng.IntN(2) == 0,
			joins: 1, unjoins: rng.IntN(2) == 0, ejects: true}).run()
	})
}
