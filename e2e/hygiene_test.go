package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// rawConn is a plain TCP connection speaking RESP by hand, for what client
// libraries will not send.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	rd *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, rd: bufio.NewReader(c)}
}

func (r *rawConn) send(b []byte) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func encodeCmd(args ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.Bytes()
}

// line reads one RESP line (without CRLF).
func (r *rawConn) line() (string, error) {
	r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	s, err := r.rd.ReadString('\n')
	return strings.TrimRight(s, "\r\n"), err
}

// reply reads one whole reply and renders it compactly.
func (r *rawConn) reply() (string, error) {
	l, err := r.line()
	if err != nil || l == "" {
		return l, err
	}
	switch l[0] {
	case '*', '%', '~':
		n, _ := strconv.Atoi(l[1:])
		if n < 0 {
			return "(nil)", nil
		}
		if l[0] == '%' {
			n *= 2
		}
		parts := []string{}
		for i := 0; i < n; i++ {
			p, err := r.reply()
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return "[" + strings.Join(parts, " ") + "]", nil
	case '$', '=':
		n, _ := strconv.Atoi(l[1:])
		if n < 0 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r.rd, buf); err != nil {
			return "", err
		}
		if l[0] == '=' {
			return string(buf[4:n]), nil // drop the "txt:" format
		}
		return string(buf[:n]), nil
	}
	return l, nil
}

func (r *rawConn) do(args ...string) string {
	r.t.Helper()
	r.send(encodeCmd(args...))
	s, err := r.reply()
	if err != nil {
		r.t.Fatalf("%q: %v", args, err)
	}
	return s
}

// closed reports whether the server closed the connection (within 10s).
func (r *rawConn) closed() bool {
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := r.rd.ReadByte()
	return err == io.EOF
}

func TestPipelineOfTenThousand(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	loadScript(t, c, counterLua(t))
	r := dialRaw(t, s.Addr)
	var b bytes.Buffer
	for i := 0; i < 10000; i++ {
		b.Write(encodeCmd("LEGION.APPLY", fmt.Sprintf("p%d", i%50), "incr"))
		if i%1000 == 0 {
			b.Write(encodeCmd("ECHO", fmt.Sprintf("mark%d", i)))
		}
	}
	go r.send(b.Bytes()) // the server answers while we are still sending
	for i := 0; i < 10000; i++ {
		got, err := r.reply()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(":%d", i/50+1); got != want {
			t.Fatalf("reply %d = %q, want %q", i, got, want)
		}
		if i%1000 == 0 {
			if m, _ := r.reply(); m != fmt.Sprintf("mark%d", i) {
				t.Fatalf("marker %d = %q", i, m)
			}
		}
	}
}

func TestProtocolLimits(t *testing.T) {
	s := startServer(t, "", "--proto-max-bulk-len", "1mb", "--maxclients", "4")
	other := s.client(t)
	if err := other.Ping(ctx(t)).Err(); err != nil {
		t.Fatal(err)
	}

	// A bulk over proto-max-bulk-len is refused from its header, before
	// the payload arrives, and the connection is closed.
	r := dialRaw(t, s.Addr)
	r.send([]byte("*2\r\n$4\r\nECHO\r\n$2000000\r\n"))
	if got, _ := r.line(); got != "-ERR Protocol error: invalid bulk length" {
		t.Fatalf("oversized bulk: %q", got)
	}
	if !r.closed() {
		t.Fatal("connection still open after a protocol error")
	}
	// One just under the limit is fine.
	r = dialRaw(t, s.Addr)
	big := strings.Repeat("x", 1<<20)
	if got := r.do("ECHO", big); got != big {
		t.Fatalf("1 MiB echo came back as %d bytes", len(got))
	}
	// Too many arguments.
	r = dialRaw(t, s.Addr)
	r.send([]byte("*2000000\r\n"))
	if got, _ := r.line(); got != "-ERR Protocol error: invalid multibulk length" {
		t.Fatalf("oversized multibulk: %q", got)
	}
	// An endless inline command.
	r = dialRaw(t, s.Addr)
	r.send(bytes.Repeat([]byte("a"), 70<<10))
	if got, _ := r.line(); got != "-ERR Protocol error: too big inline request" {
		t.Fatalf("oversized inline: %q", got)
	}
	// Garbage headers are answered by the parser, not a crash.
	r = dialRaw(t, s.Addr)
	r.send([]byte("*1\r\n$x\r\n"))
	if got, _ := r.line(); !strings.HasPrefix(got, "-ERR Protocol error") {
		t.Fatalf("bad bulk header: %q", got)
	}
	// Inline commands work, as in Redis.
	r = dialRaw(t, s.Addr)
	r.send([]byte("PING\r\n"))
	if got, _ := r.line(); got != "+PONG" {
		t.Fatalf("inline PING: %q", got)
	}

	// maxclients: 'other' and the two raw connections still open (the
	// 1 MiB echo and the inline PING) hold three, once the server has
	// dropped those it closed for protocol errors; one more fits, the
	// fifth is refused.
	deadline := time.Now().Add(10 * time.Second)
	for {
		info := other.Info(ctx(t), "clients").Val()
		if strings.Contains(info, "connected_clients:3\r\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server does not count the 3 open connections: %s", info)
		}
		time.Sleep(10 * time.Millisecond)
	}
	a := dialRaw(t, s.Addr)
	if got := a.do("PING"); got != "+PONG" {
		t.Fatalf("the fourth connection: %q", got)
	}
	for _, c := range []*rawConn{dialRaw(t, s.Addr), dialRaw(t, s.Addr)} {
		if got, err := c.line(); got != "-ERR max number of clients reached" {
			t.Fatalf("over maxclients: %q (%v)", got, err)
		}
	}
	// The others never noticed.
	if err := other.Ping(ctx(t)).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestIdleTimeout(t *testing.T) {
	s := startServer(t, "", "--timeout", "1")
	r := dialRaw(t, s.Addr)
	if r.do("PING") != "+PONG" {
		t.Fatal("no PONG")
	}
	if !r.closed() {
		t.Fatal("idle connection was not closed")
	}
	// CONFIG SET timeout 0 turns it off for new reads.
	c := s.client(t)
	if err := c.ConfigSet(ctx(t), "timeout", "0").Err(); err != nil {
		t.Fatal(err)
	}
	r = dialRaw(t, s.Addr)
	r.do("PING")
	r.c.SetReadDeadline(time.Now().Add(2500 * time.Millisecond))
	if _, err := r.rd.ReadByte(); err == io.EOF {
		t.Fatal("connection closed although timeout is 0")
	}
}

// TestStuckReaderDoesNotBlockOthers: a client that pipelines commands with
// large replies and never reads them blocks only itself.
func TestStuckReaderDoesNotBlockOthers(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	loadScript(t, c, `function apply(e, s) return #e, { blob = e } end`)
	if err := c.Do(ctx(t), "LEGION.APPLY", "big", strings.Repeat("z", 1<<20)).Err(); err != nil {
		t.Fatal(err)
	}
	stuck := dialRaw(t, s.Addr)
	var b bytes.Buffer
	for i := 0; i < 64; i++ {
		b.Write(encodeCmd("LEGION.GET", "big"))
	}
	stuck.send(b.Bytes()) // 64 MiB of replies nobody reads
	for i := 0; i < 200; i++ {
		if _, err := c.Do(ctx(t), "LEGION.APPLY", fmt.Sprintf("k%d", i%10), "x").Result(); err != nil {
			t.Fatalf("while another client is stuck: %v", err)
		}
	}
	if n, err := c.DBSize(ctx(t)).Result(); err != nil || n != 11 {
		t.Fatalf("DBSIZE = %d, %v", n, err)
	}
}

func TestConnectionCommands(t *testing.T) {
	s := startServer(t, "", "--requirepass", password)
	r := dialRaw(t, s.Addr)
	if got := r.do("AUTH", "nope"); got != "-WRONGPASS invalid username-password pair or user is disabled." {
		t.Fatalf("AUTH wrong: %q", got)
	}
	if got := r.do("HELLO", "3"); !strings.HasPrefix(got, "-NOAUTH HELLO must be called with the client already authenticated") {
		t.Fatalf("HELLO unauthenticated: %q", got)
	}
	got := r.do("HELLO", "3", "AUTH", "default", password, "SETNAME", "raw")
	for _, want := range []string{"server legion", "version ", "proto :3", "id :", "mode standalone", "role master", "modules []"} {
		if !strings.Contains(got, want) {
			t.Fatalf("HELLO reply %q lacks %q", got, want)
		}
	}
	if got := r.do("HELLO", "4"); got != "-NOPROTO unsupported protocol version" {
		t.Fatalf("HELLO 4: %q", got)
	}
	if got := r.do("LEGION.GET", "nothing"); got != "_" {
		t.Fatalf("RESP3 null: %q", got)
	}
	if got := r.do("CLIENT", "GETNAME"); got != "raw" {
		t.Fatalf("GETNAME: %q", got)
	}
	if got := r.do("CLIENT", "SETNAME", "has space"); !strings.HasPrefix(got, "-ERR Client names cannot contain spaces") {
		t.Fatalf("SETNAME with a space: %q", got)
	}
	if got := r.do("CLIENT", "SETINFO", "LIB-NAME", "rawlib"); got != "+OK" {
		t.Fatalf("SETINFO: %q", got)
	}
	if got := r.do("CLIENT", "INFO"); !strings.Contains(got, "name=raw") || !strings.Contains(got, "lib-name=rawlib") || !strings.Contains(got, "resp=3") {
		t.Fatalf("CLIENT INFO: %q", got)
	}
	if got := r.do("SELECT", "0"); got != "+OK" {
		t.Fatalf("SELECT 0: %q", got)
	}
	if got := r.do("SELECT", "1"); got != "-ERR DB index is out of range" {
		t.Fatalf("SELECT 1: %q", got)
	}
	if got := r.do("TIME"); !strings.HasPrefix(got, "[") || len(strings.Fields(got)) != 2 {
		t.Fatalf("TIME: %q", got)
	}
	if got := r.do("ECHO", "é\x00x"); got != "é\x00x" {
		t.Fatalf("ECHO binary: %q", got)
	}
	// RESET: back to RESP2, no name, and (with a password) logged out.
	if got := r.do("RESET"); got != "+RESET" {
		t.Fatalf("RESET: %q", got)
	}
	if got := r.do("PING"); got != "-NOAUTH Authentication required." {
		t.Fatalf("after RESET: %q", got)
	}
	if got := r.do("AUTH", "default", password); got != "+OK" {
		t.Fatalf("AUTH: %q", got)
	}
	if got := r.do("LEGION.GET", "nothing"); got != "(nil)" {
		t.Fatalf("RESP2 null after RESET: %q", got)
	}
	if got := r.do("CLIENT", "GETNAME"); got != "(nil)" {
		t.Fatalf("name after RESET: %q", got)
	}

	// CLIENT LIST and KILL from another client.
	c := s.client(t, func(o *redis.Options) { o.Password = password; o.ClientName = "killer" })
	victimID := strings.TrimPrefix(r.do("CLIENT", "ID"), ":")
	list, err := c.ClientList(ctx(t)).Result()
	if err != nil || !strings.Contains(list, "id="+victimID+" ") || !strings.Contains(list, "name=killer") {
		t.Fatalf("CLIENT LIST: %q %v", list, err)
	}
	if n, err := c.Do(ctx(t), "CLIENT", "KILL", "ID", victimID).Int64(); err != nil || n != 1 {
		t.Fatalf("CLIENT KILL ID: %d %v", n, err)
	}
	if !r.closed() {
		t.Fatal("killed client still connected")
	}
	if err := c.Do(ctx(t), "CLIENT", "KILL", "127.0.0.1:1").Err(); err == nil || err.Error() != "ERR No such client" {
		t.Fatalf("CLIENT KILL unknown: %v", err)
	}
	if got := c.Do(ctx(t), "QUIT").Val(); got != "OK" {
		t.Fatalf("QUIT: %v", got)
	}
}

func TestIntrospection(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	loadScript(t, c, counterLua(t))
	c.Do(ctx(t), "LEGION.APPLY", "k", "incr")

	// COMMAND INFO gives the key positions cluster clients route by.
	infos, err := c.Command(ctx(t)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if a := infos["legion.apply"]; a == nil || a.Arity != -3 || a.FirstKeyPos != 1 || a.LastKeyPos != 1 || a.StepCount != 1 || a.ReadOnly {
		t.Fatalf("legion.apply info: %+v", a)
	}
	if g := infos["legion.get"]; g == nil || g.Arity != 2 || g.FirstKeyPos != 1 || !g.ReadOnly {
		t.Fatalf("legion.get info: %+v", g)
	}
	if sr := infos["legion.search"]; sr == nil || sr.FirstKeyPos != 0 {
		t.Fatalf("legion.search info: %+v", sr)
	}
	all := infos
	r := dialRaw(t, s.Addr)
	if got := r.do("COMMAND", "INFO", "script|load", "nosuch"); !strings.HasPrefix(got, "[[script|load :3 ") || !strings.HasSuffix(got, " (nil)]") {
		t.Fatalf("COMMAND INFO script|load nosuch: %q", got)
	}
	count, err := c.Do(ctx(t), "COMMAND", "COUNT").Int64()
	if err != nil || int(count) != len(all) {
		t.Fatalf("COMMAND COUNT = %d, COMMAND lists %d", count, len(all))
	}
	for _, name := range []string{"legion.apply", "legion.get", "legion.search", "legion.inspect", "ping", "hello", "client", "info", "config", "command", "script"} {
		if all[name] == nil {
			t.Errorf("COMMAND lacks %s", name)
		}
	}
	keys, err := c.CommandGetKeys(ctx(t), "LEGION.APPLY", "mykey", "incr").Result()
	if err != nil || fmt.Sprint(keys) != "[mykey]" {
		t.Fatalf("COMMAND GETKEYS: %v %v", keys, err)
	}
	list, err := c.Do(ctx(t), "COMMAND", "LIST", "FILTERBY", "PATTERN", "legion.*").StringSlice()
	if want := "[legion.apply legion.backup legion.check legion.dryrun legion.get legion.inspect legion.query legion.script legion.script|help legion.script|list legion.script|show legion.script|use legion.search]"; err != nil || fmt.Sprint(list) != want {
		t.Fatalf("COMMAND LIST legion.*: %v %v", list, err)
	}
	docs, err := c.Do(ctx(t), "COMMAND", "DOCS", "legion.search").Result()
	if err != nil || !strings.Contains(fmt.Sprint(docs), "AFTER") {
		t.Fatalf("COMMAND DOCS: %v %v", docs, err)
	}

	info, err := c.Info(ctx(t)).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Server", "redis_version:", "legion_version:", "# Clients", "connected_clients:", "# Memory", "used_memory:",
		"# Persistence", "loading:0", "# Stats", "total_commands_processed:", "# Keyspace", "db0:keys=1,", "# Legion", "active_handler:", "partitions:1", "events_applied:1",
		"partition_filter_bytes:", "partition_filter_ready:", "partition_reads_skipped:"} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO lacks %q", want)
		}
	}
	if only, _ := c.Info(ctx(t), "legion").Result(); strings.Contains(only, "# Server") || !strings.Contains(only, "# Legion") {
		t.Errorf("INFO legion: %q", only)
	}

	// CONFIG GET answers what tools ask; CONFIG SET changes limits live.
	cfg, err := c.ConfigGet(ctx(t), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"port", "maxclients", "timeout", "appendonly", "save", "databases", "appendfsync", "script-instruction-budget"} {
		if _, ok := cfg[k]; !ok {
			t.Errorf("CONFIG GET * lacks %s", k)
		}
	}
	if cfg["appendfsync"] != "always" || cfg["databases"] != "1" {
		t.Errorf("CONFIG GET values: %v", cfg)
	}
	// fsync-min-interval spaces the syncs from the next one on: commits
	// that each wait for theirs take at least the interval apiece.
	if got, _ := c.ConfigGet(ctx(t), "fsync-min-interval").Result(); got["fsync-min-interval"] != "auto" {
		t.Fatalf("CONFIG GET fsync-min-interval: %v", got)
	}
	if err := c.ConfigSet(ctx(t), "fsync-min-interval", "10ms").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 6 {
		if err := c.Do(ctx(t), "LEGION.APPLY", fmt.Sprintf("paced%d", i), "incr").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("6 writes with syncs 10ms apart took %v", took)
	}
	if got, _ := c.ConfigGet(ctx(t), "fsync-min-interval").Result(); got["fsync-min-interval"] != "10ms" {
		t.Fatalf("CONFIG GET fsync-min-interval after SET: %v", got)
	}
	for _, v := range []string{"250us", "off", "auto"} {
		if err := c.ConfigSet(ctx(t), "fsync-min-interval", v).Err(); err != nil {
			t.Fatal(err)
		}
		if got, _ := c.ConfigGet(ctx(t), "fsync-min-interval").Result(); got["fsync-min-interval"] != v {
			t.Fatalf("CONFIG GET fsync-min-interval after SET %s: %v", v, got)
		}
	}
	loadScript(t, c, `function apply(e, s) local n = 0 for i = 1, 100000 do n = n + i end return n, s end`)
	if err := c.Do(ctx(t), "LEGION.APPLY", "loop", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(ctx(t), "script-instruction-budget", "1000").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx(t), "LEGION.APPLY", "loop", "x").Err(); err == nil || !strings.Contains(err.Error(), "instruction budget exceeded") {
		t.Fatalf("after lowering the budget: %v", err)
	}
	if got, _ := c.ConfigGet(ctx(t), "script-instruction-budget").Result(); got["script-instruction-budget"] != "1000" {
		t.Fatalf("CONFIG GET after SET: %v", got)
	}
	for _, bad := range []struct{ k, v, want string }{
		{"fsync-min-interval", "1s", "ERR CONFIG SET failed (possibly related to argument 'fsync-min-interval') - legion: fsync min interval 1s is out of range (auto, off, or up to 10ms)"},
		{"fsync-min-interval", "soon", "ERR CONFIG SET failed (possibly related to argument 'fsync-min-interval') - want auto, off or a duration"},
		{"nosuch", "1", "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'"},
		{"port", "1", "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config"},
		{"maxclients", "lots", "ERR CONFIG SET failed (possibly related to argument 'maxclients')"},
	} {
		if err := c.ConfigSet(ctx(t), bad.k, bad.v).Err(); err == nil || !strings.HasPrefix(err.Error(), bad.want) {
			t.Errorf("CONFIG SET %s %s: %v", bad.k, bad.v, err)
		}
	}
}

// TestProtectedMode connects from a second network namespace, so the
// server sees a non-loopback peer.
func TestProtectedMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip to create network namespaces")
	}
	tag := strconv.Itoa(os.Getpid() % 100000)
	nsServer, nsClient := "lgs"+tag, "lgc"+tag
	vethS, vethC := "lgs"+tag, "lgc"+tag
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	run("netns", "add", nsServer)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nsServer).Run() })
	run("netns", "add", nsClient)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nsClient).Run() })
	run("link", "add", vethS, "netns", nsServer, "type", "veth", "peer", "name", vethC, "netns", nsClient)
	run("-n", nsServer, "addr", "add", "10.213.77.1/30", "dev", vethS)
	run("-n", nsClient, "addr", "add", "10.213.77.2/30", "dev", vethC)
	for _, ns := range []string{nsServer, nsClient} {
		run("-n", ns, "link", "set", "lo", "up")
	}
	run("-n", nsServer, "link", "set", vethS, "up")
	run("-n", nsClient, "link", "set", vethC, "up")

	inServer := []string{"ip", "netns", "exec", nsServer}
	cliFrom := func(s *server, args ...string) string {
		_, port := splitAddr(t, s.Addr)
		out, _ := exec.Command("ip", append([]string{"netns", "exec", nsClient, "redis-cli", "-h", "10.213.77.1", "-p", port}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out))
	}

	s := startServerIn(t, inServer, "", "--bind", "10.213.77.1")
	if got := cliFrom(s, "PING"); !strings.Contains(got, "DENIED Legion is running in protected mode") {
		t.Fatalf("non-loopback client without a password: %q", got)
	}
	s.stop(9)

	s = startServerIn(t, inServer, "", "--bind", "10.213.77.1", "--protected-mode", "no")
	if got := cliFrom(s, "PING"); got != "PONG" {
		t.Fatalf("with --protected-mode no: %q", got)
	}
	s.stop(9)

	s = startServerIn(t, inServer, "", "--bind", "10.213.77.1", "--requirepass", password)
	if got := cliFrom(s, "PING"); !strings.Contains(got, "NOAUTH") {
		t.Fatalf("with a password, unauthenticated: %q", got)
	}
	if got := cliFrom(s, "-a", password, "--no-auth-warning", "PING"); got != "PONG" {
		t.Fatalf("with a password: %q", got)
	}
}
