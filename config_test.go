package legion

import (
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestConfigRefusedBeforeAnythingIsWritten: every invalid setting is a
// clear error from Open, and the data dir is not created.
func TestConfigRefusedBeforeAnythingIsWritten(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"negative cache", func(c *Config) { c.CacheBytes = -1 }, "cache sizes must not be negative"},
		{"negative block cache", func(c *Config) { c.BlockCacheBytes = -1 }, "cache sizes must not be negative"},
		{"fsync mode", func(c *Config) { c.Fsync = 7 }, "invalid fsync mode"},
		{"memtable too small", func(c *Config) { c.MemtableBytes = 1<<20 - 1 }, "memtable size 1048575 is out of range (1 MiB to 1 GiB)"},
		{"memtable too large", func(c *Config) { c.MemtableBytes = 1<<30 + 1 }, "memtable size 1073741825 is out of range"},
		{"negative memtable", func(c *Config) { c.MemtableBytes = -1 }, "memtable size -1 is out of range"},
		{"node id", func(c *Config) { c.NodeID = strings.Repeat("n", 256) }, "node id longer than 255 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			cfg := Config{DataDir: "db", FS: fs}
			tc.edit(&cfg)
			db, err := Open(cfg)
			if err == nil {
				db.Close()
				t.Fatal("Open accepted the config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
			if _, err := fs.Stat("db"); err == nil {
				t.Fatal("the data dir was created")
			}
		})
	}
}
