package legion

import (
	"container/list"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// cacheShards spreads the cache's locks.
const cacheShards = 256

// partitionCache keeps recently used partitions in memory, bounded by an
// estimate of their size. Evicting is always safe: the store holds every
// partition, and a reload replays its log. A cached partition is only
// mutated by the holder of its key's lock; the cache itself only stores
// pointers.
//
// The byte budget is global while the LRU lists are per shard: a shard
// that inserts while the whole cache is over budget evicts its own least
// recently used partitions, never the one just inserted. So a hot
// partition larger than a shard's share of the budget stays cached (a
// large state would otherwise be reloaded, and its log replayed, on every
// event), at the price of the bound being approximate by one partition
// per shard.
type partitionCache struct {
	seed   maphash.Seed
	limit  int64
	bytes  atomic.Int64 // estimated bytes in all shards
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu    sync.Mutex
	lru   list.List                // of *cacheEntry, most recent first; guarded by mu
	byKey map[string]*list.Element // guarded by mu
}

type cacheEntry struct {
	p    *partition
	size int64
}

func newPartitionCache(limit int64) *partitionCache {
	c := &partitionCache{seed: maphash.MakeSeed(), limit: limit}
	for i := range c.shards {
		c.shards[i].byKey = make(map[string]*list.Element)
	}
	return c
}

func (c *partitionCache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

func (c *partitionCache) get(key []byte) *partition {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.byKey[string(key)]; ok {
		s.lru.MoveToFront(el)
		return el.Value.(*cacheEntry).p
	}
	return nil
}

// put inserts or refreshes p (re-estimating its size) and, while the cache
// is over its budget, evicts this shard's least recently used partitions
// other than p.
func (c *partitionCache) put(p *partition) {
	s := c.shard(p.key)
	size := p.size()
	s.mu.Lock()
	defer s.mu.Unlock()
	var el *list.Element
	if old, ok := s.byKey[string(p.key)]; ok {
		e := old.Value.(*cacheEntry)
		c.bytes.Add(size - e.size)
		e.p, e.size = p, size
		s.lru.MoveToFront(old)
		el = old
	} else {
		el = s.lru.PushFront(&cacheEntry{p: p, size: size})
		s.byKey[string(p.key)] = el
		c.bytes.Add(size)
	}
	for c.bytes.Load() > c.limit && s.lru.Len() > 1 {
		victim := s.lru.Back()
		if victim == el {
			break
		}
		e := victim.Value.(*cacheEntry)
		s.lru.Remove(victim)
		delete(s.byKey, string(e.p.key))
		c.bytes.Add(-e.size)
	}
}

func (c *partitionCache) remove(key []byte) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.byKey[string(key)]; ok {
		c.bytes.Add(-el.Value.(*cacheEntry).size)
		s.lru.Remove(el)
		delete(s.byKey, string(key))
	}
}

// each calls fn for every cached partition. fn runs under the shard's lock,
// so it must not call back into the cache; the caller must ensure no key
// locks are held by others (Close does).
func (c *partitionCache) each(fn func(p *partition)) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for el := s.lru.Front(); el != nil; el = el.Next() {
			fn(el.Value.(*cacheEntry).p)
		}
		s.mu.Unlock()
	}
}

func (c *partitionCache) usage() (bytes int64, entries int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		entries += s.lru.Len()
		s.mu.Unlock()
	}
	return c.bytes.Load(), entries
}
