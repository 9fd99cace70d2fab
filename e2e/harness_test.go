// Package e2e tests a real legion-server process through real Redis
// clients: go-redis, redis-cli, redis-py and ioredis.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// serverBin is the legion-server binary built once for the package.
var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "legion-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBin = filepath.Join(dir, "legion-server")
	args := []string{"build", "-o", serverBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/legion-server")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building legion-server:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a legion-server process started by a test.
type server struct {
	t       testing.TB
	cmd     *exec.Cmd
	Addr    string
	Admin   string // host:port of the admin HTTP server
	DataDir string
	args    []string
	wrap    []string // command prefix, e.g. ip netns exec NAME

	mu     sync.Mutex
	log    strings.Builder // everything the process wrote to stderr
	exited chan struct{}
}

var readyLine = regexp.MustCompile(`msg="legion-server ready" addr=(\S+) admin=(\S+)`)

// startServer starts legion-server on a free port with the given data dir
// ("" = in memory) and extra flags, and waits until it serves.
func startServer(t testing.TB, dataDir string, extra ...string) *server {
	t.Helper()
	return startServerIn(t, nil, dataDir, extra...)
}

// startServerIn is startServer with the process started through wrap
// (for example inside a network namespace).
func startServerIn(t testing.TB, wrap []string, dataDir string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, DataDir: dataDir, wrap: wrap}
	s.args = append([]string{"--port", "0", "--admin-port", "0", "--log-level", "debug"}, extra...)
	if dataDir == "" {
		s.args = append(s.args, "--in-memory")
	} else {
		s.args = append(s.args, "--data-dir", dataDir)
	}
	s.start()
	t.Cleanup(func() {
		s.stop(syscall.SIGKILL)
		// The server under test is built with -race when the tests are:
		// a race it detects fails the test that drove it.
		if log := s.Log(); strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("legion-server reported a data race:\n%s", log)
		}
	})
	return s
}

func (s *server) start() {
	s.t.Helper()
	argv := append(append(append([]string(nil), s.wrap...), serverBin), s.args...)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	addr := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := readyLine.FindStringSubmatch(line); m != nil {
				select {
				case addr <- [2]string{m[1], m[2]}:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		s.cmd.Wait()
		close(s.exited)
	}()
	select {
	case a := <-addr:
		s.Addr, s.Admin = a[0], a[1]
	case <-s.exited:
		s.t.Fatalf("legion-server exited before serving:\n%s", s.Log())
	case <-time.After(60 * time.Second):
		s.t.Fatalf("legion-server did not become ready:\n%s", s.Log())
	}
}

// Log returns what the server wrote to stderr so far.
func (s *server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stop sends sig and waits for the process to exit.
func (s *server) stop(sig syscall.Signal) {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("legion-server did not exit within 30s of %v", sig)
	}
}

// restart stops the server with sig and starts it again with the same
// flags and data dir.
func (s *server) restart(sig syscall.Signal) {
	s.t.Helper()
	s.stop(sig)
	s.start()
}

// exitCode returns the process's exit code after it stopped.
func (s *server) exitCode() int {
	<-s.exited
	return s.cmd.ProcessState.ExitCode()
}

// client returns a go-redis client for the server, closed with the test.
func (s *server) client(t testing.TB, opts ...func(*redis.Options)) *redis.Client {
	o := &redis.Options{Addr: s.Addr, PoolSize: 64, MaxRetries: -1}
	for _, f := range opts {
		f(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// cli runs redis-cli against the server and returns its stdout.
func (s *server) cli(t testing.TB, args ...string) string {
	t.Helper()
	host, port := splitAddr(t, s.Addr)
	cmd := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %q: %v\n%s", args, err, out)
	}
	return string(out)
}

func splitAddr(t testing.TB, addr string) (host, port string) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// counterLua is the counter example handler.
func counterLua(t testing.TB) string {
	b, err := os.ReadFile("../scripts/counter.lua")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
