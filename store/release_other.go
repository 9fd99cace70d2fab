//go:build !(linux && cgo)

package store

// releaseFreeMemory does nothing: without cgo pebble allocates on the Go
// heap, whose scavenger returns free memory.
func releaseFreeMemory() {}
