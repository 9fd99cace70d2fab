package store

import (
	"encoding/binary"
	"fmt"
)

// A snapshot record holds a partition's infimum and, from format 2 on, its
// tags record, so that an event that rewrites the snapshot writes the tags
// with it and no record of their own. Its value is then snapshotTagged,
// the tags record's length (uvarint), the tags record, and the infimum. A
// format 1 value is the infimum alone, whose first byte is its own format
// byte, never snapshotTagged.
//
// A partition's separate tags record, when there is one, is newer than the
// tags its snapshot carries: it is written when the tags change without
// the snapshot (an event appended to the log, a reindex, a repair), and
// deleted in the batch that next writes the snapshot with tags.
const snapshotTagged byte = 0xfe

// AppendSnapshotTags begins a snapshot record with tags in dst: append the
// infimum's encoding after it.
func AppendSnapshotTags(dst, tags []byte) []byte {
	dst = append(dst, snapshotTagged)
	dst = binary.AppendUvarint(dst, uint64(len(tags)))
	return append(dst, tags...)
}

// SplitSnapshot separates a snapshot record into its tags record (tagged
// false for a format 1 record, which has none) and its infimum. Both
// alias v.
func SplitSnapshot(v []byte) (tags, inf []byte, tagged bool, err error) {
	if len(v) == 0 || v[0] != snapshotTagged {
		return nil, v, false, nil
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || n > uint64(len(v)-1-w) {
		return nil, nil, false, fmt.Errorf("%w: snapshot record with a bad tags length", ErrCorrupt)
	}
	at := 1 + w
	return v[at : at+int(n)], v[at+int(n):], true, nil
}

// PartitionTags reads the current tags record of one partition: its
// separate tags record if it has one, else the one its snapshot carries.
// ok is false when it has neither (a partition written before format 2
// whose handler has no index, or none at all). The two reads are not one
// view: the caller holds the key against writers.
func (s *Store) PartitionTags(slot uint16, key []byte) (tags []byte, ok bool, err error) {
	prefix := AppendPartitionPrefix(nil, slot, key)
	if v, ok, err := s.get(append(prefix[:len(prefix):len(prefix)], subTags)); err != nil || ok {
		return v, ok, err
	}
	v, ok, err := s.get(append(prefix, subSnapshot))
	if err != nil || !ok {
		return nil, false, err
	}
	tags, _, tagged, err := SplitSnapshot(v)
	return tags, tagged, err
}
