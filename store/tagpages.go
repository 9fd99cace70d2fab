package store

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// tagPages caches pages of exact tags: the first keys of a tag, or the
// first after a key of it (the next page of a client paging through the
// tag), so that these searches skip pebble while nothing writes that tag.
//
// Validity is tracked per slot of tags (a hash of the tag): a batch that
// adds or removes index records counts a commit begun in the slot of each
// tag it touches before it commits, and one done after. A page is served
// only while its slot has begun no commit since the page was filled. A page
// is filled only from an iterator that no commit has begun since it was
// created (so it holds every visible write), and only when no commit of
// its slot was in flight: its slot's done count is read, then its begun
// count, they must be equal, and only then is the iterator checked again.
// A writer counts begun in the slot before it counts begun in the store,
// so a writer either shows in the store's count (no fill), or is in flight
// in the slot (no fill), or begins after the page's count was read (its
// count makes the page stale). Every page of a tag shares the tag's slot.
//
// A first page is kept when it is first read. A page after a key is kept
// only when it is read a second time while the first read is remembered,
// so a client paging once through a long tag does not flood the cache.
type tagPages struct {
	limit int64 // bytes; 0 disables the cache
	seed  maphash.Seed
	// hits and misses count the searches a page could answer.
	hits, misses atomic.Int64
	begun        [tagPageSlots]atomic.Uint64
	done         [tagPageSlots]atomic.Uint64
	// seen remembers hashes of pages after a key read once (see above).
	seen [tagPageSeen]atomic.Uint64

	// Searches only read the map (under a read lock) and mark the page
	// they use; fills take the write lock and evict with the clock
	// algorithm: the page at the tail is dropped unless it was used since
	// it last came round, in which case it goes back to the front.
	mu    sync.RWMutex
	pages map[string]*tagPage // by page id (pageID); guarded by mu
	ring  tagPage             // sentinel of the list, newest first; guarded by mu
	bytes int64               // guarded by mu
}

// tagPageSlots is the number of validity slots; tags that share one only
// make each other's pages stale more often.
const tagPageSlots = 4096

// tagPageSeen is the number of pages after a key remembered as read once.
const tagPageSeen = 1024

// MaxCachedTagPage is the largest COUNT a cached page answers.
const MaxCachedTagPage = 256

// tagPage is the first n keys of one tag in index order (after a key, if
// its id says so); complete means the tag has no others. Its keys never
// change once made.
type tagPage struct {
	id         string // pageID
	keys       []byte // each key as a uvarint length and its bytes
	n          int
	complete   bool
	gen        uint64      // its slot's begun count when it was filled
	used       atomic.Bool // read since the clock last passed it
	prev, next *tagPage    // guarded by tagPages.mu
}

// tagPageOverhead approximates the bytes of a page besides its tag and
// keys: the struct and its map entry.
const tagPageOverhead = 128

func (c *tagPages) init(limit int64) {
	c.limit = limit
	c.seed = maphash.MakeSeed()
	c.pages = make(map[string]*tagPage)
	c.ring.prev, c.ring.next = &c.ring, &c.ring
}

func (c *tagPages) slot(tag []byte) uint32 {
	return uint32(maphash.Bytes(c.seed, tag) % tagPageSlots)
}

// pageID appends the id of the page of tag that starts at its first key,
// or, if hasAfter, strictly after the key after.
func pageID(dst, tag, after []byte, hasAfter bool) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(tag)))
	dst = append(dst, tag...)
	if hasAfter {
		dst = append(append(dst, 1), after...)
	}
	return dst
}

// get returns the valid page id of tag that answers count keys, or nil.
func (c *tagPages) get(tag, id []byte, count int) *tagPage {
	if c.limit <= 0 {
		return nil
	}
	c.mu.RLock()
	p := c.pages[string(id)]
	c.mu.RUnlock()
	if p != nil && !p.used.Load() {
		p.used.Store(true)
	}
	if p == nil || p.gen != c.begun[c.slot(tag)].Load() || p.n < count && !p.complete {
		c.misses.Add(1)
		return nil
	}
	c.hits.Add(1)
	return p
}

// token returns the count a page of tag filled now must carry, and false
// if a commit of the tag's slot is in flight. The caller must then check
// that its iterator is still current before filling.
func (c *tagPages) token(tag []byte) (uint64, bool) {
	s := c.slot(tag)
	done := c.done[s].Load()
	begun := c.begun[s].Load()
	return begun, done == begun
}

// secondRead reports whether the page id was read once before, as far as
// the cache remembers, and remembers it otherwise.
func (c *tagPages) secondRead(id []byte) bool {
	h := maphash.Bytes(c.seed, id) | 1 // never 0, the empty cell
	cell := &c.seen[h%tagPageSeen]
	if cell.Load() == h {
		return true
	}
	cell.Store(h)
	return false
}

// put stores p, replacing any page of its id, and evicts pages beyond
// the limit: the oldest that has not been read since the clock last
// passed it.
func (c *tagPages) put(p *tagPage) {
	size := int64(len(p.id) + len(p.keys) + tagPageOverhead)
	if size > c.limit/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.pages[p.id]; old != nil {
		c.remove(old)
	}
	c.pages[p.id] = p
	c.pushFront(p)
	c.bytes += size
	for c.bytes > c.limit && c.ring.prev != &c.ring {
		q := c.ring.prev
		if q != p && q.used.Load() {
			q.used.Store(false)
			c.unlink(q)
			c.pushFront(q)
			continue
		}
		c.remove(q)
	}
}

func (c *tagPages) remove(p *tagPage) {
	c.unlink(p)
	delete(c.pages, p.id)
	c.bytes -= int64(len(p.id) + len(p.keys) + tagPageOverhead)
}

func (c *tagPages) unlink(p *tagPage) {
	p.prev.next, p.next.prev = p.next, p.prev
	p.prev, p.next = nil, nil
}

func (c *tagPages) pushFront(p *tagPage) {
	p.prev, p.next = &c.ring, c.ring.next
	c.ring.next.prev = p
	c.ring.next = p
}

// eachKey calls fn with each of the page's first count keys, in index order.
func (p *tagPage) eachKey(count int, fn func(key []byte)) {
	b := p.keys
	for i := 0; i < min(count, p.n); i++ {
		n, w := binary.Uvarint(b)
		fn(b[w : w+int(n)])
		b = b[w+int(n):]
	}
}

// CachedTagKeys calls fn with the first count keys of tag (strictly after
// the key after, if hasAfter), in index order (all of them if there are
// fewer), and reports true, if the cache of tag pages holds them as they
// are now; otherwise it does nothing and reports false. The keys are valid
// only during the call.
func (s *Store) CachedTagKeys(tag, after []byte, hasAfter bool, count int, fn func(key []byte)) bool {
	if s.tagPages.limit <= 0 {
		return false
	}
	var buf [128]byte
	p := s.tagPages.get(tag, pageID(buf[:0], tag, after, hasAfter), count)
	if p == nil {
		return false
	}
	p.eachKey(count, fn)
	return true
}

// TagPageStats returns how many searches of exact tags the cache answered
// and how many it could not, and the bytes it holds.
func (s *Store) TagPageStats() (hits, misses, bytes int64) {
	c := &s.tagPages
	if c.limit <= 0 {
		return 0, 0, 0
	}
	c.mu.Lock()
	bytes = c.bytes
	c.mu.Unlock()
	return c.hits.Load(), c.misses.Load(), bytes
}

// AppendPageKey appends key to dst in the encoding of the keys of a page
// (CacheTagPage): its length as a uvarint, then its bytes.
func AppendPageKey(dst, key []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	return append(dst, key...)
}

// CacheTagPage offers the cache the first n keys of tag (strictly after
// the key after, if hasAfter), read through t and encoded one after the
// other by AppendPageKey (keys is copied); complete says the tag has no
// more. The page is kept only if t still holds every visible write and no
// write of the tag is in flight, and, for a page after a key, if it was
// read before (see tagPages).
func (t *TagIter) CacheTagPage(tag, after []byte, hasAfter bool, n int, keys []byte, complete bool) {
	c := &t.s.tagPages
	if c.limit <= 0 || n > MaxCachedTagPage {
		return
	}
	id := pageID(nil, tag, after, hasAfter)
	if hasAfter && !c.secondRead(id) {
		return
	}
	gen, ok := c.token(tag)
	if !ok || t.gen == 0 || t.s.begun.Load() != t.gen-1 {
		return
	}
	c.put(&tagPage{id: string(id), keys: bytes.Clone(keys), n: n, complete: complete, gen: gen})
}

// noteTag notes the slot of tag among the slots the batch writes index
// records of. A slot may be noted more than once: its begun and done
// counts move together.
func (b *Batch) noteTag(tag []byte) {
	if b.s.tagPages.limit <= 0 {
		return
	}
	s := uint16(b.s.tagPages.slot(tag))
	if n := len(b.tagSlots); n > 0 && b.tagSlots[n-1] == s {
		return
	}
	b.tagSlots = append(b.tagSlots, s)
}

// beginTagWrites counts a commit begun in every slot the batch writes;
// endTagWrites counts it done.
func (b *Batch) beginTagWrites() {
	for _, s := range b.tagSlots {
		b.s.tagPages.begun[s].Add(1)
	}
}

func (b *Batch) endTagWrites() {
	for _, s := range b.tagSlots {
		b.s.tagPages.done[s].Add(1)
	}
}
