package legion

import (
	"bytes"
	"crypto/sha1"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/legiondb/legion/crdt"
	"github.com/legiondb/legion/scripting"
)

var detSeed = flag.Uint64("det.seed", 0, "replay one seed of TestDeterminismAcrossReplicas")

// detHandler exercises everything that could leak nondeterminism: pairs
// order over string keys, math.random, os.time, cjson.encode of tables with
// string keys, and ctx.
const detHandler = `
function apply(event, state, ctx)
  state = state or { seen = {}, total = 0, rolls = {} }
  state.seen[event] = (state.seen[event] or 0) + 1
  local parts = {}
  for k, v in pairs(state.seen) do parts[#parts + 1] = k .. "=" .. v end
  local roll = math.random(1, 1000000)
  state.rolls[#state.rolls + 1] = roll
  state.total = state.total + roll + math.random()
  state.last = os.time()
  state.digest = cjson.encode({ seen = state.seen, n = #state.rolls, at = ctx.time, id = ctx.id, key = ctx.key })
  return table.concat(parts, ",") .. "|" .. roll, state
end
`

// replicaApply is what a replica of the runtime folds events with: the
// event's own handler version and time, and only deterministic limits.
func replicaApply(t testing.TB, e *scripting.Engine, h *scripting.Handler, key []byte) crdt.ApplyFunc {
	return func(state []byte, id crdt.ID, payload []byte) ([]byte, []byte, error) {
		ev, err := decodeEvent(payload)
		if err != nil {
			t.Fatalf("payload: %v", err)
		}
		if shaHex(ev.sha) != h.SHA() {
			t.Fatalf("event of handler %s, have %s", shaHex(ev.sha), h.SHA())
		}
		return e.Apply(h, state, ev.data, scripting.Call{Key: key, Time: ev.time, ID: id.String()})
	}
}

// TestDeterminismAcrossReplicas runs three replicas, each with its own
// scripting engine (as on three machines; two with a state cache), that accept events and exchange
// power states through a network that delays, reorders and duplicates. They
// must reach identical bytes and identical final outputs, equal to a
// sequential replay of the event log through yet another fresh engine.
func TestDeterminismAcrossReplicas(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	if *detSeed != 0 {
		seeds = []uint64{*detSeed}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { determinismRun(t, seed) })
	}
}

func determinismRun(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0))
	key := []byte("shared")
	nodes := []crdt.NodeID{"a", "b", "c"}
	type replica struct {
		ps    *crdt.PowerState
		apply crdt.ApplyFunc
		folds map[crdt.ID][]byte
	}
	var handler *scripting.Handler
	reps := make([]*replica, len(nodes))
	var cached []*scripting.Engine
	for i := range nodes {
		e := scripting.NewEngine(scripting.DefaultLimits())
		defer e.Close()
		if i > 0 {
			// Replays on these two start from states their cache holds
			// as well as from older ones; the first decodes every time.
			e.SetStateCache(1 << 20)
			cached = append(cached, e)
		}
		h, err := e.Load([]byte(detHandler))
		if err != nil {
			t.Fatal(err)
		}
		handler = h
		reps[i] = &replica{
			ps:    crdt.New(nodes, scripting.NilValue()),
			apply: replicaApply(t, e, h, key),
			folds: map[crdt.ID][]byte{},
		}
	}
	sha, _ := parseSHA(handler.SHA())
	record := func(r *replica, fs []crdt.Folded) {
		for _, f := range fs {
			if f.Err != nil {
				t.Fatalf("seed %d: fold %s failed: %v", seed, f.ID, f.Err)
			}
			r.folds[f.ID] = f.Output
		}
	}
	type msg struct {
		to   int
		data []byte
	}
	var net []msg
	payloads := map[crdt.ID][]byte{}
	words := []string{"alpha", "beta", "gamma", "delta", "epsilon"}
	for step := 0; step < 300; step++ {
		switch x := rng.IntN(10); {
		case x < 4: // an event accepted by a random replica
			i := rng.IntN(len(reps))
			payload := event{sha: sha, time: 1_700_000_000_000 + int64(step)*997, data: []byte(words[rng.IntN(len(words))])}.appendBinary(nil)
			id, _, folded, err := reps[i].ps.Event(nodes[i], payload, reps[i].apply)
			if err != nil {
				t.Fatalf("seed %d: event: %v", seed, err)
			}
			payloads[id] = payload
			record(reps[i], folded)
		case x < 7: // a replica ships its state to a peer
			from, to := rng.IntN(len(reps)), rng.IntN(len(reps))
			if from != to {
				net = append(net, msg{to, reps[from].ps.AppendBinary(nil)})
			}
		default: // the network delivers something, maybe twice, in any order
			if len(net) == 0 {
				continue
			}
			k := rng.IntN(len(net))
			m := net[k]
			if rng.IntN(4) != 0 {
				net = append(net[:k], net[k+1:]...)
			}
			other, err := crdt.Decode(m.data)
			if err != nil {
				t.Fatalf("seed %d: decode: %v", seed, err)
			}
			r := reps[m.to]
			record(r, r.ps.Merge(other, r.apply))
			record(r, r.ps.Acknowledge(nodes[m.to], r.apply))
		}
	}
	// Heal: everyone exchanges with everyone until nothing is pending.
	for round := 0; round < 10; round++ {
		for i := range reps {
			for j := range reps {
				if i == j {
					continue
				}
				other, _ := crdt.Decode(reps[j].ps.AppendBinary(nil))
				record(reps[i], reps[i].ps.Merge(other, reps[i].apply))
				record(reps[i], reps[i].ps.Acknowledge(nodes[i], reps[i].apply))
			}
		}
	}
	want := reps[0].ps.AppendBinary(nil)
	for i, r := range reps {
		if len(r.ps.Pending()) != 0 {
			t.Fatalf("seed %d: replica %s still has %d pending", seed, nodes[i], len(r.ps.Pending()))
		}
		if got := r.ps.AppendBinary(nil); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: replica %s diverged", seed, nodes[i])
		}
	}
	for id := range payloads {
		out0, ok := reps[0].folds[id]
		if !ok {
			t.Fatalf("seed %d: event %s never folded on a", seed, id)
		}
		for i, r := range reps[1:] {
			if !bytes.Equal(r.folds[id], out0) {
				t.Fatalf("seed %d: event %s: output on %s differs", seed, id, nodes[i+1])
			}
		}
	}
	// A sequential replay of the log, in id order, on a fresh engine.
	e := scripting.NewEngine(scripting.DefaultLimits())
	defer e.Close()
	h, _ := e.Load([]byte(detHandler))
	inf := reps[0].ps.Infimum()
	var pending []crdt.Pending
	for id, p := range payloads {
		pending = append(pending, crdt.Pending{ID: id, Delta: crdt.Delta{Kind: crdt.KindEvent, Payload: p}, Acks: []crdt.NodeID{"a", "b", "c"}})
	}
	slices.SortFunc(pending, func(a, b crdt.Pending) int { return a.ID.Compare(b.ID) })
	replayed, folded, err := crdt.Restore(crdt.Infimum{Participants: nodes, Value: scripting.NilValue()}, pending, replicaApply(t, e, h, key))
	if err != nil {
		t.Fatalf("seed %d: restore: %v", seed, err)
	}
	if !bytes.Equal(replayed.Infimum().Value, inf.Value) {
		t.Fatalf("seed %d: the sequential replay reached a different state", seed)
	}
	for _, f := range folded {
		if !bytes.Equal(f.Output, reps[0].folds[f.ID]) {
			t.Fatalf("seed %d: replayed output of %s differs", seed, f.ID)
		}
	}
	hits, handoffs := int64(0), int64(0)
	for _, e := range cached {
		st := e.StateCacheStats()
		hits += st.Hits
		handoffs += st.Handoffs
	}
	// The state starts small (handed from one apply to the next) and
	// grows past the cache's threshold.
	if hits == 0 || handoffs == 0 {
		t.Fatalf("seed %d: the state cache was not used on large states (%d hits) and small ones (%d handoffs)", seed, hits, handoffs)
	}
	t.Logf("seed %d: %d events, state sha1 %x, %d state cache hits, %d handoffs", seed, len(payloads), sha1.Sum(inf.Value), hits, handoffs)
}
