package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestIDCompareAndString(t *testing.T) {
	ids := []ID{{}, {1, "a"}, {1, "b"}, {1, "ba"}, {2, "a"}, {17, "a1b2c3"}}
	for i, a := range ids {
		for j, b := range ids {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", a, b, got, want)
			}
		}
	}
	if !(ID{}).IsZero() || (ID{Counter: 1, Node: "a"}).IsZero() {
		t.Errorf("IsZero wrong")
	}
	if got := (ID{17, "a1b2c3"}).String(); got != "17.a1b2c3" {
		t.Errorf("String = %q", got)
	}
	if got := (ID{}).String(); got != "0." {
		t.Errorf("bottom String = %q", got)
	}
	for k, want := range map[Kind]string{KindEvent: "event", KindJoin: "join", KindUnjoin: "unjoin", 9: "kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func TestNew(t *testing.T) {
	in := nodes("c", "a", "b", "a")
	ps := New(in, []byte("v"))
	if got := ps.Infimum(); !got.ID.IsZero() || !slices.Equal(got.Participants, nodes("a", "b", "c")) || string(got.Value) != "v" {
		t.Fatalf("Infimum = %+v", got)
	}
	in[0] = "z"
	if ps.Infimum().Participants[2] != "c" {
		t.Fatalf("New kept the caller's participant slice")
	}
	if got := ps.NextID("b"); got != (ID{1, "b"}) {
		t.Fatalf("NextID = %v", got)
	}
	for _, bad := range []NodeID{"", NodeID(bytes.Repeat([]byte("x"), 256))} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New accepted node id %q", bad)
				}
			}()
			New([]NodeID{"a", bad}, nil)
		}()
	}
}

// The single-node write path folds at once and calls apply exactly once.
func TestEventSingleNode(t *testing.T) {
	ps := New(nodes("a"), nil)
	var c countingApply
	for i := 1; i <= 3; i++ {
		c.calls = 0
		id, out, folded, err := ps.Event("a", []byte{byte(i)}, c.apply)
		if err != nil {
			t.Fatal(err)
		}
		if c.calls != 1 {
			t.Fatalf("event %d: apply called %d times, want 1", i, c.calls)
		}
		if id != (ID{uint64(i), "a"}) {
			t.Fatalf("id = %v", id)
		}
		if len(folded) != 1 || folded[0].ID != id || folded[0].Kind != KindEvent || !bytes.Equal(folded[0].Output, out) || folded[0].Err != nil {
			t.Fatalf("folded = %+v, output %x", folded, out)
		}
		if ps.Infimum().ID != id || len(ps.Pending()) != 0 {
			t.Fatalf("not folded: %s", dump(ps))
		}
	}
	c.calls = 0
	if v := ps.Projected(c.apply); !bytes.Equal(v, ps.Infimum().Value) || c.calls != 0 {
		t.Fatalf("Projected = %x (calls %d), infimum %x", v, c.calls, ps.Infimum().Value)
	}
	checkState(t, ps, hashApply)
}

func TestEventErrors(t *testing.T) {
	ps := New(nodes("a", "b"), []byte("v"))
	if _, _, _, err := ps.Event("c", []byte("x"), appendApply); !errors.Is(err, ErrNotParticipant) {
		t.Fatalf("Event by non-participant: %v", err)
	}
	if _, _, _, err := ps.Event("a", []byte("x"), appendApply); err != nil {
		t.Fatal(err)
	}
	before := enc(ps)
	if _, _, _, err := ps.Event("a", []byte("bad"), appendApply); !errors.Is(err, errRejected) {
		t.Fatalf("rejected Event: %v", err)
	}
	if !bytes.Equal(before, enc(ps)) {
		t.Fatalf("rejected Event changed the state")
	}
}

// A pending event must not alias the caller's payload buffer.
func TestEventCopiesPendingPayload(t *testing.T) {
	ps := New(nodes("a", "b"), nil)
	buf := []byte("hello")
	if _, _, _, err := ps.Event("a", buf, appendApply); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX")
	if got := ps.Pending()[0].Delta.Payload; string(got) != "hello" {
		t.Fatalf("pending payload = %q", got)
	}
}

// Projected reuses cached results and recomputes only what an insertion
// before the tail invalidated.
func TestProjectedCache(t *testing.T) {
	a := New(nodes("a", "b"), nil)
	b := a.Clone()
	var c countingApply
	for _, p := range []string{"1", "2", "3"} {
		if _, _, _, err := a.Event("a", []byte(p), c.apply); err != nil {
			t.Fatal(err)
		}
	}
	if c.calls != 3 {
		t.Fatalf("3 events: %d apply calls", c.calls)
	}
	c.calls = 0
	a.Projected(c.apply)
	a.Projected(c.apply)
	if c.calls != 0 {
		t.Fatalf("Projected recomputed %d times with nothing changed", c.calls)
	}
	// b's event gets id 1.b, which sorts between 1.a and 2.a.
	if _, _, _, err := b.Event("b", []byte("x"), c.apply); err != nil {
		t.Fatal(err)
	}
	c.calls = 0
	a.Merge(b, c.apply)
	got := a.Projected(c.apply)
	if c.calls != 3 { // 1.b, 2.a, 3.a; 1.a is still valid
		t.Fatalf("after inserting 1.b: %d apply calls, want 3", c.calls)
	}
	fresh, err := Decode(enc(a))
	if err != nil {
		t.Fatal(err)
	}
	if want := fresh.Projected(hashApply); !bytes.Equal(got, want) {
		t.Fatalf("cached projection %x, fresh %x", got, want)
	}
}

// Two nodes: an event folds once both have acknowledged it, and both report
// the same final output.
func TestTwoNodeFold(t *testing.T) {
	a := New(nodes("a", "b"), []byte("s"))
	b := a.Clone()
	id, out, folded, err := a.Event("a", []byte("x"), appendApply)
	if err != nil || len(folded) != 0 {
		t.Fatalf("Event: %v %v", folded, err)
	}
	if got := a.Divergent(); !slices.Equal(got, nodes("b")) {
		t.Fatalf("Divergent = %v", got)
	}
	if f := b.Merge(a, appendApply); len(f) != 0 {
		t.Fatalf("Merge folded %v without b's ack", f)
	}
	f := b.Acknowledge("b", appendApply)
	if len(f) != 1 || f[0].ID != id || string(f[0].Output) != string(out) {
		t.Fatalf("b folded %+v", f)
	}
	f = a.Merge(b, appendApply)
	if len(f) != 1 || f[0].ID != id || string(f[0].Output) != string(out) {
		t.Fatalf("a folded %+v", f)
	}
	if !bytes.Equal(enc(a), enc(b)) || string(a.Infimum().Value) != "sx" {
		t.Fatalf("a %s, b %s", dump(a), dump(b))
	}
	if len(a.Divergent()) != 0 {
		t.Fatalf("Divergent = %v", a.Divergent())
	}
}

// Deltas fold in id order whatever order they arrive in.
func TestFoldOrder(t *testing.T) {
	a := New(nodes("a", "b"), nil)
	b := a.Clone()
	a.Event("a", []byte("A"), appendApply) // 1.a
	b.Event("b", []byte("B"), appendApply) // 1.b
	b.Merge(a, appendApply)
	b.Acknowledge("b", appendApply) // b folds 1.a
	f := a.Merge(b, appendApply)    // a catches up with b's infimum
	f = append(f, a.Acknowledge("a", appendApply)...)
	if len(f) != 2 || f[0].ID != (ID{1, "a"}) || f[1].ID != (ID{1, "b"}) {
		t.Fatalf("folded %+v", f)
	}
	if string(a.Infimum().Value) != "AB" {
		t.Fatalf("value %q", a.Infimum().Value)
	}
}

func TestNextIDLamport(t *testing.T) {
	a := New(nodes("a", "b"), nil)
	b := a.Clone()
	for i := 0; i < 5; i++ {
		a.Event("a", []byte("x"), appendApply)
	}
	b.Merge(a, appendApply)
	if got := b.NextID("b"); got != (ID{6, "b"}) {
		t.Fatalf("NextID = %v", got)
	}
}

func TestJoin(t *testing.T) {
	a := New(nodes("a"), nil)
	if _, _, err := a.Join("a", "a", appendApply); !errors.Is(err, ErrAlreadyParticipant) {
		t.Fatalf("Join of a participant: %v", err)
	}
	if _, _, err := a.Join("x", "b", appendApply); !errors.Is(err, ErrNotParticipant) {
		t.Fatalf("Join by a non-participant: %v", err)
	}
	if _, _, err := a.Join("a", "", appendApply); !errors.Is(err, ErrInvalidNode) {
		t.Fatalf("Join of an invalid node: %v", err)
	}
	// Alone, a's Join folds at once.
	id, f, err := a.Join("a", "b", appendApply)
	if err != nil || len(f) != 1 || f[0].ID != id || f[0].Kind != KindJoin {
		t.Fatalf("Join: %v %v", f, err)
	}
	if got := a.Infimum().Participants; !slices.Equal(got, nodes("a", "b")) {
		t.Fatalf("participants %v", got)
	}
	// With two participants, a Join of c waits for b; c is a projected
	// participant at once and may write.
	if _, _, err := a.Join("a", "c", appendApply); err != nil {
		t.Fatal(err)
	}
	if got := a.Participants(); !slices.Equal(got, nodes("a", "b", "c")) {
		t.Fatalf("projected participants %v", got)
	}
	if _, _, err := a.Join("a", "c", appendApply); !errors.Is(err, ErrAlreadyParticipant) {
		t.Fatalf("second Join of c: %v", err)
	}
	c := a.Clone()
	cid, _, _, err := c.Event("c", []byte("C"), appendApply)
	if err != nil {
		t.Fatal(err)
	}
	b := a.Clone()
	b.Merge(c, appendApply)
	f = b.Acknowledge("b", appendApply)
	// The Join folds (a and b acked); c's event then also needs a.
	if len(f) != 1 || f[0].Kind != KindJoin {
		t.Fatalf("b folded %+v", f)
	}
	a.Merge(b, appendApply)
	f = a.Acknowledge("a", appendApply)
	if len(f) != 1 || f[0].ID != cid || string(a.Infimum().Value) != "C" {
		t.Fatalf("a folded %+v: %s", f, dump(a))
	}
	if got := a.Infimum().Participants; !slices.Equal(got, nodes("a", "b", "c")) {
		t.Fatalf("participants %v", got)
	}
}

func TestUnjoin(t *testing.T) {
	a := New(nodes("a", "b", "c"), nil)
	if _, _, err := a.Unjoin("a", "x", appendApply); !errors.Is(err, ErrNotParticipant) {
		t.Fatalf("Unjoin of a non-participant: %v", err)
	}
	if _, _, err := a.Unjoin("x", "b", appendApply); !errors.Is(err, ErrNotParticipant) {
		t.Fatalf("Unjoin by a non-participant: %v", err)
	}
	b, c := a.Clone(), a.Clone()
	id, _, err := a.Unjoin("a", "c", appendApply)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Participants(); !slices.Equal(got, nodes("a", "b")) {
		t.Fatalf("projected participants %v", got)
	}
	if _, _, _, err := a.Clone().Event("c", nil, appendApply); !errors.Is(err, ErrNotParticipant) {
		t.Fatalf("Event by an unjoined node: %v", err)
	}
	// The Unjoin needs the removed node's ack too.
	b.Merge(a, appendApply)
	b.Acknowledge("b", appendApply)
	a.Merge(b, appendApply)
	if len(a.Pending()) != 1 {
		t.Fatalf("Unjoin folded without c: %s", dump(a))
	}
	c.Merge(a, appendApply)
	f := c.Acknowledge("c", appendApply)
	if len(f) != 1 || f[0].ID != id || f[0].Kind != KindUnjoin {
		t.Fatalf("c folded %+v", f)
	}
	if got := c.Infimum().Participants; !slices.Equal(got, nodes("a", "b")) {
		t.Fatalf("participants %v", got)
	}
}

// A node whose Join has not folded yet may leave, but may not remove others:
// it was not required to see the removed node's earlier deltas.
func TestRemoveByJoiner(t *testing.T) {
	a := New(nodes("a", "b"), nil)
	if _, _, err := a.Join("a", "j", appendApply); err != nil {
		t.Fatal(err)
	}
	j := a.Clone()
	if _, _, err := j.Unjoin("j", "b", appendApply); !errors.Is(err, ErrNotParticipant) {
		t.Fatalf("Unjoin by a joiner: %v", err)
	}
	if _, _, err := j.Eject("j", "b", appendApply); !errors.Is(err, ErrNotParticipant) {
		t.Fatalf("Eject by a joiner: %v", err)
	}
	if _, _, err := j.Unjoin("j", "j", appendApply); err != nil {
		t.Fatalf("joiner leaving: %v", err)
	}
}

// An event by a node that is removed concurrently, with an id above its
// Unjoin, is a renegade: dropped everywhere, never folded.
func TestRenegadeDropped(t *testing.T) {
	a := New(nodes("a", "b"), nil)
	b := a.Clone()
	a.Event("a", []byte("1"), appendApply)
	a.Event("a", []byte("2"), appendApply)
	uid, _, err := a.Unjoin("a", "b", appendApply) // 3.a
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ { // b's counter climbs above a's Unjoin
		b.Event("b", []byte("b"), appendApply)
	}
	b.Merge(a, appendApply)
	var folded []Folded
	folded = append(folded, b.Acknowledge("b", appendApply)...)
	folded = append(folded, a.Merge(b, appendApply)...)
	folded = append(folded, a.Acknowledge("a", appendApply)...)
	b.Merge(a, appendApply)
	for _, f := range folded {
		if f.ID.Node == "b" {
			t.Fatalf("%v folded: 1.b and 2.b are below a's Unjoin but a never saw them; the rest are renegades", f.ID)
		}
	}
	if !bytes.Equal(enc(a), enc(b)) || len(a.Pending()) != 0 {
		t.Fatalf("a %s\nb %s", dump(a), dump(b))
	}
	if a.Infimum().ID != uid || string(a.Infimum().Value) != "12" || hasNode(a.Infimum().Participants, "b") {
		t.Fatalf("infimum %s", dump(a))
	}
	checkState(t, a, appendApply)

	// Merge-time renegade: a restored delta by a node that is not a
	// participant and not being joined is dropped.
	ps, _, err := Restore(Infimum{Participants: nodes("a", "b")}, []Pending{
		{ID: ID{1, "z"}, Delta: Delta{Kind: KindEvent, Payload: []byte("z")}, Acks: nodes("z")},
		{ID: ID{2, "a"}, Delta: Delta{Kind: KindEvent, Payload: []byte("a")}, Acks: nodes("a")},
	}, appendApply)
	if err != nil {
		t.Fatal(err)
	}
	if p := ps.Pending(); len(p) != 1 || p[0].ID != (ID{2, "a"}) {
		t.Fatalf("renegade kept: %s", dump(ps))
	}
}

// Eject lets the survivors fold without the dead node, including deltas
// created concurrently with the Eject that the ejector never saw.
func TestEject(t *testing.T) {
	a := New(nodes("a", "b", "c"), nil)
	b := a.Clone()
	if _, _, err := a.Eject("a", "x", appendApply); !errors.Is(err, ErrNotParticipant) {
		t.Fatalf("Eject of a non-participant: %v", err)
	}
	a.Event("a", []byte("A"), appendApply) // 1.a, never acked by c
	b.Event("b", []byte("B"), appendApply) // 1.b, a does not see it before ejecting
	b.Event("b", []byte("b"), appendApply) // 2.b
	id, _, err := a.Eject("a", "c", appendApply)
	if err != nil {
		t.Fatal(err)
	}
	if id != (ID{2, "a"}) {
		t.Fatalf("eject id %v", id)
	}
	if p := a.Pending(); !slices.Equal(p[0].Acks, nodes("a", "c")) || !slices.Equal(p[1].Acks, nodes("a", "c")) {
		t.Fatalf("eject acks: %s", dump(a))
	}
	b.Merge(a, appendApply)
	fb := b.Acknowledge("b", appendApply)
	a.Merge(b, appendApply)
	fa := a.Acknowledge("a", appendApply)
	b.Merge(a, appendApply)
	if !bytes.Equal(enc(a), enc(b)) || len(a.Pending()) != 0 {
		t.Fatalf("a %s\nb %s", dump(a), dump(b))
	}
	if string(a.Infimum().Value) != "ABb" || !slices.Equal(a.Infimum().Participants, nodes("a", "b")) {
		t.Fatalf("infimum %s", dump(a))
	}
	if len(fb) == 0 || len(fa) == 0 {
		t.Fatalf("nothing folded: a %v b %v", fa, fb)
	}
}

// Deltas by an ejected node that the ejector never saw are lost, the same
// way on every replica, even when they reach some replica.
func TestEjectLosesUnseen(t *testing.T) {
	a := New(nodes("a", "b", "c"), nil)
	b, c := a.Clone(), a.Clone()
	a.Event("a", []byte("1"), appendApply)    // 1.a
	a.Event("a", []byte("2"), appendApply)    // 2.a
	c.Event("c", []byte("seen"), appendApply) // 1.c
	a.Merge(c, appendApply)
	a.Acknowledge("a", appendApply)
	lost, _, _, _ := c.Event("c", []byte("lost"), appendApply) // 2.c
	eject, _, err := a.Eject("a", "c", appendApply)            // 3.a
	if err != nil {
		t.Fatal(err)
	}
	if lost.Compare(eject) > 0 {
		t.Fatalf("test setup: %v above %v", lost, eject)
	}
	// b hears from the dead c first, then from a.
	b.Merge(c, appendApply)
	b.Acknowledge("b", appendApply)
	if len(b.Pending()) != 2 {
		t.Fatalf("b: %s", dump(b))
	}
	b.Merge(a, appendApply)
	for _, p := range b.Pending() {
		if p.ID == lost {
			t.Fatalf("lost event kept: %s", dump(b))
		}
	}
	f := b.Acknowledge("b", appendApply)
	a.Merge(b, appendApply)
	// A late copy of c's state reaches a: still lost.
	a.Merge(c, appendApply)
	a.Acknowledge("a", appendApply)
	b.Merge(a, appendApply)
	if !bytes.Equal(enc(a), enc(b)) || string(a.Infimum().Value) != "1seen2" || len(a.Pending()) != 0 {
		t.Fatalf("a %s\nb %s", dump(a), dump(b))
	}
	if len(f) != 4 || f[1].ID != (ID{1, "c"}) || f[3].ID != eject {
		t.Fatalf("b folded %+v", f)
	}
}

func TestAcknowledgeAndDivergent(t *testing.T) {
	a := New(nodes("a", "b", "c"), nil)
	b := a.Clone()
	a.Event("a", []byte("x"), appendApply)
	if got := a.Divergent(); !slices.Equal(got, nodes("b", "c")) {
		t.Fatalf("Divergent = %v", got)
	}
	b.Merge(a, appendApply)
	if got := b.Divergent(); !slices.Equal(got, nodes("b", "c")) {
		t.Fatalf("b Divergent = %v", got)
	}
	b.Acknowledge("b", appendApply)
	a.Merge(b, appendApply)
	if got := a.Divergent(); !slices.Equal(got, nodes("c")) {
		t.Fatalf("Divergent = %v", got)
	}
	if f := a.Acknowledge("", appendApply); f != nil {
		t.Fatalf("Acknowledge with an invalid node: %v", f)
	}
}

func TestMergePatch(t *testing.T) {
	a := New(nodes("a", "b"), nil)
	b := a.Clone()
	a.Event("a", []byte("1"), appendApply)
	a.Event("a", []byte("2"), appendApply)
	p := a.PatchFor("b")
	if len(p.Events) != 2 || p.Events[0].Delta.Kind != KindEvent {
		t.Fatalf("patch %+v", p)
	}
	if f, err := b.MergePatch("b", p, appendApply); err != nil || len(f) != 0 {
		t.Fatalf("MergePatch: %v %v", f, err)
	}
	f := b.Acknowledge("b", appendApply)
	if len(f) != 2 {
		t.Fatalf("b folded %v", f)
	}
	b.Event("b", []byte("3"), appendApply)
	// b's patch for a: infimum 2.a, one pending delta a has not acked.
	p = b.PatchFor("a")
	if p.Infimum != (ID{2, "a"}) || len(p.Events) != 1 {
		t.Fatalf("patch %+v", p)
	}
	f, err := a.MergePatch("a", p, appendApply)
	if err != nil || len(f) != 2 || f[0].ID != (ID{1, "a"}) || string(f[1].Output) != "2" {
		t.Fatalf("a folded %+v, %v", f, err)
	}
	a.Acknowledge("a", appendApply)
	// a's patch for b carries 3.b ack-only: b holds it already.
	p = a.PatchFor("b")
	if len(p.Events) != 0 {
		t.Fatalf("patch %+v", p)
	}
	pa := a.Clone()
	pa.Event("a", []byte("4"), appendApply)
	p = pa.PatchFor("b")
	// b acked nothing of pa's pending 3.b? It created it: ack-only.
	if len(p.Events) != 1 || p.Events[0].Delta.Kind != KindEvent {
		t.Fatalf("patch %+v", p)
	}
	if _, err := b.MergePatch("b", p, appendApply); err != nil {
		t.Fatal(err)
	}
	b.Acknowledge("b", appendApply)
	pa.Merge(b, appendApply)
	if !bytes.Equal(enc(pa), enc(b)) || string(b.Infimum().Value) != "1234" {
		t.Fatalf("pa %s\nb %s", dump(pa), dump(b))
	}
}

func TestMergePatchAckOnly(t *testing.T) {
	a := New(nodes("a", "b", "c"), nil)
	b := a.Clone()
	a.Event("a", []byte("1"), appendApply)
	b.Merge(a, appendApply)
	b.Acknowledge("b", appendApply)
	p := b.PatchFor("a")
	if len(p.Events) != 1 || p.Events[0].Delta.Kind != 0 || !slices.Equal(p.Events[0].Acks, nodes("a", "b")) {
		t.Fatalf("patch %+v", p)
	}
	if _, err := a.MergePatch("a", p, appendApply); err != nil {
		t.Fatal(err)
	}
	if got := a.Pending()[0].Acks; !slices.Equal(got, nodes("a", "b")) {
		t.Fatalf("acks %v", got)
	}
	// Ack-only entries for deltas we do not hold are ignored.
	c := New(nodes("a", "b", "c"), nil)
	if _, err := c.MergePatch("c", p, appendApply); err != nil || len(c.Pending()) != 0 {
		t.Fatalf("c: %v %s", err, dump(c))
	}
}

func TestMergePatchNeedState(t *testing.T) {
	a := New(nodes("a", "b"), nil)
	b := a.Clone()
	a.Event("a", []byte("1"), appendApply)
	b.Merge(a, appendApply)
	b.Acknowledge("b", appendApply) // b folds 1.a
	a.Event("a", []byte("2"), appendApply)

	// A placeholder that was never given a full state.
	empty := New(nil, nil)
	if _, err := empty.MergePatch("c", b.PatchFor("c"), appendApply); !errors.Is(err, ErrNeedState) {
		t.Fatalf("placeholder: %v", err)
	}
	// c never saw 1.a, so it cannot reach b's infimum from a patch.
	c := New(nodes("a", "b"), nil)
	before := enc(c)
	if _, err := c.MergePatch("a", b.PatchFor("a"), appendApply); !errors.Is(err, ErrNeedState) {
		t.Fatalf("unreachable infimum: %v", err)
	}
	if !bytes.Equal(before, enc(c)) {
		t.Fatalf("state changed")
	}
	c.Merge(b, appendApply)
	if _, err := c.MergePatch("a", a.PatchFor("a"), appendApply); err != nil {
		t.Fatalf("after the full state: %v", err)
	}
	// A node that is not an infimum participant merges, then asks.
	d := New(nodes("a", "b"), nil)
	if _, err := d.MergePatch("d", a.PatchFor("d"), appendApply); !errors.Is(err, ErrNeedState) {
		t.Fatalf("non-participant: %v", err)
	}
	if len(d.Pending()) != 2 {
		t.Fatalf("non-participant merged nothing: %s", dump(d))
	}
	// Invalid patches are rejected untouched.
	bad := a.PatchFor("b")
	bad.Events = []Pending{bad.Events[1], bad.Events[0]}
	if _, err := b.MergePatch("b", bad, appendApply); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unsorted patch: %v", err)
	}
}

func TestRestore(t *testing.T) {
	a := New(nodes("a", "b", "c"), []byte("v"))
	b := a.Clone()
	a.Event("a", []byte("1"), appendApply)
	a.Join("a", "d", appendApply)
	b.Event("b", []byte("2"), appendApply)
	a.Merge(b, appendApply)
	want := enc(a)
	pend := slices.Clone(a.Pending())
	slices.Reverse(pend)
	r, f, err := Restore(a.Infimum(), pend, appendApply)
	if err != nil || len(f) != 0 {
		t.Fatalf("Restore: %v %v", f, err)
	}
	if got := enc(r); !bytes.Equal(got, want) {
		t.Fatalf("restored %s, want %s", dump(r), dump(a))
	}
	// Restore reduces: with every ack present, everything folds.
	full := slices.Clone(a.Pending())
	for i := range full {
		full[i].Acks = nodes("a", "b", "c")
	}
	r, f, err = Restore(a.Infimum(), full, appendApply)
	if err != nil || len(f) != 3 || len(r.Pending()) != 0 || string(r.Infimum().Value) != "v12" {
		t.Fatalf("Restore folded %v, %v: %s", f, err, dump(r))
	}

	ok := Pending{ID: ID{5, "a"}, Delta: Delta{Kind: KindEvent, Payload: []byte("p")}, Acks: nodes("a")}
	inf := Infimum{ID: ID{3, "a"}, Participants: nodes("a", "b")}
	for name, tc := range map[string]struct {
		inf  Infimum
		pend []Pending
	}{
		"unsorted participants":  {Infimum{Participants: nodes("b", "a")}, nil},
		"duplicate participants": {Infimum{Participants: nodes("a", "a")}, nil},
		"empty participant":      {Infimum{Participants: nodes("")}, nil},
		"bottom with node":       {Infimum{ID: ID{0, "a"}}, nil},
		"id without node":        {Infimum{ID: ID{3, ""}}, nil},
		"exhausted counter":      {Infimum{ID: ID{math.MaxUint64, "a"}}, nil},
		"pending below":          {inf, []Pending{{ID: ID{2, "a"}, Delta: ok.Delta, Acks: ok.Acks}}},
		"pending at":             {inf, []Pending{{ID: inf.ID, Delta: ok.Delta, Acks: ok.Acks}}},
		"duplicate ids":          {inf, []Pending{ok, ok}},
		"bad kind":               {inf, []Pending{{ID: ok.ID, Delta: Delta{Kind: 7}, Acks: ok.Acks}}},
		"ack-only":               {inf, []Pending{{ID: ok.ID, Acks: ok.Acks}}},
		"event with node":        {inf, []Pending{{ID: ok.ID, Delta: Delta{Kind: KindEvent, Node: "a"}, Acks: ok.Acks}}},
		"join with payload":      {inf, []Pending{{ID: ok.ID, Delta: Delta{Kind: KindJoin, Node: "c", Payload: []byte("x")}, Acks: ok.Acks}}},
		"join without node":      {inf, []Pending{{ID: ok.ID, Delta: Delta{Kind: KindJoin}, Acks: ok.Acks}}},
		"unsorted acks":          {inf, []Pending{{ID: ok.ID, Delta: ok.Delta, Acks: nodes("b", "a")}}},
	} {
		if _, _, err := Restore(tc.inf, tc.pend, appendApply); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Restore error %v, want ErrCorrupt", name, err)
		}
	}
}

func TestCloneIndependent(t *testing.T) {
	a := New(nodes("a", "b"), nil)
	a.Event("a", []byte("1"), appendApply)
	c := a.Clone()
	before := enc(a)
	c.Event("a", []byte("2"), appendApply)
	c.Acknowledge("b", appendApply)
	other := New(nodes("a", "b"), nil)
	other.Event("b", []byte("3"), appendApply)
	c.Merge(other, appendApply)
	if !bytes.Equal(before, enc(a)) {
		t.Fatalf("mutating the clone changed the original: %s", dump(a))
	}
	a.Acknowledge("b", appendApply)
	if len(c.Pending()) != 0 || c.Infimum().ID != (ID{2, "a"}) {
		t.Fatalf("clone: %s", dump(c))
	}
}

// Odd input: two states with the same infimum id but different contents, or
// two different deltas under one id, merge the same in both orders.
func TestMergeTieBreaks(t *testing.T) {
	x := New(nodes("a", "b"), []byte("x"))
	y := New(nodes("a", "b"), []byte("y"))
	xy, yx := x.Clone(), y.Clone()
	xy.Merge(y, appendApply)
	yx.Merge(x, appendApply)
	if !bytes.Equal(enc(xy), enc(yx)) || string(xy.Infimum().Value) != "y" {
		t.Fatalf("infimum tie: %s vs %s", dump(xy), dump(yx))
	}
	p := func(payload string, acks ...string) []Pending {
		return []Pending{{ID: ID{1, "a"}, Delta: Delta{Kind: KindEvent, Payload: []byte(payload)}, Acks: nodes(acks...)}}
	}
	s1, _, _ := Restore(Infimum{Participants: nodes("a", "b", "c")}, p("p", "a"), appendApply)
	s2, _, _ := Restore(Infimum{Participants: nodes("a", "b", "c")}, p("q", "b"), appendApply)
	m1, m2 := s1.Clone(), s2.Clone()
	m1.Merge(s2, appendApply)
	m2.Merge(s1, appendApply)
	if !bytes.Equal(enc(m1), enc(m2)) || string(m1.Pending()[0].Delta.Payload) != "q" || len(m1.Pending()[0].Acks) != 2 {
		t.Fatalf("delta tie: %s vs %s", dump(m1), dump(m2))
	}
}

// Merging a state into itself or a copy of itself changes nothing.
func TestMergeIdempotent(t *testing.T) {
	a := New(nodes("a", "b"), nil)
	a.Event("a", []byte("1"), appendApply)
	before := enc(a)
	if f := a.Merge(a, appendApply); f != nil || !bytes.Equal(before, enc(a)) {
		t.Fatalf("self merge changed the state")
	}
	if f := a.Merge(a.Clone(), appendApply); f != nil || !bytes.Equal(before, enc(a)) {
		t.Fatalf("merging a copy changed the state")
	}
}

// An apply that appends to its input must not corrupt other values: the
// package hands it capacity-capped slices.
func TestApplyAppendsToInput(t *testing.T) {
	grow := func(state []byte, _ ID, payload []byte) ([]byte, []byte, error) {
		return append(state, payload...), nil, nil
	}
	base := make([]byte, 1, 64)
	base[0] = 'v'
	a := New(nodes("a", "b"), base)
	a.Event("a", []byte("1"), grow)
	a.Event("a", []byte("2"), grow)
	b := New(nodes("a", "b"), base)
	b.Event("b", []byte("3"), grow)
	a.Merge(b, grow)
	if got := a.Projected(grow); string(got) != "v132" {
		t.Fatalf("projected %q", got)
	}
	if string(base[:cap(base)][1:2]) != "\x00" {
		t.Fatalf("apply wrote into the caller's value")
	}
}

// TestSoleEventMatchesGeneral: on a node that is the only participant with
// nothing pending, Event's short path leaves the power state encoded
// byte for byte as the general path does and returns the same id, output,
// folds and errors, over random events (some rejected, some empty).
func TestSoleEventMatchesGeneral(t *testing.T) {
	forSeeds(t, 8, func(t *testing.T, rng *rand.Rand) {
		fast, general := New(nodes("a"), nil), New(nodes("a"), nil)
		for i := 0; i < 300; i++ {
			payload := make([]byte, rng.IntN(4))
			for j := range payload {
				payload[j] = byte(rng.IntN(256))
			}
			if len(fast.pend) != 0 || len(fast.inf.Participants) != 1 {
				t.Fatalf("event %d: the short path no longer applies: %s", i, dump(fast))
			}
			id1, out1, f1, err1 := fast.soleEvent("a", payload, hashApply)
			id2, out2, f2, err2 := general.event("a", payload, hashApply)
			if id1 != id2 || !bytes.Equal(out1, out2) || !errors.Is(err1, err2) || !errors.Is(err2, err1) {
				t.Fatalf("event %d: short (%v %x %v), general (%v %x %v)", i, id1, out1, err1, id2, out2, err2)
			}
			if fmt.Sprint(f1) != fmt.Sprint(f2) {
				t.Fatalf("event %d: folded %+v, general %+v", i, f1, f2)
			}
			if !bytes.Equal(enc(fast), enc(general)) || fast.pend != nil || fast.proj != nil || general.pend != nil || general.proj != nil {
				t.Fatalf("event %d: short %s\\ngeneral %s", i, dump(fast), dump(general))
			}
		}
		checkState(t, fast, hashApply)
	})
}
