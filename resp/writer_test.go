package resp

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tidwall/redcon"
)

// TestWriterHeadersMatchRedcon: the bulk and array headers written with
// their digits inline are redcon's, for every length.
func TestWriterHeadersMatchRedcon(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10, 11, 42, 99, 100, 101, 999, 1000, 65535, 1 << 20} {
		s := strings.Repeat("x", n)
		var w writer
		w.bulk([]byte(s))
		w.bulkString(s)
		w.array(n)
		want := redcon.AppendArray(redcon.AppendBulkString(redcon.AppendBulk(nil, []byte(s)), s), n)
		if !bytes.Equal(w.b, want) {
			t.Fatalf("length %d: wrote %.40q, redcon writes %.40q", n, w.b, want)
		}
	}
	if got, want := appendPrefix(nil, '*', -1), redcon.AppendArray(nil, -1); !bytes.Equal(got, want) {
		t.Fatalf("-1: wrote %q, redcon writes %q", got, want)
	}
}
