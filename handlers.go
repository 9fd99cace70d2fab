package legion

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/legiondb/legion/scripting"
)

// handler is a compiled handler version known to this node.
type handler struct {
	sha      [20]byte
	h        *scripting.Handler
	loadedAt int64 // ms since the epoch of its first SCRIPT LOAD
}

// handlerRegistry holds the compiled handler versions and the active one.
// Versions are compiled lazily from the store when a replay needs them.
type handlerRegistry struct {
	mu     sync.Mutex // guards bySHA and serializes activations
	bySHA  map[[20]byte]*handler
	active atomic.Pointer[handler]
	// inUse is held shared by every Apply from reading the active handler
	// until its batch is applied, and exclusively by FlushHandlers, so a
	// version is never dropped while a write that references it is in flight.
	inUse sync.RWMutex
}

func (r *handlerRegistry) init() { r.bySHA = make(map[[20]byte]*handler) }

const handlerFormat = 1

func encodeHandler(loadedAt int64, src []byte) []byte {
	b := []byte{handlerFormat}
	b = binary.AppendVarint(b, loadedAt)
	return append(b, src...)
}

func decodeHandler(b []byte) (loadedAt int64, src []byte, err error) {
	if len(b) < 2 || b[0] != handlerFormat {
		return 0, nil, fmt.Errorf("%w: handler record header", ErrCorrupt)
	}
	t, n := binary.Varint(b[1:])
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: handler record time", ErrCorrupt)
	}
	return t, b[1+n:], nil
}

// LoadScript compiles and validates a handler, stores it durably, and makes
// it the active handler. It returns the handler's SHA1 in hex. A handler
// that does not compile or has no apply function is refused and the active
// handler stays as it was.
func (db *DB) LoadScript(src []byte) (string, error) {
	if err := db.enter(); err != nil {
		return "", err
	}
	defer db.leave()
	h, err := db.engine.Load(src)
	if err != nil {
		return "", err
	}
	sha, err := parseSHA(h.SHA())
	if err != nil {
		return "", err
	}
	return h.SHA(), db.activate(sha, h, src)
}

// activate stores the handler if new and makes it active; a change of
// active handler starts a background re-index.
func (db *DB) activate(sha [20]byte, h *scripting.Handler, src []byte) error {
	if err := db.activateLocked(sha, h, src); err != nil {
		return err
	}
	db.reindex.wake()
	return nil
}

func (db *DB) activateLocked(sha [20]byte, h *scripting.Handler, src []byte) error {
	r := &db.handlers
	r.mu.Lock()
	defer r.mu.Unlock()
	b := db.store.NewBatch()
	defer b.Close()
	entry := r.bySHA[sha]
	if entry == nil {
		stored, ok, err := db.store.GetHandler(sha)
		if err != nil {
			return err
		}
		loadedAt := db.cfg.Now().UnixMilli()
		if ok {
			if loadedAt, _, err = decodeHandler(stored); err != nil {
				return err
			}
		} else {
			b.PutHandler(sha, encodeHandler(loadedAt, src))
		}
		entry = &handler{sha: sha, h: h, loadedAt: loadedAt}
	}
	b.SetMeta("active-handler", sha[:])
	if err := b.Commit(); err != nil {
		return err
	}
	r.bySHA[sha] = entry
	r.active.Store(entry)
	return nil
}

// handler returns the compiled handler version sha, compiling it from the
// store on first use.
func (db *DB) handler(sha [20]byte) (*handler, error) {
	r := &db.handlers
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.bySHA[sha]; e != nil {
		return e, nil
	}
	rec, ok, err := db.store.GetHandler(sha)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownHandler, shaHex(sha))
	}
	loadedAt, src, err := decodeHandler(rec)
	if err != nil {
		return nil, err
	}
	h, err := db.engine.Load(src)
	if err != nil {
		return nil, fmt.Errorf("legion: stored handler %s no longer loads: %w", shaHex(sha), err)
	}
	e := &handler{sha: sha, h: h, loadedAt: loadedAt}
	r.bySHA[sha] = e
	return e, nil
}

// loadActiveHandler restores the active handler at start-up.
func (db *DB) loadActiveHandler() error {
	v, ok, err := db.store.GetMeta("active-handler")
	if err != nil || !ok {
		return err
	}
	if len(v) != 20 {
		return fmt.Errorf("%w: active handler record of %d bytes", ErrCorrupt, len(v))
	}
	e, err := db.handler([20]byte(v))
	if err != nil {
		return err
	}
	db.handlers.active.Store(e)
	return nil
}

// activeHandler returns the active handler or ErrNoHandler.
func (db *DB) activeHandler() (*handler, error) {
	if e := db.handlers.active.Load(); e != nil {
		return e, nil
	}
	return nil, ErrNoHandler
}

// HandlerInfo describes a stored handler version.
type HandlerInfo struct {
	SHA      string
	LoadedAt int64 // ms since the epoch
	Active   bool
	// References counts the stored deltas (pending events, or folded
	// events not yet compacted into a snapshot) that replay with this
	// version; a referenced version is never flushed.
	References int64
}

// Handlers lists the stored handler versions, oldest first.
func (db *DB) Handlers() ([]HandlerInfo, error) {
	if err := db.enter(); err != nil {
		return nil, err
	}
	defer db.leave()
	active := db.handlers.active.Load()
	var out []HandlerInfo
	err := db.store.Handlers(func(sha [20]byte, v []byte) error {
		t, _, err := decodeHandler(v)
		if err != nil {
			return err
		}
		refs, err := db.store.Counter(refCounter(sha))
		if err != nil {
			return err
		}
		out = append(out, HandlerInfo{SHA: shaHex(sha), LoadedAt: t, Active: active != nil && active.sha == sha, References: refs})
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].LoadedAt < out[j].LoadedAt })
	return out, err
}

// ActiveHandler returns the SHA of the active handler, or "" if none.
func (db *DB) ActiveHandler() string {
	if e := db.handlers.active.Load(); e != nil {
		return shaHex(e.sha)
	}
	return ""
}

// HandlerSource returns the source of a stored handler version.
func (db *DB) HandlerSource(sha string) ([]byte, error) {
	if err := db.enter(); err != nil {
		return nil, err
	}
	defer db.leave()
	id, err := parseSHA(sha)
	if err != nil {
		return nil, err
	}
	rec, ok, err := db.store.GetHandler(id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownHandler, sha)
	}
	_, src, err := decodeHandler(rec)
	return src, err
}

// HandlerExists reports which of the SHAs are stored handler versions.
func (db *DB) HandlerExists(shas ...string) ([]bool, error) {
	if err := db.enter(); err != nil {
		return nil, err
	}
	defer db.leave()
	out := make([]bool, len(shas))
	for i, sha := range shas {
		id, err := parseSHA(strings.ToLower(sha))
		if err != nil {
			continue
		}
		_, ok, err := db.store.GetHandler(id)
		if err != nil {
			return nil, err
		}
		out[i] = ok
	}
	return out, nil
}

// UseHandler makes a stored handler version the active one again (a roll
// back or forward); partitions are re-indexed in the background.
func (db *DB) UseHandler(sha string) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.leave()
	id, err := parseSHA(strings.ToLower(sha))
	if err != nil {
		return err
	}
	e, err := db.handler(id)
	if err != nil {
		return err
	}
	return db.activate(id, e.h, nil)
}

// FlushHandlers drops every stored handler version that is neither active
// nor referenced by a stored delta, and returns how many it dropped.
func (db *DB) FlushHandlers() (int, error) {
	if err := db.enter(); err != nil {
		return 0, err
	}
	defer db.leave()
	r := &db.handlers
	r.inUse.Lock()
	defer r.inUse.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	active := r.active.Load()
	var drop [][20]byte
	err := db.store.Handlers(func(sha [20]byte, _ []byte) error {
		if active != nil && active.sha == sha {
			return nil
		}
		refs, err := db.store.Counter(refCounter(sha))
		if err != nil {
			return err
		}
		if refs == 0 {
			drop = append(drop, sha)
		}
		return nil
	})
	if err != nil || len(drop) == 0 {
		return 0, err
	}
	b := db.store.NewBatch()
	defer b.Close()
	for _, sha := range drop {
		b.DeleteHandler(sha)
	}
	if err := b.Commit(); err != nil {
		return 0, err
	}
	for _, sha := range drop {
		delete(r.bySHA, sha)
	}
	return len(drop), nil
}
