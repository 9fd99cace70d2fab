package legion

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// eventFormat versions the payload of an Event delta. The crdt package
// treats payloads as opaque bytes; this is their meaning.
const eventFormat = 1

// event is what an Event delta carries: everything a replica needs to
// replay it exactly.
type event struct {
	sha  [20]byte // the handler that accepted the event; replays use it
	time int64    // ms since the epoch when accepted: ctx.time everywhere
	data []byte   // the client's event bytes
}

func (e event) appendBinary(dst []byte) []byte {
	dst = slices.Grow(dst, 1+len(e.sha)+binary.MaxVarintLen64+len(e.data))
	dst = append(dst, eventFormat)
	dst = append(dst, e.sha[:]...)
	dst = binary.AppendVarint(dst, e.time)
	return append(dst, e.data...)
}

var errBadEvent = errors.New("legion: corrupt event payload")

// decodeEvent decodes a payload; data aliases b.
func decodeEvent(b []byte) (event, error) {
	var e event
	if len(b) < 1+20+1 || b[0] != eventFormat {
		return e, fmt.Errorf("%w: bad header", errBadEvent)
	}
	copy(e.sha[:], b[1:21])
	t, n := binary.Varint(b[21:])
	if n <= 0 {
		return e, fmt.Errorf("%w: bad time", errBadEvent)
	}
	e.time = t
	e.data = b[21+n:]
	return e, nil
}

func shaHex(sha [20]byte) string { return hex.EncodeToString(sha[:]) }

func parseSHA(s string) ([20]byte, error) {
	var sha [20]byte
	if len(s) != 40 {
		return sha, fmt.Errorf("%w: %q", ErrBadSHA, s)
	}
	if _, err := hex.Decode(sha[:], []byte(s)); err != nil {
		return sha, fmt.Errorf("%w: %q", ErrBadSHA, s)
	}
	return sha, nil
}
