//go:build linux && cgo

package store

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
static void legion_release(void) { malloc_trim(0); }
#else
static void legion_release(void) {}
#endif
*/
import "C"

// releaseFreeMemory hands the C allocator's free pages back to the
// system. Pebble allocates its memtables and block buffers with C's
// malloc; glibc keeps what they free in its arenas, where fragmentation
// strands it: after loading a million partitions that is about 70 MB of
// a node's resident memory.
func releaseFreeMemory() { C.legion_release() }
