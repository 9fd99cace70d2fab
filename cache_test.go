package legion

import (
	"fmt"
	"testing"

	"github.com/legiondb/legion/crdt"
)

func cachedPartition(key string, valueBytes int) *partition {
	return &partition{key: []byte(key), ps: crdt.New([]crdt.NodeID{"n"}, make([]byte, valueBytes))}
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
		if bytes, _ := c.usage(); bytes > (1<<20)+big.size()+cacheShards*cachedPartition("k", 100).size() {
			t.Fatalf("after %d puts the cache holds %d bytes", i, bytes)
		}
	}
	if c.get([]byte("big")) != big {
		t.Fatal("the hot large partition was evicted")
	}
	// Least recently used first: an old small key is gone, a recent one is there.
	if c.get([]byte("k0")) != nil {
		t.Fatal("k0 survived 20000 newer partitions")
	}
	// The newest small key outside the large one's shard (every put of
	// the large one, over budget by itself, empties its own shard).
	newest := 19999
	for c.shard([]byte(fmt.Sprintf("k%d", newest))) == c.shard([]byte("big")) {
		newest--
	}
	if c.get([]byte(fmt.Sprintf("k%d", newest))) == nil {
		t.Fatalf("the newest partition k%d was evicted", newest)
	}
	c.remove([]byte("big"))
	if bytes, entries := c.usage(); entries == 0 || bytes > 1<<20 {
		t.Fatalf("after removing the large one: %d bytes in %d entries", bytes, entries)
	}
}
