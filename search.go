package legion

import (
	"encoding/json"
	"fmt"

	"github.com/legiondb/legion/crdt"
	"github.com/legiondb/legion/index"
	"github.com/legiondb/legion/scripting"
	"github.com/legiondb/legion/store"
)

// SearchQuery is one scroll of the tag index. Without After, records start
// at (Tag, ""); with it, strictly after (Tag, AfterKey). Count (default 10,
// at most 100000) bounds the records; Exact stops at the first record whose
// tag differs from Tag.
type SearchQuery struct {
	Tag      []byte
	After    bool
	AfterKey []byte
	Count    int
	Exact    bool
}

// Hit is one (tag, key) record of the index.
type Hit = index.Hit

// Search returns index records in (tag, key) order from one consistent
// view of the store.
func (db *DB) Search(q SearchQuery) ([]Hit, error) {
	if err := db.enter(); err != nil {
		return nil, err
	}
	defer db.leave()
	return index.Search(db.store, q.query())
}

// SearchFunc is Search calling fn with each record instead of returning
// them, and returning how many: nothing is copied. tag and key are valid
// only during the call, and fn must not call the DB. After an error, fn
// may have seen some of the records.
func (db *DB) SearchFunc(q SearchQuery, fn func(tag, key []byte)) (int, error) {
	if err := db.enter(); err != nil {
		return 0, err
	}
	defer db.leave()
	v := index.NewView(db.store)
	n, err := v.Each(q.query(), fn)
	if cerr := v.Close(); err == nil {
		err = cerr
	}
	return n, err
}

func (q SearchQuery) query() index.Query {
	return index.Query{Tag: q.Tag, After: q.After, AfterKey: q.AfterKey, Count: q.Count, Exact: q.Exact}
}

// SearchView answers searches from one view of the store, taken at its
// first search, so that many searches pay for one iterator. It sees no
// write made after that first search: use one only for searches that are
// concurrent with each other, such as those a client pipelined together
// (each was sent before the view was taken), and close it before anything
// else. A SearchView is used by one goroutine; Close must be called, and
// DB.Close waits for it.
type SearchView struct {
	db      *DB
	v       *index.View
	entered bool
}

// NewSearchView returns a SearchView; it holds nothing until its first
// search.
func (db *DB) NewSearchView() *SearchView { return &SearchView{db: db} }

// Search is DB.Search on the view.
func (sv *SearchView) Search(q SearchQuery) ([]Hit, error) {
	v, err := sv.view()
	if err != nil {
		return nil, err
	}
	return v.Search(q.query())
}

// SearchFunc is DB.SearchFunc on the view.
func (sv *SearchView) SearchFunc(q SearchQuery, fn func(tag, key []byte)) (int, error) {
	v, err := sv.view()
	if err != nil {
		return 0, err
	}
	return v.Each(q.query(), fn)
}

// view takes the view at the first search.
func (sv *SearchView) view() (*index.View, error) {
	if !sv.entered {
		if err := sv.db.enter(); err != nil {
			return nil, err
		}
		sv.entered = true
		sv.v = index.NewView(sv.db.store)
	}
	return sv.v, nil
}

// Active reports whether the view holds an iterator: it has searched since
// it was made or last closed.
func (sv *SearchView) Active() bool { return sv.entered }

// Close releases the view. It may be called more than once; the next
// search takes a new view.
func (sv *SearchView) Close() error {
	if !sv.entered {
		return nil
	}
	err := sv.v.Close()
	sv.v = nil
	sv.entered = false
	sv.db.leave()
	return err
}

// Inspect returns the power state of key as JSON: the infimum (id,
// participants, state), the pending deltas with their acks and handler
// SHA, the divergent peers, and the current tags. ok is false if the key
// was never written.
func (db *DB) Inspect(key []byte) (out []byte, ok bool, err error) {
	if err := db.enter(); err != nil {
		return nil, false, err
	}
	defer db.leave()
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	mu := db.lockKey(key)
	defer mu.Unlock()
	p, err := db.load(store.Slot(key), key)
	if err != nil || !p.exists {
		return nil, false, err
	}
	inf := p.ps.Infimum()
	state, err := scripting.AppendJSON(nil, inf.Value)
	if err != nil {
		return nil, false, err
	}
	type pendingJSON struct {
		ID    string        `json:"id"`
		Kind  string        `json:"kind"`
		Node  string        `json:"node,omitempty"`
		Event *string       `json:"event,omitempty"`
		SHA   string        `json:"sha,omitempty"`
		Time  int64         `json:"time,omitempty"`
		Acks  []crdt.NodeID `json:"acks"`
	}
	doc := struct {
		Key     string `json:"key"`
		Slot    uint16 `json:"slot"`
		Infimum struct {
			ID           string          `json:"id"`
			Participants []crdt.NodeID   `json:"participants"`
			State        json.RawMessage `json:"state"`
		} `json:"infimum"`
		Pending   []pendingJSON `json:"pending"`
		Divergent []crdt.NodeID `json:"divergent"`
		Tags      []string      `json:"tags"`
		TagsSHA   string        `json:"tags_sha"`
		LogLength int           `json:"log_length"`
	}{Key: string(key), Slot: p.slot, Pending: []pendingJSON{}, Tags: p.tags.Tags, LogLength: len(p.log)}
	doc.Infimum.ID = inf.ID.String()
	doc.Infimum.Participants = inf.Participants
	doc.Infimum.State = state
	for _, d := range p.ps.Pending() {
		pj := pendingJSON{ID: d.ID.String(), Kind: d.Delta.Kind.String(), Node: string(d.Delta.Node), Acks: d.Acks}
		if d.Delta.Kind == crdt.KindEvent {
			ev, err := decodeEvent(d.Delta.Payload)
			if err != nil {
				return nil, false, fmt.Errorf("pending %s: %w", d.ID, err)
			}
			s := string(ev.data)
			pj.Event, pj.SHA, pj.Time = &s, shaHex(ev.sha), ev.time
		}
		doc.Pending = append(doc.Pending, pj)
	}
	doc.Divergent = p.ps.Divergent()
	if doc.Divergent == nil {
		doc.Divergent = []crdt.NodeID{}
	}
	if doc.Tags == nil {
		doc.Tags = []string{}
	}
	if p.tags.SHA != ([20]byte{}) {
		doc.TagsSHA = shaHex(p.tags.SHA)
	}
	out, err = json.Marshal(doc)
	return out, err == nil, err
}
