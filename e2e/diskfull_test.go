package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// smallFS mounts a tmpfs of size bytes for the test and returns its path.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("this test fills a small file system of its own, and mounting one was refused (it needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func randomText(n int) string {
	b := make([]byte, n*3/4)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

const bigStateLua = `
function apply(event, state, ctx)
  return #event, { v = event }
end
`

var (
	diskFullReply  = regexp.MustCompile(`^ERR disk full, writes are refused until space is freed \(.*no space left on device\)$`)
	logFailedReply = regexp.MustCompile(`^ERR the log could not be made durable; restart the server once the cause is fixed \(.*no space left on device\)$`)
)

// TestDiskFull fills the data dir's file system. Writes are then either
// refused with a clear error while reads go on, and taken again once
// space is freed; or, where the log itself could not be written, the
// server stops with an error, and starts again once space is freed. No
// write hangs, a stop while the disk is full does not either, a start on
// a full disk waits for space, and every acknowledged write is there
// after each restart.
func TestDiskFull(t *testing.T) {
	// With small memtables the tables fill the disk first; with the
	// default ones, the log, which grows until the first flush.
	// Each fills the room left beside two ballast files, frees the first
	// and fills again, then frees the second, larger one, for room to go
	// on writing at the end.
	t.Run("tables", func(t *testing.T) { testDiskFull(t, "58m", 4<<20, "--memtable-size", "1mb") })
	t.Run("log", func(t *testing.T) { testDiskFull(t, "44m", 6<<20) })
	t.Run("log, fsync no", func(t *testing.T) { testDiskFull(t, "44m", 6<<20, "--fsync", "no") })
}

func testDiskFull(t *testing.T, size string, first int, flags ...string) {
	fs := smallFS(t, size)
	var ballasts []string
	for i, n := range []int{first, 20 << 20} {
		name := filepath.Join(fs, fmt.Sprintf("ballast%d", i))
		if err := os.WriteFile(name, []byte(randomText(n)), 0o644); err != nil {
			t.Fatal(err)
		}
		ballasts = append(ballasts, name)
	}
	free := func() {
		t.Helper()
		if err := os.Remove(ballasts[0]); err != nil {
			t.Fatal(err)
		}
		ballasts = ballasts[1:]
	}
	s := startServer(t, filepath.Join(fs, "data"), flags...)
	var c *redis.Client
	connect := func() {
		c = s.client(t, func(o *redis.Options) {
			o.ReadTimeout = 30 * time.Second // a write that hangs fails the test
			o.MaxRetries = 0
		})
	}
	connect()
	loadScript(t, c, bigStateLua)

	// Every acknowledged write survives, except with --fsync no after the
	// log failed: then the last ones, acknowledged before the log was
	// written, may be lost, as in a crash, but nothing before them.
	lossy := slices.Contains(flags, "no")
	type write struct{ key, value string }
	var acked []write
	checkAcked := func(logFailed bool) {
		t.Helper()
		for i, w := range acked {
			_, err := c.Do(ctx(t), "LEGION.GET", w.key).Text()
			if lossy && logFailed && errors.Is(err, redis.Nil) {
				t.Logf("%d of %d acknowledged writes lost with the log's last block (fsync no)", len(acked)-i, len(acked))
				for _, w := range acked[i:] {
					if _, err := c.Do(ctx(t), "LEGION.GET", w.key).Text(); !errors.Is(err, redis.Nil) {
						t.Fatalf("%s survived, but an earlier acknowledged write was lost: %v", w.key, err)
					}
				}
				acked = acked[:i]
				return
			}
			checkBigState(t, c, w.key, w.value)
		}
	}
	for round := 0; len(ballasts) > 0; round++ {
		logFailed := false
		var refusal error
		for i := 0; i < 3000 && refusal == nil; i++ {
			key, value := fmt.Sprintf("r%dk%04d", round, i), randomText(32<<10)
			if _, err := c.Do(ctx(t), "LEGION.APPLY", key, value).Result(); err != nil {
				refusal = err
				break
			}
			acked = append(acked, write{key, value})
		}
		if refusal == nil {
			t.Fatalf("%d writes of 32 KiB fit in a %s file system", len(acked), size)
		}
		t.Logf("round %d: %d writes acknowledged in all, then: %v", round, len(acked), refusal)

		switch {
		case diskFullReply.MatchString(refusal.Error()):
			// The memtables could not be flushed: writes are refused,
			// at once, and reads go on.
			if info := s.cli(t, "INFO", "persistence"); !strings.Contains(info, "disk_full:1") || !strings.Contains(info, "disk_full_reason:") {
				t.Fatalf("INFO persistence while the disk is full:\n%s", info)
			}
			for range 20 {
				_, err := c.Do(ctx(t), "LEGION.APPLY", "more", randomText(1<<10)).Result()
				if err == nil || !diskFullReply.MatchString(err.Error()) {
					t.Fatalf("write while the disk is full: %v", err)
				}
			}
			checkAcked(false)
			if round == 0 {
				// Freeing space while running: writes are taken again.
				free()
				deadline := time.Now().Add(20 * time.Second)
				for {
					_, err := c.Do(ctx(t), "LEGION.APPLY", "after", "taken").Result()
					if err == nil {
						acked = append(acked, write{"after", "taken"})
						break
					}
					if !diskFullReply.MatchString(err.Error()) {
						t.Fatalf("write once space is freed: %v", err)
					}
					if time.Now().After(deadline) {
						t.Fatalf("writes still refused 20s after space was freed:\n%s", s.cli(t, "INFO", "persistence"))
					}
					time.Sleep(100 * time.Millisecond)
				}
				if !strings.Contains(s.Log(), "disk has room again: writes resume") {
					t.Fatal("the end of the disk-full state was not logged")
				}
				continue
			}
			// A stop while the disk is full, then a start: it waits
			// for space to flush what the log replayed.
			s.stop(syscall.SIGTERM)
			if code := s.exitCode(); code != 0 {
				t.Fatalf("exit code %d of a stop while the disk is full:\n%s", code, s.Log())
			}
			removed := make(chan error, 1)
			go func(name string) {
				time.Sleep(2 * time.Second)
				removed <- os.Remove(name)
			}(ballasts[0])
			s.start()
			if err := <-removed; err != nil {
				t.Fatal(err)
			}
			ballasts = ballasts[1:]
		case logFailedReply.MatchString(refusal.Error()), isConnClosed(refusal):
			// The log could not be written: the server stops by
			// itself, so that a restart recovers exactly what the log
			// holds.
			select {
			case <-s.exited:
			case <-time.After(30 * time.Second):
				t.Fatalf("the server goes on after its log failed:\n%s", s.Log())
			}
			if code := s.exitCode(); code != 1 {
				t.Fatalf("exit code %d after the log failed, want 1", code)
			}
			if !strings.Contains(s.Log(), "storage failed: shutting down") {
				t.Fatalf("the stop was not explained:\n%s", s.Log())
			}
			free()
			s.start()
			logFailed = true
		default:
			t.Fatalf("write refused with an unclear error: %v", refusal)
		}
		connect()
		checkAcked(logFailed)
	}
	if _, err := c.Do(ctx(t), "LEGION.APPLY", "last", "yes").Result(); err != nil {
		t.Fatalf("write at the end: %v", err)
	}
}

// isConnClosed reports the errors of a connection that the server closed
// or of one it no longer takes, having stopped.
func isConnClosed(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "EOF")
}

func checkBigState(t *testing.T, c *redis.Client, key, value string) {
	t.Helper()
	got, err := c.Do(ctx(t), "LEGION.GET", key).Text()
	if err != nil {
		t.Fatalf("LEGION.GET %s: %v", key, err)
	}
	if want := `{"v":"` + value + `"}`; got != want {
		t.Fatalf("LEGION.GET %s = %.60q…, want %.60q…", key, got, want)
	}
}
