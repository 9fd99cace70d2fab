//go:build !linux

package store

import (
	"errors"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// syncRing exists on Linux only (io_uring); elsewhere the log syncs with
// plain system calls.
type syncRing struct{}

func (*syncRing) close() {}

func (*syncRing) directLog() bool { return false }

func (*syncRing) directRefused() error { return nil }

func withSyncRing(fs vfs.FS, direct bool) (vfs.FS, *syncRing, error) {
	return fs, nil, errors.New("io_uring is Linux's")
}
