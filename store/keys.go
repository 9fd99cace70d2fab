package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Record kinds: the first byte of every key. Partition data is further
// prefixed by the 2-byte slot, so one slot is one contiguous key range and
// one partition (snapshot, tags, deltas) is a contiguous range inside it.
const (
	kindMeta      byte = 'm' // 'm' name → value
	kindHandler   byte = 'h' // 'h' sha1(20) → handler record
	kindPartition byte = 'p' // 'p' slot(2) esc(key) sub ...
	kindTag       byte = 'x' // 'x' esc(tag) key → ""
)

// Sub-records of a partition, after 'p' slot esc(key).
const (
	subDelta    byte = 'd' // + crdt id key → encoded pending delta
	subSnapshot byte = 's' // → tags record and encoded infimum (see snapshot.go)
	subTags     byte = 't' // → encoded tags record, newer than the snapshot's
)

// Slots is the number of hash slots, as in Redis Cluster.
const Slots = 16384

// Slot returns CRC16(key) mod 16384 with Redis Cluster's {hashtag} rule:
// if the key contains a '{' followed later by a '}' with at least one byte
// between them, only the bytes between the first '{' and the next '}' are
// hashed.
func Slot(key []byte) uint16 {
	if i := bytes.IndexByte(key, '{'); i >= 0 {
		if j := bytes.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) & (Slots - 1)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum
// Redis Cluster uses for key slots, a byte at a time through crc16Table.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^c]
	}
	return crc
}

// crc16Table holds the CRC of each byte value shifted into the high byte;
// it is computed once and never written after.
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

// AppendEscaped appends an order-preserving, prefix-free encoding of s:
// 0x00 becomes 0x00 0xFF and the whole is terminated by 0x00 0x01. For any
// strings a < b, escaped(a) < escaped(b) bytewise and escaped(a) is never a
// prefix of escaped(b), so a tuple (a, rest) encodes as escaped(a)+rest and
// sorts like the tuple.
func AppendEscaped(dst, s []byte) []byte {
	for {
		i := bytes.IndexByte(s, 0)
		if i < 0 {
			dst = append(dst, s...)
			break
		}
		dst = append(dst, s[:i+1]...)
		dst = append(dst, 0xFF)
		s = s[i+1:]
	}
	return append(dst, 0x00, 0x01)
}

// DecodeEscaped decodes the escaped string at the start of b into dst and
// returns the remaining bytes.
func DecodeEscaped(dst, b []byte) (out, rest []byte, err error) {
	for {
		i := bytes.IndexByte(b, 0)
		if i < 0 || i+1 >= len(b) {
			return nil, nil, fmt.Errorf("%w: unterminated escaped string", ErrCorrupt)
		}
		dst = append(dst, b[:i]...)
		switch b[i+1] {
		case 0x01:
			return dst, b[i+2:], nil
		case 0xFF:
			dst = append(dst, 0)
			b = b[i+2:]
		default:
			return nil, nil, fmt.Errorf("%w: bad escape byte %#x", ErrCorrupt, b[i+1])
		}
	}
}

// escapedLen returns the length of the escaped string at the start of b,
// its terminator included.
func escapedLen(b []byte) (int, bool) {
	n := 0
	for {
		i := bytes.IndexByte(b[n:], 0)
		if i < 0 || n+i+1 >= len(b) {
			return 0, false
		}
		switch b[n+i+1] {
		case 0x01:
			return n + i + 2, true
		case 0xFF:
			n += i + 2
		default:
			return 0, false
		}
	}
}

func appendSlotPrefix(dst []byte, slot uint16) []byte {
	dst = append(dst, kindPartition)
	return binary.BigEndian.AppendUint16(dst, slot)
}

// AppendPartitionPrefix appends the prefix shared by every record of the
// partition key in slot.
func AppendPartitionPrefix(dst []byte, slot uint16, key []byte) []byte {
	return AppendEscaped(appendSlotPrefix(dst, slot), key)
}

// SlotBounds returns the [lower, upper) key range holding every record of
// every partition in slot.
func SlotBounds(slot uint16) (lower, upper []byte) {
	lower = appendSlotPrefix(nil, slot)
	if slot == Slots-1 {
		upper = []byte{kindPartition + 1}
	} else {
		upper = appendSlotPrefix(nil, slot+1)
	}
	return lower, upper
}

func tagKey(dst, tag, key []byte) []byte {
	dst = append(dst, kindTag)
	dst = AppendEscaped(dst, tag)
	return append(dst, key...)
}

func metaKey(name string) []byte {
	return append([]byte{kindMeta}, name...)
}

func handlerKey(sha [20]byte) []byte {
	return append([]byte{kindHandler}, sha[:]...)
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil if there is none.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
