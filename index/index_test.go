package index

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/legiondb/legion/store"
)

type rec struct{ tag, key string }

func sortRecs(r []rec) {
	sort.Slice(r, func(i, j int) bool {
		if r[i].tag != r[j].tag {
			return r[i].tag < r[j].tag
		}
		return r[i].key < r[j].key
	})
}

// TestSearchMatchesModel drives Update with random tag sets per key and
// checks every search form against a sorted model of (tag, key) records.
func TestSearchMatchesModel(t *testing.T) {
	seed := rand.Int63()
	r := rand.New(rand.NewSource(seed))
	s, err := store.Open(store.Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	vocab := []string{"", "a", "a\x00", "ab", "b", "color:red", "color:blue", "\xff"}
	current := map[string][]string{}
	for round := 0; round < 300; round++ {
		key := fmt.Sprintf("k%d", r.Intn(40))
		var tags []string
		for _, v := range vocab {
			if r.Intn(3) == 0 {
				tags = append(tags, v)
			}
		}
		sort.Strings(tags)
		b := s.NewBatch()
		Update(b, []byte(key), current[key], tags)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		b.Close()
		current[key] = tags
	}
	var model []rec
	for k, tags := range current {
		for _, tag := range tags {
			model = append(model, rec{tag, k})
		}
	}
	sortRecs(model)

	// One view answers every query too, through Each, as a pipeline's
	// searches are: its iterator and page buffer are reused.
	view := NewView(s)
	defer view.Close()
	check := func(q Query) {
		t.Helper()
		got, err := Search(s, q)
		if err != nil {
			t.Fatal(err)
		}
		var each []Hit
		n, err := view.Each(q, func(tag, key []byte) {
			each = append(each, Hit{Tag: bytes.Clone(tag), Key: bytes.Clone(key)})
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != len(each) || !slices.EqualFunc(each, got, func(a, b Hit) bool {
			return bytes.Equal(a.Tag, b.Tag) && bytes.Equal(a.Key, b.Key)
		}) {
			t.Fatalf("seed %d: %+v: Each gave %d, %q; Search %q", seed, q, n, each, got)
		}
		count := q.Count
		if count == 0 {
			count = DefaultCount
		}
		var want []rec
		for _, m := range model {
			if len(want) == count {
				break
			}
			after := m.tag > string(q.Tag) || m.tag == string(q.Tag) && (m.key > string(q.AfterKey) || !q.After && m.key == string(q.AfterKey))
			if !after {
				continue
			}
			if q.Exact && m.tag != string(q.Tag) {
				break
			}
			want = append(want, m)
		}
		if len(got) != len(want) {
			t.Fatalf("seed %d: %+v: %d hits, want %d", seed, q, len(got), len(want))
		}
		for i := range got {
			if string(got[i].Tag) != want[i].tag || string(got[i].Key) != want[i].key {
				t.Fatalf("seed %d: %+v: hit %d = (%q,%q), want %q", seed, q, i, got[i].Tag, got[i].Key, want[i])
			}
		}
	}
	for _, tag := range append(vocab, "a\x00\x00", "zzz") {
		for _, exact := range []bool{false, true} {
			for _, count := range []int{0, 1, 3, 1000} {
				check(Query{Tag: []byte(tag), Count: count, Exact: exact})
				for _, k := range []string{"", "k1", "k17", "k9", "zz"} {
					check(Query{Tag: []byte(tag), After: true, AfterKey: []byte(k), Count: count, Exact: exact})
				}
			}
		}
	}

	// Paging with AFTER over the whole index visits every record once, in order.
	var paged []rec
	q := Query{Count: 7}
	for {
		hits, err := Search(s, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			paged = append(paged, rec{string(h.Tag), string(h.Key)})
		}
		if len(hits) < q.Count {
			break
		}
		last := hits[len(hits)-1]
		q = Query{Tag: last.Tag, After: true, AfterKey: last.Key, Count: 7}
	}
	if len(paged) != len(model) {
		t.Fatalf("seed %d: paging saw %d records, want %d", seed, len(paged), len(model))
	}
	for i := range paged {
		if paged[i] != model[i] {
			t.Fatalf("seed %d: paging record %d = %q, want %q", seed, i, paged[i], model[i])
		}
	}
}

func TestSearchCountBounds(t *testing.T) {
	s, err := store.Open(store.Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []int{-1, MaxCount + 1} {
		if _, err := Search(s, Query{Count: c}); !errors.Is(err, ErrCount) {
			t.Errorf("Count %d: err = %v, want ErrCount", c, err)
		}
	}
}

func TestTagsRecord(t *testing.T) {
	in := Tags{SHA: [20]byte{1, 2, 3}, Tags: []string{"", "a", "a\x00", "b"}}
	b := in.AppendBinary(nil)
	out, err := DecodeTags(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.SHA != in.SHA || !Equal(out.Tags, in.Tags) {
		t.Fatalf("round trip: %+v", out)
	}
	for i := 0; i < len(b); i++ {
		if _, err := DecodeTags(b[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: err = %v", i, err)
		}
	}
	unsorted := Tags{Tags: []string{"b", "a"}}.AppendBinary(nil)
	if _, err := DecodeTags(unsorted); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unsorted tags accepted: %v", err)
	}
}

func FuzzDecodeTags(f *testing.F) {
	f.Add(Tags{Tags: []string{"x", "y"}}.AppendBinary(nil))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		tags, err := DecodeTags(b)
		if err != nil {
			return
		}
		if got := tags.AppendBinary(nil); string(got) != string(b) {
			t.Fatalf("re-encoding differs: %x vs %x", got, b)
		}
	})
}
