package server

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legiondb/legion"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPrecedenceFlagEnvFileDefault(t *testing.T) {
	file := filepath.Join(t.TempDir(), "legion.toml")
	os.WriteFile(file, []byte(`
port = 8000
data-dir = "/srv/legion"
fsync = "everysec"
script_timeout = "250ms"
maxclients = 50
in-memory = false
`), 0o644)
	var out bytes.Buffer
	cases := []struct {
		args []string
		env  map[string]string
		port int
	}{
		{nil, nil, 7379},
		{[]string{"--config", file}, nil, 8000},
		{[]string{"--config", file}, map[string]string{"LEGION_PORT": "8001"}, 8001},
		{[]string{"--config", file, "--port", "8002"}, map[string]string{"LEGION_PORT": "8001"}, 8002},
		{nil, map[string]string{"LEGION_CONFIG": file}, 8000},
	}
	for _, tc := range cases {
		cfg, action, err := ParseArgs(tc.args, env(tc.env), &out)
		if err != nil || action != ActionRun {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if cfg.Port != tc.port {
			t.Errorf("%v %v: port %d, want %d", tc.args, tc.env, cfg.Port, tc.port)
		}
	}
	cfg, _, _ := ParseArgs([]string{"--config", file, "--maxclients", "7"}, env(map[string]string{"LEGION_FSYNC": "no"}), &out)
	if cfg.DB.DataDir != "/srv/legion" || cfg.DB.Fsync != legion.FsyncNo || cfg.DB.Limits.Timeout != 250*time.Millisecond || cfg.MaxClients != 7 || cfg.ConfigFile != file {
		t.Fatalf("merged config: %+v", cfg)
	}
}

func TestOptionValues(t *testing.T) {
	var out bytes.Buffer
	cfg, _, err := ParseArgs([]string{"--in-memory", "--cache-size", "64mb", "--memtable-size", "16mb", "--fsync-min-interval", "100us", "--search-cache-size", "0", "--state-cache-size", "0", "--script-max-state-bytes", "2mb", "--protected-mode", "no", "--log-format", "json", "--log-level", "warn"}, env(nil), &out)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.DB.InMemory || cfg.DB.CacheBytes != 64<<20 || cfg.DB.MemtableBytes != 16<<20 || cfg.DB.FsyncMinInterval != 100*time.Microsecond || cfg.DB.SearchCacheBytes >= 0 || cfg.DB.StateCacheBytes >= 0 || cfg.DB.Limits.MaxStateBytes != 2<<20 || cfg.ProtectedMode || cfg.LogFormat != "json" || cfg.LogLevel.String() != "WARN" {
		t.Fatalf("parsed: %+v", cfg)
	}
	for v, want := range map[string]time.Duration{"auto": legion.FsyncPaced, "OFF": legion.FsyncUnpaced, "0": legion.FsyncUnpaced, "2ms": 2 * time.Millisecond} {
		cfg, _, err := ParseArgs([]string{"--fsync-min-interval", v}, env(nil), &out)
		if err != nil || cfg.DB.FsyncMinInterval != want {
			t.Fatalf("--fsync-min-interval %s = %v, %v; want %v", v, cfg.DB.FsyncMinInterval, err, want)
		}
		if got := legion.FormatFsyncMinInterval(want); got != map[time.Duration]string{legion.FsyncPaced: "auto", legion.FsyncUnpaced: "off", 2 * time.Millisecond: "2ms"}[want] {
			t.Fatalf("FormatFsyncMinInterval(%v) = %q", want, got)
		}
	}
	cfg, _, err = ParseArgs([]string{"--in-memory=no"}, env(nil), &out)
	if err != nil || cfg.DB.InMemory {
		t.Fatalf("--in-memory=no: %v %v", cfg.DB.InMemory, err)
	}
	for v, plain := range map[string]bool{"no": true, "yes": false} {
		cfg, _, err = ParseArgs([]string{"--io-uring", v}, env(nil), &out)
		if err != nil || cfg.DB.NoIOUring != plain {
			t.Fatalf("--io-uring %s: plain log syncs %v, %v", v, cfg.DB.NoIOUring, err)
		}
	}
	if cfg, _, err = ParseArgs(nil, env(map[string]string{"LEGION_IO_URING": "no"}), &out); err != nil || !cfg.DB.NoIOUring {
		t.Fatalf("LEGION_IO_URING=no: plain log syncs %v, %v", cfg.DB.NoIOUring, err)
	}
	for v, buffered := range map[string]bool{"no": true, "yes": false} {
		cfg, _, err = ParseArgs([]string{"--log-direct-io", v}, env(nil), &out)
		if err != nil || cfg.DB.NoLogDirectIO != buffered {
			t.Fatalf("--log-direct-io %s: log through the page cache %v, %v", v, cfg.DB.NoLogDirectIO, err)
		}
	}
	if cfg, _, err = ParseArgs(nil, env(map[string]string{"LEGION_LOG_DIRECT_IO": "no"}), &out); err != nil || !cfg.DB.NoLogDirectIO {
		t.Fatalf("LEGION_LOG_DIRECT_IO=no: log through the page cache %v, %v", cfg.DB.NoLogDirectIO, err)
	}
	if d := DefaultConfig(); d.DB.Limits.MaxMemoryBytes <= 0 || !d.ProtectedMode || d.AdminPort != 7380 || d.DB.Fsync != legion.FsyncAlways || d.DB.MemtableBytes != 8<<20 || d.DB.FsyncMinInterval != legion.FsyncPaced || d.DB.NoIOUring || d.DB.NoLogDirectIO {
		t.Fatalf("defaults: %+v", d)
	}
}

func TestOptionErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.toml")
	var out bytes.Buffer
	for _, tc := range []struct {
		args    []string
		env     map[string]string
		file    string
		wantErr string
	}{
		{args: []string{"--port", "70000"}, wantErr: "--port: want an integer from 0 to 65535"},
		{args: []string{"--fsync", "sometimes"}, wantErr: "--fsync"},
		{args: []string{"--cache-size", "lots"}, wantErr: "--cache-size: want a size"},
		{args: []string{"--fsync-min-interval", "soon"}, wantErr: "--fsync-min-interval: want auto, off or a duration"},
		{args: []string{"--fsync-min-interval", "20ms"}, wantErr: "fsync min interval 20ms is out of range (auto, off, or up to 10ms)"},
		{args: []string{"--fsync-min-interval", "-5ms"}, wantErr: "fsync min interval -5ms is out of range"},
		{args: []string{"--nosuch"}, wantErr: "flag provided but not defined"},
		{args: []string{"stray"}, wantErr: `unexpected argument "stray"`},
		{env: map[string]string{"LEGION_MAXCLIENTS": "0"}, wantErr: "LEGION_MAXCLIENTS"},
		{env: map[string]string{"LEGION_PROTECTED_MODE": "maybe"}, wantErr: "LEGION_PROTECTED_MODE: want yes or no"},
		{args: []string{"--io-uring", "maybe"}, wantErr: "--io-uring: want yes or no"},
		{args: []string{"--log-direct-io", "maybe"}, wantErr: "--log-direct-io: want yes or no"},
		{file: "colour = \"blue\"\n", wantErr: `unknown setting "colour"`},
		{file: "port = [1, 2]\n", wantErr: "must be a string, number or boolean"},
		{file: "port = \n", wantErr: "bad.toml"},
		{file: "port = 99999\n", wantErr: "port: want an integer"},
		{args: []string{"--port", "7000", "--admin-port", "7000"}, wantErr: "both 7000"},
		{args: []string{"--bind", "not-an-ip"}, wantErr: "not an IP address"},
	} {
		args := tc.args
		if tc.file != "" {
			os.WriteFile(file, []byte(tc.file), 0o644)
			args = append([]string{"--config", file}, args...)
		}
		_, _, err := ParseArgs(args, env(tc.env), &out)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%v %v %q: err = %v, want %q", tc.args, tc.env, tc.file, err, tc.wantErr)
		}
	}
	if _, _, err := ParseArgs([]string{"--config", "/no/such/file.toml"}, env(nil), &out); err == nil {
		t.Error("a missing config file was accepted")
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out bytes.Buffer
	_, action, err := ParseArgs([]string{"--help"}, env(nil), &out)
	if err != nil || action != ActionHelp {
		t.Fatalf("--help: %v %v", action, err)
	}
	for _, o := range options() {
		if !strings.Contains(out.String(), "--"+o.name+"\n") {
			t.Errorf("--help does not document --%s", o.name)
		}
	}
	for _, want := range []string{"--config", "--version", "LEGION_"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %s", want)
		}
	}
	if _, action, _ := ParseArgs([]string{"--version"}, env(nil), &out); action != ActionVersion {
		t.Fatal("--version")
	}
}
