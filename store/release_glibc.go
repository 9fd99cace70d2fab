//go:build linux && cgo

package store

/*
#cgo LDFLAGS: -lpthread
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#include <pthread.h>
static void *legion_trim(void *arg) { malloc_trim(0); return NULL; }
// legion_release trims on a thread of its own, which it leaves to end by
// itself: the caller's goroutine keeps its P only for pthread_create.
static void legion_release(void) {
	pthread_attr_t attr;
	pthread_t t;
	if (pthread_attr_init(&attr) != 0) {
		malloc_trim(0);
		return;
	}
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, legion_trim, NULL) != 0) {
		malloc_trim(0);
	}
	pthread_attr_destroy(&attr);
}
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
//
// The trim runs on a C thread of its own and this returns at once: it
// walks every arena, and took up to 4.6 ms in a runtime trace, during
// which a cgo call keeps its goroutine's P, and on a node with one P the
// clients would wait.
func releaseFreeMemory() { C.legion_release() }
