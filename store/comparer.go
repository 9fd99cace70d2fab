package store

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// partitionComparer orders keys as bytes, like pebble's default, and
// splits the key of each partition record after the partition's prefix
// (AppendPartitionPrefix). pebble's bloom filters then hold partitions,
// not records, and reading a partition is one prefix iteration that skips
// every table whose filter does not hold it, where a range scan has to
// look into every table of L0 and one of each level below (about twice
// as fast on a cold read). Other keys are their own prefix. Partition
// prefixes are self-delimiting (escaped): no prefix begins another, so the
// order of prefixes is the order of keys, as pebble requires of a Split.
//
// Data dirs created since format 3 use it; pebble records the comparer's
// name and refuses any other, so an older data dir keeps pebble's default
// (see comparerOf).
var partitionComparer = func() *pebble.Comparer {
	c := *pebble.DefaultComparer
	c.Split = partitionSplit
	c.Name = "legion.partitions.v1"
	return &c
}()

func partitionSplit(key []byte) int {
	if n, ok := partitionPrefixLen(key); ok {
		return n
	}
	return len(key)
}

// comparerOf returns the comparer of the pebble database in dir: the one
// its newest OPTIONS file names, or partitionComparer if it has none (a
// new data dir).
func comparerOf(fs vfs.FS, dir string) (*pebble.Comparer, error) {
	names, err := fs.List(dir)
	if err != nil {
		if oserror.IsNotExist(err) {
			return partitionComparer, nil
		}
		return nil, classifyOpenError(dir, err)
	}
	newest, newestNum := "", uint64(0)
	for _, name := range names {
		num, ok := strings.CutPrefix(name, "OPTIONS-")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(num, 10, 64); err == nil && (newest == "" || n > newestNum) {
			newest, newestNum = name, n
		}
	}
	if newest == "" {
		return partitionComparer, nil
	}
	f, err := fs.Open(fs.PathJoin(dir, newest))
	if err != nil {
		return nil, classifyOpenError(dir, err)
	}
	defer f.Close()
	text, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, classifyOpenError(dir, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(text))
	section := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		name, ok := strings.CutPrefix(line, "comparer=")
		if !ok || section != "[Options]" {
			continue
		}
		switch name {
		case partitionComparer.Name:
			return partitionComparer, nil
		case pebble.DefaultComparer.Name:
			return pebble.DefaultComparer, nil
		}
		return nil, fmt.Errorf("%w: %s holds a pebble database of another program (comparer %q)", ErrNotLegion, dir, name)
	}
	return nil, fmt.Errorf("%w: %s/%s names no comparer", ErrCorrupt, dir, newest)
}
