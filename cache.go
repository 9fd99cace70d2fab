package legion

import (
	"container/list"
	"hash/maphash"
	"sync"
)

// cacheShards spreads the cache's locks; each shard has an equal part of
// the byte budget.
const cacheShards = 64

// partitionCache keeps recently used partitions in memory, bounded by an
// estimate of their size. Evicting is always safe: the store holds every
// partition, and a reload replays its log. A cached partition is only
// mutated by the holder of its key's lock; the cache itself only stores
// pointers.
type partitionCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu    sync.Mutex
	limit int64
	bytes int64                    // guarded by mu
	lru   list.List                // of *cacheEntry, most recent first; guarded by mu
	byKey map[string]*list.Element // guarded by mu
}

type cacheEntry struct {
	p    *partition
	size int64
}

func newPartitionCache(limit int64) *partitionCache {
	c := &partitionCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].limit = limit / cacheShards
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

// put inserts or refreshes p (re-estimating its size) and evicts the least
// recently used partitions over the shard's budget. A partition larger
// than the whole budget is not kept.
func (c *partitionCache) put(p *partition) {
	s := c.shard(p.key)
	size := p.size()
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.byKey[string(p.key)]; ok {
		e := el.Value.(*cacheEntry)
		s.bytes += size - e.size
		e.p, e.size = p, size
		s.lru.MoveToFront(el)
	} else {
		s.byKey[string(p.key)] = s.lru.PushFront(&cacheEntry{p: p, size: size})
		s.bytes += size
	}
	for s.bytes > s.limit && s.lru.Len() > 0 {
		el := s.lru.Back()
		e := el.Value.(*cacheEntry)
		s.lru.Remove(el)
		delete(s.byKey, string(e.p.key))
		s.bytes -= e.size
	}
}

func (c *partitionCache) remove(key []byte) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.byKey[string(key)]; ok {
		s.bytes -= el.Value.(*cacheEntry).size
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
		bytes += s.bytes
		entries += s.lru.Len()
		s.mu.Unlock()
	}
	return bytes, entries
}
