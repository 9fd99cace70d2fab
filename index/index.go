// Package index maintains the global tag index: one ordered list of
// (tag, key) records over all partitions, kept in the store in the same
// batch as the state it describes, and answers scrolling searches over it.
package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/legiondb/legion/store"
)

var (
	// ErrCorrupt reports a tags record this code did not write.
	ErrCorrupt = errors.New("index: corrupt tags record")
	// ErrCount reports a COUNT outside the accepted range.
	ErrCount = errors.New("index: COUNT out of range")
)

// MaxCount bounds the records one search may return.
const MaxCount = 100000

// DefaultCount is the number of records a search returns without COUNT.
const DefaultCount = 10

// Hit is one (tag, key) record.
type Hit struct {
	Tag []byte
	Key []byte
}

// Query is one search. Without After the records start at (Tag, ""); with
// it they start strictly after (Tag, AfterKey). Exact stops at the first
// record whose tag differs from Tag.
type Query struct {
	Tag      []byte
	After    bool
	AfterKey []byte
	Count    int // 0 means DefaultCount
	Exact    bool
	// Keep, if set, filters records by key (a cluster node answers only
	// for the slots it serves); filtered records do not count.
	Keep func(key []byte) bool
}

// Search returns the records of q in index order from one consistent view
// of the store.
func Search(s *store.Store, q Query) ([]Hit, error) {
	v := NewView(s)
	hits, err := v.Search(q)
	if cerr := v.Close(); err == nil {
		err = cerr
	}
	return hits, err
}

// View answers searches from one view of the store, taken at its first
// search: the searches of one pipeline share one pebble iterator. A View is
// used by one goroutine and must be closed.
type View struct {
	s  *store.Store
	it *store.TagIter
	// page holds the keys of the search running, encoded as a cached page
	// (store.CacheTagPage), while it may be cached; reused by the next.
	page []byte
}

// NewView returns a View of s; it reads nothing until its first search.
func NewView(s *store.Store) *View { return &View{s: s} }

// Search returns the records of q in index order. The hits share one
// buffer; a search of an exact tag stores the tag once.
func (v *View) Search(q Query) ([]Hit, error) {
	var (
		hits []Hit
		buf  []byte
		t    []byte
	)
	_, err := v.Each(q, func(tag, key []byte) {
		if hits == nil {
			n := min(q.Count, 64)
			if n == 0 {
				n = DefaultCount
			}
			hits = make([]Hit, 0, n)
			buf = make([]byte, 0, len(tag)+n*(len(key)+8))
		}
		if t == nil || !bytes.Equal(t, tag) {
			buf, t = appendPiece(buf, tag)
		}
		var k []byte
		buf, k = appendPiece(buf, key)
		hits = append(hits, Hit{Tag: t, Key: k})
	})
	if hits == nil && err == nil {
		hits = []Hit{}
	}
	return hits, err
}

// Each calls fn with the records of q in index order and returns how many
// it called it with. tag and key are valid only during the call; fn must
// not use the View. After an error, fn may have seen some of the records.
func (v *View) Each(q Query, fn func(tag, key []byte)) (int, error) {
	count := q.Count
	if count == 0 {
		count = DefaultCount
	}
	if count < 0 || count > MaxCount {
		return 0, fmt.Errorf("%w: %d (must be 1 to %d)", ErrCount, q.Count, MaxCount)
	}
	// A page of an exact tag may be cached.
	page := q.Exact && q.Keep == nil && count <= store.MaxCachedTagPage
	if page {
		n := 0
		if v.s.CachedTagKeys(q.Tag, q.AfterKey, q.After, count, func(key []byte) {
			fn(q.Tag, key)
			n++
		}) {
			return n, nil
		}
	}
	if v.it == nil {
		it, err := v.s.SeekTags(q.Tag, q.AfterKey, q.After, q.Exact)
		if err != nil {
			return 0, err
		}
		v.it = it
	} else {
		v.it.Seek(q.Tag, q.AfterKey, q.After, q.Exact)
	}
	it := v.it
	v.page = v.page[:0]
	n := 0
	for n < count && it.Next() {
		if q.Exact && !bytes.Equal(it.Tag(), q.Tag) {
			break
		}
		if q.Keep != nil && !q.Keep(it.Key()) {
			continue
		}
		fn(it.Tag(), it.Key())
		if page {
			v.page = store.AppendPageKey(v.page, it.Key())
		}
		n++
	}
	if err := it.Err(); err != nil {
		return n, err
	}
	if page {
		// Fewer records than asked for: the tag has no more.
		it.CacheTagPage(q.Tag, q.AfterKey, q.After, n, v.page, n < count)
	}
	return n, nil
}

// Close releases the view.
func (v *View) Close() error {
	if v.it == nil {
		return nil
	}
	err := v.it.Close()
	v.it = nil
	return err
}

// appendPiece appends p to buf and returns the grown buffer and the copy,
// capped so that appending to the copy can never write into buf. A full
// buffer is left to the hits that reference it and a fresh one started.
func appendPiece(buf, p []byte) ([]byte, []byte) {
	if len(buf)+len(p) > cap(buf) {
		buf = make([]byte, 0, max(2*cap(buf), len(p)))
	}
	n := len(buf)
	buf = append(buf, p...)
	return buf, buf[n:len(buf):len(buf)]
}

// Update writes into b the index changes that turn the partition's tags
// from old into new; both must be sorted and free of duplicates.
func Update(b *store.Batch, key []byte, old, new []string) {
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new) || i < len(old) && old[i] < new[j]:
			b.DeleteTag([]byte(old[i]), key)
			i++
		case i == len(old) || new[j] < old[i]:
			b.PutTag([]byte(new[j]), key)
			j++
		default:
			i++
			j++
		}
	}
}

// Equal reports whether two sorted tag lists are equal.
func Equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Tags is the stored record of a partition's current tags: which handler's
// index function produced them, and the tags, sorted and unique.
type Tags struct {
	SHA  [20]byte // zero when the handler has no index function
	Tags []string
}

const tagsFormat = 1

// AppendBinary appends the record's encoding.
func (t Tags) AppendBinary(dst []byte) []byte {
	n := 1 + len(t.SHA) + binary.MaxVarintLen64
	for _, tag := range t.Tags {
		n += binary.MaxVarintLen64 + len(tag)
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, tagsFormat)
	dst = append(dst, t.SHA[:]...)
	dst = binary.AppendUvarint(dst, uint64(len(t.Tags)))
	for _, tag := range t.Tags {
		dst = binary.AppendUvarint(dst, uint64(len(tag)))
		dst = append(dst, tag...)
	}
	return dst
}

// DecodeTags decodes a tags record, checking that the tags are sorted and
// unique.
func DecodeTags(b []byte) (Tags, error) {
	var t Tags
	if len(b) < 1+20 || b[0] != tagsFormat {
		return t, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	copy(t.SHA[:], b[1:21])
	b = b[21:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return t, fmt.Errorf("%w: bad tag count", ErrCorrupt)
	}
	b = b[k:]
	t.Tags = make([]string, 0, n)
	for i := uint64(0); i < n; i++ {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return t, fmt.Errorf("%w: bad tag length", ErrCorrupt)
		}
		tag := string(b[k : k+int(l)])
		if i > 0 && tag <= t.Tags[i-1] {
			return t, fmt.Errorf("%w: tags out of order", ErrCorrupt)
		}
		t.Tags = append(t.Tags, tag)
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return t, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(b))
	}
	return t, nil
}
