package legion

import (
	"container/list"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/legiondb/legion/crdt"
	"github.com/legiondb/legion/index"
)

// cacheShards spreads the cache's locks.
const cacheShards = 256

// partitionCache keeps recently used partitions in memory, bounded in
// bytes. Evicting is always safe: the store holds every partition, and a
// reload replays its log.
//
// Small partitions, nearly all of them, are kept encoded in a ring of bytes
// per shard, found through an open-addressing table from the key's hash to
// the entry's offset. Both live outside the Go heap (see allocRing): a
// cache of a million partitions costs the garbage collector nothing, and
// an entry costs its encoded size (about 120 bytes for a counter) and a
// table slot or two, instead of the dozen objects of a loaded partition. A
// hit decodes a fresh partition, which the caller owns; a write puts the
// new version over the old if it fits, else at the ring's head. When the
// ring is full it wraps, and the entries its head reaches are moved ahead
// of it while they fit in three quarters of the ring, or if they were read
// or written since they were last moved (the "clock" approximation of
// least recently used); the others are evicted.
//
// A partition too large for a ring (a share of the budget) is kept loaded,
// in a per-shard LRU list, and handed out as is: its holder mutates it
// under its key's lock. The byte budget is global: a shard that inserts a
// large partition while the cache is over budget evicts its own least
// recently used large partitions, never the one just inserted. So a hot
// partition larger than the budget stays cached (a large state would
// otherwise be reloaded, and its log replayed, on every event), at the
// price of the bound being approximate by one partition per shard.
type partitionCache struct {
	seed     maphash.Seed
	limit    int64
	ringMax  int          // the most a shard's ring grows to
	largeMin int          // encoded partitions at least this large are kept loaded
	bytes    atomic.Int64 // rings, tables and large partitions
	scratch  sync.Pool    // of *[]byte, to encode into
	// known holds this node's id, which decoded partitions share rather
	// than allocate (set once, before any use).
	known  []crdt.NodeID
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.Mutex // guards everything below

	// The ring holds entries back to back. The newest are in [0, head);
	// after a wrap, the older ones are in [tail, end), and [head, tail) is
	// free. Before the first wrap, and once the older ones are gone,
	// tail == end == 0.
	ring            []byte
	head, tail, end int

	// The table has a slot per live entry, found by linear probing from
	// the hash's high bits; a slot is those 32 bits and the entry's offset
	// plus one, and 0 is free. Entries that are not live (older versions,
	// removed keys) have no slot and are skipped when the ring wraps.
	table     []uint64
	tableMem  []byte // what table is a view of
	tableUsed int
	live      int // bytes of the entries the table names

	large map[string]*list.Element // of *cacheEntry
	lru   list.List                // large partitions, most recent first

	closed bool // the memory is freed; nothing is cached any more
}

type cacheEntry struct {
	p    *partition
	size int64
}

// An entry in a ring is a fixed header (the bytes it occupies, the bytes
// it uses, key length, slot, referenced flag), the key and the encoded
// partition. A new version that fits is written over the old one, so an
// entry may occupy more than it uses.
const (
	entryHeader = 15
	refAt       = 14
	ringMin     = 1 << 10
	tableMin    = 64 // slots
)

// Flags of an encoded partition.
const (
	cachedExists = 1 << iota
	cachedLog
	cachedTags
	cachedTagsRec // partition.tagsRec
)

func newPartitionCache(limit int64) *partitionCache {
	c := &partitionCache{seed: maphash.MakeSeed(), limit: limit}
	// The rings take at most four fifths of the budget: the rest is for
	// their tables.
	// Offsets in a table slot are 32 bits.
	c.ringMax = int(min(max(limit*4/5/cacheShards, ringMin), 1<<30))
	c.largeMin = c.ringMax / 4
	c.scratch.New = func() any {
		b := make([]byte, 0, 256)
		return &b
	}
	for i := range c.shards {
		c.shards[i].large = make(map[string]*list.Element)
	}
	return c
}

func (c *partitionCache) shard(h uint64) *cacheShard {
	return &c.shards[h%cacheShards]
}

// tag is the part of a key's hash its table slot keeps (the low bits pick
// the shard).
func tag(h uint64) uint32 { return uint32(h >> 32) }

func slotOf(t uint32, off int) uint64 { return uint64(t)<<32 | uint64(off+1) }
func slotTag(v uint64) uint32         { return uint32(v >> 32) }
func slotOff(v uint64) int            { return int(uint32(v)) - 1 }

// lookup returns the table index of key's entry, or -1.
func (s *cacheShard) lookup(t uint32, key []byte) int {
	if len(s.table) == 0 {
		return -1
	}
	mask := len(s.table) - 1
	for i := int(t) & mask; ; i = (i + 1) & mask {
		v := s.table[i]
		if v == 0 {
			return -1
		}
		if slotTag(v) == t {
			if _, k, _, _ := s.entry(slotOff(v)); string(k) == string(key) {
				return i
			}
		}
	}
}

// slotAt returns the table index of the entry at off, whose key has tag t,
// or -1 if that entry is not live.
func (s *cacheShard) slotAt(t uint32, off int) int {
	if len(s.table) == 0 {
		return -1
	}
	mask := len(s.table) - 1
	want := slotOf(t, off)
	for i := int(t) & mask; ; i = (i + 1) & mask {
		switch s.table[i] {
		case 0:
			return -1
		case want:
			return i
		}
	}
}

// link adds a slot for the entry at off (the table has room).
func (s *cacheShard) link(t uint32, off int) {
	s.insertSlot(slotOf(t, off))
	s.live += s.size(off)
}

// relink points slot i at the entry at off instead.
func (s *cacheShard) relink(i int, off int) {
	s.live += s.size(off) - s.size(slotOff(s.table[i]))
	s.table[i] = slotOf(slotTag(s.table[i]), off)
}

// unlink frees slot i.
func (s *cacheShard) unlink(i int) {
	s.live -= s.size(slotOff(s.table[i]))
	s.deleteSlot(i)
}

// size is the bytes the entry at off occupies.
func (s *cacheShard) size(off int) int { return int(binary.LittleEndian.Uint32(s.ring[off:])) }

// insertSlot adds a slot; the table has room.
func (s *cacheShard) insertSlot(v uint64) {
	mask := len(s.table) - 1
	i := int(slotTag(v)) & mask
	for s.table[i] != 0 {
		i = (i + 1) & mask
	}
	s.table[i] = v
	s.tableUsed++
}

// deleteSlot frees slot i, shifting back the slots of its probe run that
// it displaced, so lookups need no tombstones.
func (s *cacheShard) deleteSlot(i int) {
	mask := len(s.table) - 1
	for j := (i + 1) & mask; s.table[j] != 0; j = (j + 1) & mask {
		home := int(slotTag(s.table[j])) & mask
		// Move j back to i if its home is not cyclically within (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			s.table[i] = s.table[j]
			i = j
		}
	}
	s.table[i] = 0
	s.tableUsed--
}

// get returns the cached partition of key, or nil. A small partition is
// decoded afresh for the caller; a large one is the cached one itself.
func (c *partitionCache) get(key []byte) *partition {
	h := maphash.Bytes(c.seed, key)
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.large[string(key)]; ok {
		s.lru.MoveToFront(el)
		return el.Value.(*cacheEntry).p
	}
	i := s.lookup(tag(h), key)
	if i < 0 {
		return nil
	}
	off := slotOff(s.table[i])
	slot, k, body, _ := s.entry(off)
	p, err := decodeCached(slot, k, body, c.known)
	if err != nil {
		// Cannot happen short of memory corruption: forget it, and the
		// store has it.
		s.unlink(i)
		return nil
	}
	s.ring[off+refAt] = 1
	return p
}

// entry parses the ring entry at off.
func (s *cacheShard) entry(off int) (slot uint16, key, body []byte, n int) {
	e := s.ring[off:]
	n = int(binary.LittleEndian.Uint32(e))
	used := int(binary.LittleEndian.Uint32(e[4:]))
	kl := int(binary.LittleEndian.Uint32(e[8:]))
	slot = binary.LittleEndian.Uint16(e[12:])
	return slot, e[entryHeader : entryHeader+kl], e[entryHeader+kl : used], n
}

// put inserts or refreshes p.
func (c *partitionCache) put(p *partition) {
	h := maphash.Bytes(c.seed, p.key)
	s := c.shard(h)
	if p.encodedBound() < c.largeMin {
		bp := c.scratch.Get().(*[]byte)
		defer c.scratch.Put(bp)
		e := p.appendCached((*bp)[:0])
		*bp = e
		if len(e) < c.largeMin {
			s.mu.Lock()
			defer s.mu.Unlock()
			c.dropLarge(s, p.key)
			c.putSmall(s, tag(h), p.key, e)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.lookup(tag(h), p.key); i >= 0 {
		s.unlink(i)
	}
	if !s.closed {
		c.putLarge(s, p)
	}
}

// putSmall writes entry e of key, whose hash has tag t: over the key's
// entry if it fits there, else at the ring's head.
func (c *partitionCache) putSmall(s *cacheShard, t uint32, key, e []byte) {
	if i := s.lookup(t, key); i >= 0 {
		off := slotOff(s.table[i])
		if n := s.size(off); len(e) <= n {
			copy(s.ring[off:], e)
			binary.LittleEndian.PutUint32(s.ring[off:], uint32(n))
			s.ring[off+refAt] = 1
			return
		}
	}
	// At the head an entry has a whole turn of the ring before its first
	// pass: it is not marked referenced.
	off, ok := c.reserve(s, len(e))
	if ok {
		copy(s.ring[off:], e)
		s.ring[off+refAt] = 0
	}
	// Making room may have moved or evicted the key's older entry.
	if i := s.lookup(t, key); i >= 0 {
		if ok {
			s.relink(i, off)
		} else {
			s.unlink(i)
		}
		return
	}
	if ok && c.roomInTable(s) {
		s.link(t, off)
	}
}

// roomInTable makes room in the table for one more slot: it grows the
// table while the budget allows, else evicts the ring's oldest entries.
func (c *partitionCache) roomInTable(s *cacheShard) bool {
	for (s.tableUsed+1)*4 > len(s.table)*3 {
		if c.growTable(s) {
			return true
		}
		if s.tail == s.end {
			return false
		}
		c.passOldest(s, 0, false)
	}
	return true
}

// growTable doubles the table, if the budget allows (a shard's first
// table is granted).
func (c *partitionCache) growTable(s *cacheShard) bool {
	if s.closed {
		return false
	}
	size := max(2*len(s.table), tableMin)
	delta := int64(8 * (size - len(s.table)))
	if c.bytes.Add(delta) > c.limit && len(s.table) > 0 {
		c.bytes.Add(-delta)
		return false
	}
	mem := allocRing(8 * size)
	if mem == nil {
		c.bytes.Add(-delta)
		return false
	}
	old, oldMem := s.table, s.tableMem
	s.table = unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(mem))), size)
	s.tableMem, s.tableUsed = mem, 0
	for _, v := range old {
		if v != 0 {
			s.insertSlot(v)
		}
	}
	freeRing(oldMem)
	return true
}

// reserve makes room for n bytes at the ring's head and returns their
// offset: it grows the ring while the budget allows, else wraps and
// evicts the oldest entries. It fails only if n does not fit the ring.
func (c *partitionCache) reserve(s *cacheShard, n int) (int, bool) {
	if n > c.ringMax {
		return 0, false
	}
	for {
		if s.tail < s.end {
			if s.head+n <= s.tail {
				break
			}
			c.passOldest(s, n, true)
			continue
		}
		if s.head+n <= len(s.ring) || c.grow(s, n) {
			break
		}
		if s.head == 0 || n > len(s.ring) {
			return 0, false // a wrap would not make room
		}
		s.tail, s.end, s.head = 0, s.head, 0
	}
	off := s.head
	s.head += n
	return off, true
}

// passOldest deals with the entry at the ring's tail, to make room for n
// bytes at the head. With mayMove, a live entry moves to the head if it
// was referenced since its last move (and loses the mark) or if the live
// entries and the n bytes fit in three quarters of the ring; otherwise it
// is evicted. The room left for the head grows with every entry evicted or
// dead, and after one pass every mark is cleared, so making room ends.
func (c *partitionCache) passOldest(s *cacheShard, n int, mayMove bool) {
	off := s.tail
	_, key, _, m := s.entry(off)
	s.tail += m
	t := tag(maphash.Bytes(c.seed, key))
	if i := s.slotAt(t, off); i >= 0 {
		if mayMove && (s.ring[off+refAt] == 1 || s.live+n <= len(s.ring)/4*3) {
			// head <= off: copy moves the bytes down even if they overlap.
			copy(s.ring[s.head:], s.ring[off:off+m])
			s.ring[s.head+refAt] = 0
			s.table[i] = slotOf(t, s.head)
			s.head += m
		} else {
			s.unlink(i)
		}
	}
	if s.tail >= s.end {
		s.tail, s.end = 0, 0
	}
}

// grow enlarges a ring that has not wrapped, or whose older entries are
// gone, so that n more bytes fit, if the budget allows.
func (c *partitionCache) grow(s *cacheShard, n int) bool {
	want := s.head + n
	size := max(len(s.ring), ringMin)
	for size < want {
		size *= 2
	}
	size = min(size, c.ringMax)
	if size < want {
		return false
	}
	if s.closed {
		return false
	}
	// A shard's first ring is granted even over budget, so that large
	// partitions cannot keep small ones from being cached at all.
	if c.bytes.Add(int64(size-len(s.ring))) > c.limit && len(s.ring) > 0 {
		c.bytes.Add(-int64(size - len(s.ring)))
		return false
	}
	ring := allocRing(size)
	if ring == nil {
		c.bytes.Add(-int64(size - len(s.ring)))
		return false
	}
	copy(ring, s.ring[:s.head])
	freeRing(s.ring)
	s.ring = ring
	return true
}

func (c *partitionCache) putLarge(s *cacheShard, p *partition) {
	size := p.size()
	var el *list.Element
	if old, ok := s.large[string(p.key)]; ok {
		e := old.Value.(*cacheEntry)
		c.bytes.Add(size - e.size)
		e.p, e.size = p, size
		s.lru.MoveToFront(old)
		el = old
	} else {
		el = s.lru.PushFront(&cacheEntry{p: p, size: size})
		s.large[string(p.key)] = el
		c.bytes.Add(size)
	}
	for c.bytes.Load() > c.limit && s.lru.Len() > 1 {
		victim := s.lru.Back()
		if victim == el {
			break
		}
		c.dropLarge(s, victim.Value.(*cacheEntry).p.key)
	}
}

func (c *partitionCache) dropLarge(s *cacheShard, key []byte) {
	if el, ok := s.large[string(key)]; ok {
		c.bytes.Add(-el.Value.(*cacheEntry).size)
		s.lru.Remove(el)
		delete(s.large, string(key))
	}
}

func (c *partitionCache) remove(key []byte) {
	h := maphash.Bytes(c.seed, key)
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	c.dropLarge(s, key)
	if i := s.lookup(tag(h), key); i >= 0 {
		s.unlink(i)
	}
}

// replace puts p if its key is cached: for changes made to a partition
// loaded without caching it.
func (c *partitionCache) replace(p *partition) {
	h := maphash.Bytes(c.seed, p.key)
	s := c.shard(h)
	s.mu.Lock()
	_, cached := s.large[string(p.key)]
	cached = cached || s.lookup(tag(h), p.key) >= 0
	s.mu.Unlock()
	if cached {
		c.put(p)
	}
}

// eachLogged calls fn for every cached partition whose log is not empty,
// outside the cache's locks. The caller must ensure no key locks are held
// by others (Close does).
func (c *partitionCache) eachLogged(fn func(p *partition)) {
	for i := range c.shards {
		s := &c.shards[i]
		var logged []*partition
		s.mu.Lock()
		for el := s.lru.Front(); el != nil; el = el.Next() {
			if p := el.Value.(*cacheEntry).p; len(p.log) > 0 {
				logged = append(logged, p)
			}
		}
		for _, v := range s.table {
			if v == 0 {
				continue
			}
			slot, key, body, _ := s.entry(slotOff(v))
			if len(body) == 0 || body[0]&cachedLog == 0 {
				continue
			}
			if p, err := decodeCached(slot, key, body, c.known); err == nil {
				logged = append(logged, p)
			}
		}
		s.mu.Unlock()
		for _, p := range logged {
			fn(p)
		}
	}
}

// close frees the rings and tables. The cache holds nothing after and
// caches nothing.
func (c *partitionCache) close() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		freeRing(s.ring)
		freeRing(s.tableMem)
		s.ring, s.head, s.tail, s.end = nil, 0, 0, 0
		s.table, s.tableMem, s.tableUsed, s.live = nil, nil, 0, 0
		s.lru.Init()
		clear(s.large)
		s.closed = true
		s.mu.Unlock()
	}
	c.bytes.Store(0)
}

// usage returns the bytes the cache holds and the partitions in it.
func (c *partitionCache) usage() (bytes int64, entries int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		entries += s.tableUsed + s.lru.Len()
		s.mu.Unlock()
	}
	return c.bytes.Load(), entries
}

// appendCached appends p's ring entry: the header, the key, then
//
//	flags  uvarint(logLen)  uvarint(len) powerstate
//	[uvarint(count) (idkey sha?)*]  [tags]
//
// where the log is present with cachedLog, each entry's SHA is a flag
// byte and 20 bytes if the flag is 1, and the tags, the rest, with
// cachedTags.
func (p *partition) appendCached(dst []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, entryHeader)...)
	binary.LittleEndian.PutUint32(dst[start+8:], uint32(len(p.key)))
	binary.LittleEndian.PutUint16(dst[start+12:], p.slot)
	dst = append(dst, p.key...)
	var flags byte
	if p.exists {
		flags |= cachedExists
	}
	if len(p.log) > 0 {
		flags |= cachedLog
	}
	hasTags := p.tags.SHA != ([20]byte{}) || len(p.tags.Tags) > 0
	if hasTags {
		flags |= cachedTags
	}
	if p.tagsRec {
		flags |= cachedTagsRec
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(p.logLen))
	// A fixed-width length, so the power state is encoded in place.
	lenAt := len(dst)
	dst = p.ps.AppendBinary(append(dst, 0, 0, 0, 0))
	binary.LittleEndian.PutUint32(dst[lenAt:], uint32(len(dst)-lenAt-4))
	if len(p.log) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(p.log)))
		for _, e := range p.log {
			dst = crdt.AppendIDKey(dst, e.id)
			if e.sha == ([20]byte{}) {
				dst = append(dst, 0)
			} else {
				dst = append(append(dst, 1), e.sha[:]...)
			}
		}
	}
	if hasTags {
		dst = p.tags.AppendBinary(dst)
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	binary.LittleEndian.PutUint32(dst[start+4:], uint32(len(dst)-start))
	return dst
}

// encodedBound bounds the size of p's ring entry, without encoding it.
func (p *partition) encodedBound() int {
	const varint = binary.MaxVarintLen64
	inf := p.ps.Infimum()
	n := entryHeader + len(p.key) + 1 + 4*varint + len(inf.Value) + 40*(len(inf.Participants)+1) + 60*len(p.log)
	for _, d := range p.ps.Pending() {
		n += 3*varint + len(d.Delta.Payload) + 40*(len(d.Acks)+2)
	}
	n += 21 + varint
	for _, t := range p.tags.Tags {
		n += varint + len(t)
	}
	return n
}

var errCachedEntry = errors.New("corrupt cache entry")

// decodeCached decodes what appendCached encoded after the key. Everything
// it returns is a copy: the ring may be overwritten afterwards.
func decodeCached(slot uint16, key, b []byte, known []crdt.NodeID) (*partition, error) {
	if len(b) < 1 {
		return nil, errCachedEntry
	}
	flags := b[0]
	logLen, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return nil, errCachedEntry
	}
	b = b[1+n:]
	if len(b) < 4 {
		return nil, errCachedEntry
	}
	psLen := int(binary.LittleEndian.Uint32(b))
	if psLen > len(b)-4 {
		return nil, errCachedEntry
	}
	p := newPartition(slot, key)
	if err := p.state.UnmarshalInterned(b[4:4+psLen], known, p.valueBuf[:0]); err != nil {
		return nil, err
	}
	b = b[4+psLen:]
	p.ps, p.logLen, p.exists = &p.state, int(logLen), flags&cachedExists != 0
	p.tagsRec = flags&cachedTagsRec != 0
	if flags&cachedLog != 0 {
		count, n := binary.Uvarint(b)
		if n <= 0 || count > uint64(len(b)) {
			return nil, errCachedEntry
		}
		b = b[n:]
		p.log = make([]logEntry, count)
		for i := range p.log {
			id, rest, err := crdt.DecodeIDKey(b)
			if err != nil || len(rest) < 1 {
				return nil, errCachedEntry
			}
			p.log[i].id = id
			b = rest[1:]
			if rest[0] == 1 {
				if len(b) < 20 {
					return nil, errCachedEntry
				}
				b = b[copy(p.log[i].sha[:], b):]
			}
		}
	}
	if flags&cachedTags != 0 {
		var err error
		if p.tags, err = index.DecodeTags(b); err != nil {
			return nil, err
		}
	} else if len(b) != 0 {
		return nil, errCachedEntry
	}
	return p, nil
}
