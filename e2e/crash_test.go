package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestKill9LosesNothingAcknowledged kills the server with SIGKILL under
// concurrent load, several times. After each restart every event that was
// acknowledged (with --fsync always) is there, no event was applied twice,
// and the tag index matches the states exactly.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	s := startServer(t, t.TempDir(), "--fsync", "always")
	loadScript(t, s.client(t), counterLua(t))

	const keys, workers = 40, 16
	acked := make([]int64, keys)    // increments acknowledged, per key
	inflight := make([]int64, keys) // increments sent and not answered when the server died
	seed := time.Now().UnixNano()
	r := rand.New(rand.NewSource(seed))

	for round := 0; round < rounds; round++ {
		c := s.client(t, func(o *redis.Options) { o.DialTimeout = time.Second })
		stop := make(chan struct{})
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				rr := rand.New(rand.NewSource(seed + int64(round*workers+w)))
				for {
					select {
					case <-stop:
						return
					default:
					}
					k := rr.Intn(keys)
					mu.Lock()
					inflight[k]++
					mu.Unlock()
					_, err := c.Do(context.Background(), "LEGION.APPLY", fmt.Sprintf("c%d", k), "incr").Result()
					mu.Lock()
					if err == nil {
						inflight[k]--
						acked[k]++
					}
					mu.Unlock()
					if err != nil {
						return // the server is gone; the event stays counted as in flight
					}
				}
			}(w)
		}
		time.Sleep(time.Duration(200+r.Intn(800)) * time.Millisecond)
		s.stop(syscall.SIGKILL)
		close(stop)
		wg.Wait()
		c.Close()

		s.start()
		c = s.client(t)
		waitPartitionFilter(t, c) // the reads below go through it
		var sum int64
		want := map[string]string{}
		for k := 0; k < keys; k++ {
			key := fmt.Sprintf("c%d", k)
			v, err := c.Do(ctx(t), "LEGION.GET", key).Text()
			var n int64
			switch {
			case errors.Is(err, redis.Nil):
			case err != nil:
				t.Fatal(err)
			default:
				fmt.Sscanf(v, `{"count":%d}`, &n)
				want[key] = "count:" + strconv.FormatInt(n, 10)
			}
			if n < acked[k] || n > acked[k]+inflight[k] {
				t.Fatalf("seed %d round %d: %s = %d after kill -9; %d were acknowledged and %d in flight",
					seed, round, key, n, acked[k], inflight[k])
			}
			// What was in flight either happened or not; from now on it is history.
			acked[k], inflight[k] = n, 0
			sum += n
		}
		got := map[string]string{}
		res, err := c.Do(ctx(t), "LEGION.SEARCH", "", "COUNT", 100000).Slice()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range res {
			p := x.([]any)
			tag, key := p[0].(string), p[1].(string)
			if prev, dup := got[key]; dup {
				t.Fatalf("seed %d round %d: %s indexed under %s and %s", seed, round, key, prev, tag)
			}
			got[key] = tag
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("seed %d round %d: index does not match the states:\n index %v\n states %v", seed, round, got, want)
		}
		if sum == 0 {
			t.Fatalf("seed %d round %d: no event was applied before the kill", seed, round)
		}
		t.Logf("round %d: %d increments survive", round, sum)
	}
}

// TestRedisCliSession runs the README's redis-cli session.
func TestRedisCliSession(t *testing.T) {
	s := startServer(t, "")
	src := counterLua(t)
	sha := strings.TrimSpace(s.cli(t, "SCRIPT", "LOAD", src))
	if len(sha) != 40 {
		t.Fatalf("SCRIPT LOAD printed %q", sha)
	}
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"ECHO", "hello"}, "hello"},
		{[]string{"LEGION.APPLY", "visits:home", "incr"}, "1"},
		{[]string{"LEGION.APPLY", "visits:home", "incr"}, "2"},
		{[]string{"LEGION.APPLY", "visits:about", "incr", "FAST"}, "1"},
		{[]string{"LEGION.APPLY", "visits:home", "incrby 40"}, "42"},
		{[]string{"LEGION.GET", "visits:home"}, `{"count":42}`},
		{[]string{"LEGION.GET", "visits:nowhere"}, ""},
		{[]string{"LEGION.SEARCH", "count:", "COUNT", "10"}, "count:1\nvisits:about\ncount:42\nvisits:home"},
		{[]string{"LEGION.SEARCH", "count:42", "EXACT"}, "count:42\nvisits:home"},
		{[]string{"LEGION.SEARCH", "count:1", "AFTER", "visits:about"}, "count:42\nvisits:home"},
		{[]string{"LEGION.APPLY", "visits:home", "jump"}, "ERR script: apply: handler:"},
	} {
		got := strings.TrimSpace(s.cli(t, step.args...))
		if !strings.HasPrefix(got, step.want) || step.want == "" && got != "" {
			t.Errorf("redis-cli %q:\n got  %q\n want %q", step.args, got, step.want)
		}
	}
	inspect := s.cli(t, "LEGION.INSPECT", "visits:home")
	for _, want := range []string{`"infimum"`, `"participants"`, `"state":{"count":42}`, `"tags":["count:42"]`} {
		if !strings.Contains(inspect, want) {
			t.Errorf("LEGION.INSPECT lacks %s: %s", want, inspect)
		}
	}
}
