//go:build !linux

package store

import "github.com/cockroachdb/pebble/v2/vfs"

// yielder exists on Linux only (its writers park on eventfds); elsewhere
// tables are written without yielding.
type yielder struct{}

func (*yielder) close() {}

func withYields(fs vfs.FS, uring bool) (vfs.FS, *yielder, error) { return fs, nil, nil }

func (*yielder) hasRing() bool { return false }
