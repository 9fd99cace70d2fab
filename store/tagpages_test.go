package store

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// readPage reads the first count keys of tag as the index does, offering
// the page to the cache; complete is whether the tag ran out.
func readPage(t *testing.T, s *Store, tag string, count int) []string {
	t.Helper()
	return readFrom(t, s, tag, "", false, count)
}

// readFrom reads the first count keys of tag (strictly after the key
// after, if hasAfter) as the index does, offering the page to the cache.
func readFrom(t *testing.T, s *Store, tag, after string, hasAfter bool, count int) []string {
	t.Helper()
	it, err := s.SeekTags([]byte(tag), []byte(after), hasAfter, true)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var keys []string
	var page []byte
	for len(keys) < count && it.Next() {
		keys = append(keys, string(it.Key()))
		page = AppendPageKey(page, it.Key())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	it.CacheTagPage([]byte(tag), []byte(after), hasAfter, len(keys), page, len(keys) < count)
	return keys
}

func cached(s *Store, tag string, count int) (keys []string, ok bool) {
	ok = s.CachedTagKeys([]byte(tag), nil, false, count, func(k []byte) { keys = append(keys, string(k)) })
	return keys, ok
}

// readThenCached reads the first count keys of tag, wanting want (keys
// joined by commas), and then wants the cache to answer the same.
func readThenCached(t *testing.T, s *Store, tag string, count int, want string) {
	t.Helper()
	if got := readPage(t, s, tag, count); strings.Join(got, ",") != want {
		t.Fatalf("read %s/%d = %v, want %s", tag, count, got, want)
	}
	if got, ok := cached(s, tag, count); !ok || strings.Join(got, ",") != want {
		t.Fatalf("cached %s/%d = %v %v, want %s", tag, count, got, ok, want)
	}
}

func putTags(t *testing.T, s *Store, tag string, keys ...string) {
	t.Helper()
	b := s.NewBatch()
	for _, k := range keys {
		b.PutTag([]byte(tag), []byte(k))
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// TestTagPages: a page answers searches of as many keys as it holds (or
// any number once complete) until a write touches its tag; writes of
// other tags leave it; an iterator older than a commit fills nothing.
func TestTagPages(t *testing.T) {
	s := openMem(t)
	putTags(t, s, "a", "k1", "k2", "k3")
	putTags(t, s, "b", "k9")
	if _, ok := cached(s, "a", 2); ok {
		t.Fatal("a page before any search")
	}
	readThenCached(t, s, "a", 2, "k1,k2")
	if got, ok := cached(s, "a", 1); !ok || strings.Join(got, ",") != "k1" {
		t.Fatalf("cached a/1 = %v %v", got, ok)
	}
	if _, ok := cached(s, "a", 3); ok {
		t.Fatal("an incomplete page of 2 answered a search of 3")
	}
	readPage(t, s, "b", 10)
	if got, ok := cached(s, "b", 100); !ok || strings.Join(got, ",") != "k9" {
		t.Fatalf("a complete page answers any count: %v %v", got, ok)
	}
	// A write of b leaves a's page; one of a removes it.
	putTags(t, s, "b", "k8")
	if _, ok := cached(s, "b", 10); ok {
		t.Fatal("b's page survived a write of b")
	}
	if s.tagPages.slot([]byte("a")) != s.tagPages.slot([]byte("b")) {
		if _, ok := cached(s, "a", 2); !ok {
			t.Fatal("a's page was dropped by a write of b")
		}
	}
	b := s.NewBatch()
	b.DeleteTag([]byte("a"), []byte("k1"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, ok := cached(s, "a", 2); ok {
		t.Fatal("a's page survived a delete in a")
	}
	// An iterator that a commit followed holds an old view: no page.
	it, err := s.SeekTags([]byte("a"), nil, false, true)
	if err != nil {
		t.Fatal(err)
	}
	putTags(t, s, "c", "k5")
	it.CacheTagPage([]byte("a"), nil, false, 1, AppendPageKey(nil, []byte("k2")), false)
	it.Close()
	if _, ok := cached(s, "a", 1); ok {
		t.Fatal("a page filled from an iterator older than a commit")
	}
	readThenCached(t, s, "a", 10, "k2,k3")
	if hits, misses, bytes := s.TagPageStats(); hits < 5 || misses < 3 || bytes <= 0 {
		t.Fatalf("stats: hits %d misses %d bytes %d", hits, misses, bytes)
	}
}

// TestTagPagesBounded: pages beyond the limit evict the oldest not read
// since the clock last passed them; a page read often stays; a negative
// limit disables the cache.
func TestTagPagesBounded(t *testing.T) {
	s, err := Open(Options{Dir: "db", FS: vfs.NewMem(), TagPageBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 2000 {
		putTags(t, s, fmt.Sprintf("t%d", i), "k")
	}
	for i := range 2000 {
		readPage(t, s, fmt.Sprintf("t%d", i), 10)
		// t1 is read all the time: it stays.
		if i > 1 {
			if _, ok := cached(s, "t1", 10); !ok {
				t.Fatalf("after %d pages, t1 (read after each) was evicted", i)
			}
		}
	}
	_, _, bytes := s.TagPageStats()
	if bytes > 64<<10 || bytes < 32<<10 {
		t.Fatalf("cache holds %d bytes with a limit of %d", bytes, 64<<10)
	}
	if _, ok := cached(s, "t0", 10); ok {
		t.Fatal("the oldest page was not evicted")
	}
	if _, ok := cached(s, "t1999", 10); !ok {
		t.Fatal("the newest page was evicted")
	}

	off, err := Open(Options{Dir: "db2", FS: vfs.NewMem(), TagPageBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	putTags(t, off, "a", "k")
	readPage(t, off, "a", 10)
	if _, ok := cached(off, "a", 10); ok {
		t.Fatal("a disabled cache answered")
	}
}

// readAfter reads the first count keys of tag strictly after the key
// after, as the index does, offering the page to the cache.
func readAfter(t *testing.T, s *Store, tag, after string, count int) []string {
	t.Helper()
	return readFrom(t, s, tag, after, true, count)
}

func cachedAfter(s *Store, tag, after string, count int) (keys []string, ok bool) {
	ok = s.CachedTagKeys([]byte(tag), []byte(after), true, count, func(k []byte) { keys = append(keys, string(k)) })
	return keys, ok
}

// TestTagPagesAfter: a page after a key is kept from its second read on,
// answers only searches after that same key, and goes with any write of
// its tag; after "" is not the first page.
func TestTagPagesAfter(t *testing.T) {
	s := openMem(t)
	putTags(t, s, "a", "", "k1", "k2", "k3", "k4", "k5")
	if got := readAfter(t, s, "a", "k2", 2); strings.Join(got, ",") != "k3,k4" {
		t.Fatalf("a after k2 = %v", got)
	}
	if _, ok := cachedAfter(s, "a", "k2", 2); ok {
		t.Fatal("a page after a key was kept on its first read")
	}
	readAfter(t, s, "a", "k2", 2)
	if got, ok := cachedAfter(s, "a", "k2", 1); !ok || strings.Join(got, ",") != "k3" {
		t.Fatalf("cached a after k2, 1 = %v %v", got, ok)
	}
	if _, ok := cachedAfter(s, "a", "k2", 3); ok {
		t.Fatal("an incomplete page of 2 answered a search of 3")
	}
	if _, ok := cachedAfter(s, "a", "k1", 2); ok {
		t.Fatal("the page after k2 answered a search after k1")
	}
	if _, ok := cached(s, "a", 2); ok {
		t.Fatal("the page after k2 answered a search of the first page")
	}
	// After "" skips the empty key; the first page holds it.
	readAfter(t, s, "a", "", 2)
	readAfter(t, s, "a", "", 2)
	readPage(t, s, "a", 2)
	if got, ok := cachedAfter(s, "a", "", 2); !ok || strings.Join(got, ",") != "k1,k2" {
		t.Fatalf("cached a after \"\" = %v %v", got, ok)
	}
	if got, ok := cached(s, "a", 2); !ok || strings.Join(got, ",") != ",k1" {
		t.Fatalf("cached first page of a = %q %v", got, ok)
	}
	// The last page is complete: any count.
	readAfter(t, s, "a", "k4", 10)
	readAfter(t, s, "a", "k4", 10)
	if got, ok := cachedAfter(s, "a", "k4", 100); !ok || strings.Join(got, ",") != "k5" {
		t.Fatalf("cached a after k4, 100 = %v %v", got, ok)
	}
	// A write of the tag drops all its pages.
	putTags(t, s, "a", "k6")
	for _, after := range []string{"k2", "", "k4"} {
		if _, ok := cachedAfter(s, "a", after, 1); ok {
			t.Fatalf("the page after %q survived a write of its tag", after)
		}
	}
	if _, ok := cached(s, "a", 1); ok {
		t.Fatal("the first page survived a write of its tag")
	}
	if got := readAfter(t, s, "a", "k4", 10); strings.Join(got, ",") != "k5,k6" {
		t.Fatalf("a after k4 = %v", got)
	}
}
