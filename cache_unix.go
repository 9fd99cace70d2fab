//go:build unix

package legion

import "syscall"

// allocRing returns n zeroed bytes mapped outside the Go heap, or nil if
// the system refuses. The cache's rings live there: the garbage collector
// neither scans them nor counts them, so they do not raise the heap's
// target, and the memory a node holds is the cache's budget plus the Go
// heap rather than twice the budget.
func allocRing(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	return b
}

// freeRing unmaps a ring from allocRing. Nothing may refer to it after.
func freeRing(b []byte) {
	if b != nil {
		_ = syscall.Munmap(b)
	}
}
