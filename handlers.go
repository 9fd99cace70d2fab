package legion

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
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

// activate stores the handler if new and makes it active.
func (db *DB) activate(sha [20]byte, h *scripting.Handler, src []byte) error {
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
		out = append(out, HandlerInfo{SHA: shaHex(sha), LoadedAt: t, Active: active != nil && active.sha == sha})
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

var errNoIndex = errors.New("legion: handler has no index function")
