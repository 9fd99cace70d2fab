package legion

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"testing"

	"github.com/legiondb/legion/crdt"
	"github.com/legiondb/legion/index"
	"github.com/legiondb/legion/store"
)

func cachedPartition(key string, valueBytes int) *partition {
	return &partition{
		slot: store.Slot([]byte(key)),
		key:  []byte(key),
		ps:   crdt.New([]crdt.NodeID{"n"}, make([]byte, valueBytes)),
	}
}

// cachedBytes is the encoding of p, to compare partitions by.
func cachedBytes(p *partition) []byte { return p.appendCached(nil) }

func TestCacheEncodingRoundTrip(t *testing.T) {
	ps := crdt.New([]crdt.NodeID{"a", "b"}, []byte(`{"count":3}`))
	// A pending delta: b has not acknowledged it.
	if _, _, _, err := ps.Event("a", []byte("ev"), func(state []byte, id crdt.ID, payload []byte) ([]byte, []byte, error) {
		return append(state, '!'), nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(ps.Pending()) != 1 {
		t.Fatalf("%d pending deltas, want 1", len(ps.Pending()))
	}
	for _, p := range []*partition{
		cachedPartition("empty", 0),
		{slot: 7, key: []byte("k\x00\xff"), ps: ps, exists: true, logLen: 123,
			log: []logEntry{
				{id: crdt.ID{Counter: 1, Node: "a"}, sha: [20]byte{1, 2, 3}},
				{id: crdt.ID{Counter: 2, Node: "b\x00c"}},
			},
			tags: index.Tags{SHA: [20]byte{9}, Tags: []string{"t:1", "t:2"}}},
		{slot: 1, key: []byte("no tags, a handler without index"), ps: ps, exists: true,
			tags: index.Tags{SHA: [20]byte{9}}},
	} {
		e := cachedBytes(p)
		c := newPartitionCache(1 << 20)
		c.put(p)
		got := c.get(p.key)
		if got == nil {
			t.Fatalf("%q: not cached", p.key)
		}
		if got == p {
			t.Fatalf("%q: the cache handed out the partition put, not a copy", p.key)
		}
		if got.slot != p.slot || !bytes.Equal(got.key, p.key) || got.exists != p.exists || got.logLen != p.logLen ||
			fmt.Sprint(got.log) != fmt.Sprint(p.log) || got.tags.SHA != p.tags.SHA || !index.Equal(got.tags.Tags, p.tags.Tags) ||
			!bytes.Equal(got.ps.AppendBinary(nil), p.ps.AppendBinary(nil)) {
			t.Fatalf("%q: got %+v, want %+v", p.key, got, p)
		}
		if !bytes.Equal(cachedBytes(got), e) {
			t.Fatalf("%q: re-encoding differs", p.key)
		}
		// Every truncation is an error, never a panic or a partition.
		_, key, body, _ := (&cacheShard{ring: e}).entry(0)
		for i := range body {
			if _, err := decodeCached(p.slot, key, body[:i], nil); err == nil {
				t.Fatalf("%q: %d of %d bytes decode", p.key, i, len(body))
			}
		}
	}
}

func TestCacheKeepsLargeHotPartitions(t *testing.T) {
	c := newPartitionCache(1 << 20)
	big := cachedPartition("big", 2<<20) // larger than the whole budget
	c.put(big)
	if c.get([]byte("big")) != big {
		t.Fatal("a partition larger than the budget was not kept")
	}
	// Small partitions come and go; the budget holds, apart from the one
	// large partition that is the most recent of its shard.
	for i := 0; i < 20000; i++ {
		c.put(cachedPartition(fmt.Sprintf("k%d", i), 100))
		c.put(big) // the large one stays hot
		if bytes, _ := c.usage(); bytes > (1<<20)+big.size() {
			t.Fatalf("after %d puts the cache holds %d bytes", i, bytes)
		}
	}
	if c.get([]byte("big")) != big {
		t.Fatal("the hot large partition was evicted")
	}
	// Oldest first: an old small key is gone, a recent one is there.
	if c.get([]byte("k0")) != nil {
		t.Fatal("k0 survived 20000 newer partitions")
	}
	if p := c.get([]byte("k19999")); p == nil || string(p.key) != "k19999" {
		t.Fatal("the newest partition was evicted")
	}
	c.remove([]byte("big"))
	if bytes, entries := c.usage(); entries == 0 || bytes > 1<<20 {
		t.Fatalf("after removing the large one: %d bytes in %d entries", bytes, entries)
	}
}

// TestCacheModel runs random puts, gets and removes of partitions of many
// sizes against a map: a hit is always the latest version put of that very
// key, the budget holds, and the latest put of each shard is a hit.
func TestCacheModel(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			const limit = 1 << 20 // 4 KiB rings: they wrap all the time
			c := newPartitionCache(limit)
			model := map[string][]byte{}
			var version int
			last := map[*cacheShard]string{}
			for op := 0; op < 50000; op++ {
				key := fmt.Sprintf("k%d", rng.IntN(5000))
				s := c.shard(maphash.String(c.seed, key))
				switch r := rng.IntN(10); {
				case r < 5:
					version++
					size := rng.IntN(200)
					if rng.IntN(50) == 0 {
						size = rng.IntN(8000) // some large enough to stay loaded
					}
					p := cachedPartition(key, size)
					p.logLen = version
					c.put(p)
					model[key] = cachedBytes(p)
					last[s] = key
				case r < 9:
					p := c.get([]byte(key))
					if p == nil {
						if last[s] == key {
							t.Fatalf("op %d: %s, the latest put of its shard, is not cached", op, key)
						}
						continue
					}
					if !bytes.Equal(cachedBytes(p), model[key]) {
						t.Fatalf("op %d: %s is not the version last put", op, key)
					}
				default:
					c.remove([]byte(key))
					delete(model, key)
					if last[s] == key {
						delete(last, s)
					}
				}
				// The budget, give or take index entries, plus the newest
				// large partition of each shard.
				bound := int64(limit + limit/10)
				for i := range c.shards {
					if el := c.shards[i].lru.Front(); el != nil {
						bound += el.Value.(*cacheEntry).size
					}
				}
				if b, _ := c.usage(); b > bound {
					t.Fatalf("op %d: the cache holds %d bytes, more than %d", op, b, bound)
				}
			}
			checkTables(t, c)
			_, entries := c.usage()
			if entries < 500 {
				t.Fatalf("%d partitions cached at the end", entries)
			}
		})
	}
}

// checkTables checks every shard's table: its count, and that each slot
// names a live entry of a key with the slot's tag, found by a lookup.
func checkTables(t *testing.T, c *partitionCache) {
	t.Helper()
	for si := range c.shards {
		s := &c.shards[si]
		used := 0
		for i, v := range s.table {
			if v == 0 {
				continue
			}
			used++
			_, key, _, _ := s.entry(slotOff(v))
			h := maphash.Bytes(c.seed, key)
			if tag(h) != slotTag(v) || c.shard(h) != s {
				t.Fatalf("shard %d slot %d: entry of %q has another hash", si, i, key)
			}
			if got := s.lookup(tag(h), key); got != i {
				t.Fatalf("shard %d slot %d: lookup of %q finds slot %d", si, i, key, got)
			}
		}
		if used != s.tableUsed {
			t.Fatalf("shard %d: %d slots used, %d counted", si, used, s.tableUsed)
		}
	}
}

// TestCacheReadsKeepEntries checks that an entry read while it is among
// the oldest of its ring moves to the head instead of being overwritten.
func TestCacheReadsKeepEntries(t *testing.T) {
	c := newPartitionCache(cacheShards * ringMin)
	hot := cachedPartition("hot", 10)
	c.put(hot)
	s := c.shard(maphash.String(c.seed, "hot"))
	for i := 0; i < 5000; i++ {
		key := fmt.Sprintf("cold%d", i)
		if c.shard(maphash.String(c.seed, key)) != s {
			continue
		}
		c.put(cachedPartition(key, 50))
		if c.get([]byte("hot")) == nil {
			t.Fatalf("after %d puts the hot partition, read after each, was evicted", i)
		}
	}
	if c.get([]byte("cold0")) != nil && c.shard(maphash.String(c.seed, "cold0")) == s {
		t.Fatal("cold0 survived")
	}
}

// TestCacheKeepsWorkingSet checks that a working set well within the
// budget stays cached whatever the order of writes: the ring moves live
// entries ahead of its head instead of evicting them.
func TestCacheKeepsWorkingSet(t *testing.T) {
	c := newPartitionCache(1 << 20)
	rng := rand.New(rand.NewPCG(1, 2))
	const keys = 2000 // about 200 KB of entries
	for i := 0; i < 100000; i++ {
		key := fmt.Sprintf("w%d", rng.IntN(keys))
		if i < keys {
			key = fmt.Sprintf("w%d", i)
		}
		c.put(cachedPartition(key, rng.IntN(60))) // sizes vary: many move
	}
	checkTables(t, c)
	for i := 0; i < keys; i++ {
		if c.get([]byte(fmt.Sprintf("w%d", i))) == nil {
			t.Fatalf("w%d was evicted from a cache five times the working set", i)
		}
	}
}

// TestCacheTinyBudget: a budget smaller than the shards' first rings still
// caches, within those rings.
func TestCacheTinyBudget(t *testing.T) {
	c := newPartitionCache(1)
	for i := 0; i < 5000; i++ {
		c.put(cachedPartition(fmt.Sprintf("t%d", i), 20))
	}
	checkTables(t, c)
	if p := c.get([]byte("t4999")); p == nil || string(p.key) != "t4999" {
		t.Fatal("the newest partition is not cached")
	}
	if b, _ := c.usage(); b > cacheShards*(ringMin+8*tableMin) {
		t.Fatalf("the cache holds %d bytes", b)
	}
}
