package legion

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestPartitionFilterKeepsEveryPartition: the store's filter of partitions
// answers the first event of a new partition without a read, and never
// takes a stored partition for a new one, which would restart its state:
// not for partitions stored before a restart (found by the filter's scan),
// nor for those created after it, read back once the small partition cache
// has dropped them. Half the partitions keep deltas after their snapshot.
func TestPartitionFilterKeepsEveryPartition(t *testing.T) {
	fs := vfs.NewMem()
	open := func() *DB {
		return openTestDB(t, paddedHandler, func(c *Config) {
			c.FS, c.DataDir, c.CacheBytes = fs, "db", 64<<10
		})
	}
	ctx := context.Background()
	apply := func(db *DB, key string, want int) {
		t.Helper()
		out, err := db.Apply(ctx, []byte(key), []byte("e"), Consistent)
		if err != nil {
			t.Fatalf("apply to %s: %v", key, err)
		}
		if got, err := out.JSON(); err != nil || string(got) != fmt.Sprint(want) {
			t.Fatalf("apply to %s: %s %v, want %d", key, got, err, want)
		}
	}
	const keys = 400
	db := open()
	for i := range keys {
		for n := 1; n <= 1+i%2; n++ { // odd keys: a delta after the snapshot
			apply(db, fmt.Sprintf("old:%d", i), n)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open()
	for deadline := time.Now().Add(30 * time.Second); !db.StorageStats().PartitionFilterReady; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the partition filter never became ready")
		}
	}
	skipped := db.StorageStats().PartitionReadsSkipped
	for i := range keys {
		apply(db, fmt.Sprintf("new:%d", i), 1)
	}
	if got := db.StorageStats().PartitionReadsSkipped - skipped; got < keys*9/10 {
		t.Fatalf("the filter answered %d of the first events of %d new partitions", got, keys)
	}
	// The cache holds a few dozen of these partitions: most come back
	// from the store.
	for i := range keys {
		apply(db, fmt.Sprintf("old:%d", i), 2+i%2)
		apply(db, fmt.Sprintf("new:%d", i), 2)
	}
	for i := range keys {
		if state, ok, err := db.Get([]byte(fmt.Sprintf("new:%d", i))); !ok || err != nil || len(state) < 1000 {
			t.Fatalf("new:%d: %d bytes, %v %v", i, len(state), ok, err)
		}
	}
}
