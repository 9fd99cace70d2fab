// Package crdt implements Legion's replicated "power state": the CRDT that
// every partition key holds, after the PowerState of the Haskell legion
// framework.
//
// # Model
//
// A power state is an infimum plus a set of pending deltas.
//
//   - The infimum (state id, participant set, state value) is the value every
//     participant has agreed on.
//   - Each pending delta (an Event carrying an opaque payload, a Join of a
//     node or an Unjoin of a node) is keyed by a state id and carries the set
//     of nodes that have acknowledged ("acked") it.
//
// State ids are Lamport clocks: a node creating a delta gives it one more
// than the largest counter it knows, paired with its own node id, so a delta
// created after a node has seen another delta always sorts after it.
//
// Merging two power states keeps the higher infimum, unions the pending
// deltas and their acks, drops what can never fold, and then reduces:
// while every infimum participant has acknowledged the smallest pending
// delta, it is folded into the infimum (Event: the caller's ApplyFunc runs on
// the infimum value; Join/Unjoin: the participant set changes) and the
// infimum id becomes that delta's id. Because a participant acknowledges a
// delta only after it has seen it, and every delta it created earlier travels
// with that acknowledgement, no delta with a smaller id can appear once a
// delta has folded: every replica folds the same deltas in the same order and
// computes the same final outputs, whatever order it heard them in.
//
// Deltas are dropped rather than folded when they can never take effect:
// deltas at or below the infimum, deltas by a node that is not a participant
// when they would fold ("renegades": a node that was removed concurrently with
// its own writes), and deltas by a removed node that the remover had not seen
// when it removed it (see Unjoin and Eject). Dropped deltas are not reported
// as Folded; the creator can tell that its delta is lost when the infimum id
// passes it, or when the creator is no longer an infimum participant.
//
// # Membership changes
//
// Joins may happen concurrently with anything; a joining node is a projected
// participant (it may write) as soon as it holds its pending Join. Removals
// (an Unjoin of another node, or an Eject) are cluster decisions with two
// rules: the remover must be an infimum participant (its own Join has
// folded), and the cluster must not remove a node while an Unjoin that node
// created for someone else is still pending. Within those rules a participant
// p is excused from acknowledging the deltas below a pending Unjoin of p
// (created by p itself or by an infimum participant), so a dead node never
// blocks the survivors once it is ejected: its deltas that the remover had
// seen fold, the others are dropped everywhere.
//
// # Purity
//
// The package does no IO, starts no goroutines, reads no clock, uses no
// randomness, global state or logging: every result is a function of the
// arguments. A PowerState is not safe for concurrent use; the caller
// serializes access to one PowerState.
//
// # Memory sharing
//
// Values, payloads, participant sets and ack sets are treated as immutable
// once they are inside a PowerState: the package never writes into them, so
// they are shared freely between clones, merged states and the slices handed
// back by accessors. Callers must not modify any slice they get from this
// package, nor any slice they hand to it and which the documentation says is
// retained.
//
// # Performance
//
// The single-node write path (one participant; an Event is created and folds
// at once) calls the ApplyFunc exactly once: each pending event caches the
// input slice it was applied to together with its result, and folding reuses
// that result when the event's input is the very same slice (same backing
// array and length). The cache validates itself by that identity, so any
// merge that inserts deltas before an event, or any change of the infimum,
// makes the affected entries recompute.
package crdt
