package server

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/legiondb/legion"
	"github.com/legiondb/legion/store"
)

// option is one setting of legion-server. Every option is a flag
// (--name), an environment variable (LEGION_NAME, dashes as underscores)
// and a key of the --config file (name = value); precedence is flag, then
// environment, then file, then the default.
type option struct {
	name   string
	usage  string
	isBool bool // a flag that may be given without a value
	set    func(c *Config, v string) error
	get    func(c *Config) string // the effective value, for --help defaults
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "true", "1", "on":
		return true, nil
	case "no", "false", "0", "off":
		return false, nil
	}
	return false, fmt.Errorf("want yes or no, got %q", v)
}

// parseSize accepts a byte count with an optional unit: 1024, 64kb, 16mb,
// 2gb (powers of 1024; "kib"/"k" and friends too).
func parseSize(v string) (int64, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}, {"b", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a size such as 1048576, 512kb or 64mb, got %q", v)
	}
	return n * mult, nil
}

func parseInt(v string, min, max int64) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("want an integer from %d to %d, got %q", min, max, v)
	}
	return n, nil
}

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want a duration such as 500ms or 2s, got %q", v)
	}
	return d, nil
}

func intOpt(name, usage string, min, max int64, field func(c *Config) *int) option {
	return option{name: name, usage: usage,
		set: func(c *Config, v string) error {
			n, err := parseInt(v, min, max)
			*field(c) = int(n)
			return err
		},
		get: func(c *Config) string { return strconv.Itoa(*field(c)) }}
}

func sizeOpt(name, usage string, field func(c *Config) *int64) option {
	return option{name: name, usage: usage,
		set: func(c *Config, v string) error {
			n, err := parseSize(v)
			*field(c) = n
			return err
		},
		get: func(c *Config) string { return strconv.FormatInt(*field(c), 10) }}
}

// cacheSizeOpt is a size where 0 turns the cache off (the DB's zero means
// its default, so 0 is kept as -1).
func cacheSizeOpt(name, usage string, field func(c *Config) *int64) option {
	return option{name: name, usage: usage,
		set: func(c *Config, v string) error {
			n, err := parseSize(v)
			if n == 0 {
				n = -1
			}
			*field(c) = n
			return err
		},
		get: func(c *Config) string { return strconv.FormatInt(max(*field(c), 0), 10) }}
}

func intSizeOpt(name, usage string, field func(c *Config) *int) option {
	return option{name: name, usage: usage,
		set: func(c *Config, v string) error {
			n, err := parseSize(v)
			if err == nil && n > 1<<31 {
				err = fmt.Errorf("at most 2gb, got %q", v)
			}
			*field(c) = int(n)
			return err
		},
		get: func(c *Config) string { return strconv.Itoa(*field(c)) }}
}

// yesNoOpt is a yes/no setting, on by default, kept as its negation
// (no is a field's zero value: the default).
func yesNoOpt(name, usage string, no func(c *Config) *bool) option {
	return option{name: name, usage: usage,
		set: func(c *Config, v string) error {
			on, err := parseBool(v)
			if err == nil {
				*no(c) = !on
			}
			return err
		},
		get: func(c *Config) string { return map[bool]string{true: "no", false: "yes"}[*no(c)] }}
}

func stringOpt(name, usage string, field func(c *Config) *string) option {
	return option{name: name, usage: usage,
		set: func(c *Config, v string) error { *field(c) = v; return nil },
		get: func(c *Config) string { return *field(c) }}
}

// options is the table of every legion-server setting.
func options() []option {
	return []option{
		stringOpt("bind", "address the client port listens on", func(c *Config) *string { return &c.Bind }),
		intOpt("port", "client port for the Redis protocol (0 picks a free port)", 0, 65535, func(c *Config) *int { return &c.Port }),
		intOpt("admin-port", "HTTP port for /metrics, /healthz and the JSON API (0 picks a free port, -1 disables)", -1, 65535, func(c *Config) *int { return &c.AdminPort }),
		stringOpt("data-dir", "directory of the node's data (created if missing)", func(c *Config) *string { return &c.DB.DataDir }),
		{name: "in-memory", usage: "keep all data in memory; nothing survives a restart", isBool: true,
			set: func(c *Config, v string) (err error) { c.DB.InMemory, err = parseBool(v); return },
			get: func(c *Config) string { return strconv.FormatBool(c.DB.InMemory) }},
		{name: "fsync", usage: "when acknowledged writes reach disk: always (before the reply; concurrent commits share one sync), everysec (at most about a second lost on power loss) or no (the OS decides)",
			set: func(c *Config, v string) (err error) { c.DB.Fsync, err = store.ParseSyncMode(v); return },
			get: func(c *Config) string { return c.DB.Fsync.String() }},
		{name: "fsync-min-interval", usage: "with fsync always, the least time from one log sync to the next, so more commits share each: auto (100us after a large group only), off (sync at once), or a duration up to 10ms",
			set: func(c *Config, v string) (err error) {
				c.DB.FsyncMinInterval, err = legion.ParseFsyncMinInterval(v)
				return
			},
			get: func(c *Config) string { return legion.FormatFsyncMinInterval(c.DB.FsyncMinInterval) }},
		yesNoOpt("io-uring", "yes: on Linux, sync the log (with fsync always) and the tables, and remove old tables, through io_uring, where the waiting goroutine parks instead of blocking a thread; no: plain system calls (plain anyway where the kernel refuses io_uring)", func(c *Config) *bool { return &c.DB.NoIOUring }),
		yesNoOpt("log-direct-io", "yes: with fsync always and io_uring, sync the log with one direct write (O_DIRECT|O_DSYNC) of the sectors written since the last sync, where the file system allows it, so a lone writer's sync writes a sector or a few rather than a 4 KiB page; no: write it through the page cache and fdatasync", func(c *Config) *bool { return &c.DB.NoLogDirectIO }),
		sizeOpt("cache-size", "memory for loaded partitions (e.g. 256mb)", func(c *Config) *int64 { return &c.DB.CacheBytes }),
		sizeOpt("block-cache-size", "pebble's block cache (e.g. 64mb)", func(c *Config) *int64 { return &c.DB.BlockCacheBytes }),
		cacheSizeOpt("search-cache-size", "memory for pages of exact-tag searches (the first page of a tag, and pages after a key read twice), answered without reading storage while their tag is unchanged (0 disables)", func(c *Config) *int64 { return &c.DB.SearchCacheBytes }),
		cacheSizeOpt("state-cache-size", "memory for decoded states of 512 bytes or more, so an event on a state just written need not decode it again (0 disables)", func(c *Config) *int64 { return &c.DB.StateCacheBytes }),
		sizeOpt("memtable-size", "largest size of pebble's memtable, where writes gather before a flush; up to twice this is held (1mb to 1gb)", func(c *Config) *int64 { return &c.DB.MemtableBytes }),
		sizeOpt("heap-floor", "Go heap size below which the garbage collector does not run (0 leaves it to GOGC)", func(c *Config) *int64 { return &c.HeapFloor }),
		stringOpt("requirepass", "password of the default user; clients must AUTH before any other command", func(c *Config) *string { return &c.RequirePass }),
		{name: "protected-mode", usage: "yes: without a password, refuse connections from non-loopback addresses",
			set: func(c *Config, v string) (err error) { c.ProtectedMode, err = parseBool(v); return },
			get: func(c *Config) string { return map[bool]string{true: "yes", false: "no"}[c.ProtectedMode] }},
		intOpt("maxclients", "maximum simultaneous client connections", 1, 1<<30, func(c *Config) *int { return &c.MaxClients }),
		intOpt("timeout", "close a client connection idle this many seconds (0 never)", 0, 1<<31-1, func(c *Config) *int { return &c.IdleTimeout }),
		intOpt("event-loops", "event loops serving client connections on Linux (0 one per CPU; -1 none: a goroutine per connection)", -1, 1024, func(c *Config) *int { return &c.EventLoops }),
		sizeOpt("proto-max-bulk-len", "largest argument a client may send (e.g. 512mb)", func(c *Config) *int64 { return &c.MaxBulkBytes }),
		intOpt("slowlog-log-slower-than", "log commands slower than this many microseconds in SLOWLOG (-1 disables, 0 logs all)", -1, 1<<40, func(c *Config) *int { return &c.SlowlogThreshold }),
		intOpt("slowlog-max-len", "entries kept by SLOWLOG", 0, 1<<24, func(c *Config) *int { return &c.SlowlogMaxLen }),
		{name: "log-level", usage: "log level: debug, info, warn or error",
			set: func(c *Config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) },
			get: func(c *Config) string { return strings.ToLower(c.LogLevel.String()) }},
		{name: "log-format", usage: "log format: text or json",
			set: func(c *Config, v string) error {
				if v != "text" && v != "json" {
					return fmt.Errorf("want text or json, got %q", v)
				}
				c.LogFormat = v
				return nil
			},
			get: func(c *Config) string { return c.LogFormat }},
		{name: "script-instruction-budget", usage: "Lua VM instructions one handler call may run (deterministic: keep it equal on every replica)",
			set: func(c *Config, v string) (err error) {
				c.DB.Limits.InstructionBudget, err = parseInt(v, 1, 1<<50)
				return
			},
			get: func(c *Config) string { return strconv.FormatInt(c.DB.Limits.InstructionBudget, 10) }},
		{name: "script-timeout", usage: "wall-clock limit of a handler call when an event is accepted or a script loaded (e.g. 1s)",
			set: func(c *Config, v string) (err error) { c.DB.Limits.Timeout, err = parseDuration(v); return },
			get: func(c *Config) string { return c.DB.Limits.Timeout.String() }},
		intOpt("script-max-call-depth", "Lua call frames a handler may nest", 10, 10000, func(c *Config) *int { return &c.DB.Limits.MaxCallDepth }),
		intSizeOpt("script-max-string-bytes", "largest string a handler may build", func(c *Config) *int { return &c.DB.Limits.MaxStringBytes }),
		intSizeOpt("script-max-state-bytes", "largest encoded state of a partition", func(c *Config) *int { return &c.DB.Limits.MaxStateBytes }),
		intSizeOpt("script-max-output-bytes", "largest encoded handler output", func(c *Config) *int { return &c.DB.Limits.MaxOutputBytes }),
		intSizeOpt("script-max-event-bytes", "largest event, query request or handler source", func(c *Config) *int { return &c.DB.Limits.MaxEventBytes }),
		intOpt("script-max-tags", "tags one partition may have", 1, 1<<20, func(c *Config) *int { return &c.DB.Limits.MaxTags }),
		intSizeOpt("script-max-tag-bytes", "bytes in one tag", func(c *Config) *int { return &c.DB.Limits.MaxTagBytes }),
		sizeOpt("script-max-memory", "process heap above which a handler call being accepted is stopped (0 = no bound; default half of physical memory)", func(c *Config) *int64 { return &c.DB.Limits.MaxMemoryBytes }),
	}
}

// Action is what the command line asks for besides running.
type Action int

const (
	ActionRun Action = iota
	ActionHelp
	ActionVersion
)

// ParseArgs turns a command line, the environment (os.LookupEnv or a
// substitute) and the --config file it names into a validated Config.
// Usage and errors are written to out.
func ParseArgs(args []string, lookupEnv func(string) (string, bool), out io.Writer) (Config, Action, error) {
	cfg := DefaultConfig()
	opts := options()
	fs := flag.NewFlagSet("legion-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fromFlags := map[string]string{}
	for _, o := range opts {
		o := o
		if o.isBool {
			fs.Var(boolValue{fromFlags, o.name}, o.name, o.usage)
		} else {
			fs.Func(o.name, o.usage, func(v string) error { fromFlags[o.name] = v; return nil })
		}
	}
	configFile := fs.String("config", "", "TOML file of settings: the flag names as keys (data-dir = \"/var/lib/legion\")")
	version := fs.Bool("version", false, "print the version and exit")
	usage := func() {
		fmt.Fprintf(out, "Usage: legion-server [flags]\n\nServes a Legion database over the Redis protocol (RESP2/RESP3).\n\n")
		fmt.Fprintf(out, "Every flag can also be set by the environment variable LEGION_<NAME> (upper case,\n")
		fmt.Fprintf(out, "dashes as underscores) or as \"name = value\" in the --config file. A flag wins over\n")
		fmt.Fprintf(out, "the environment, which wins over the file.\n\nFlags:\n")
		def := DefaultConfig()
		fmt.Fprintf(out, "  --config FILE\n        %s\n", fs.Lookup("config").Usage)
		for _, o := range opts {
			fmt.Fprintf(out, "  --%s\n        %s (default %q)\n", o.name, o.usage, o.get(&def))
		}
		fmt.Fprintf(out, "  --version\n        print the version and exit\n  --help\n        print this help\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return cfg, ActionHelp, nil
		}
		return cfg, ActionRun, fmt.Errorf("%v (see --help)", err)
	}
	if *version {
		return cfg, ActionVersion, nil
	}
	if fs.NArg() > 0 {
		return cfg, ActionRun, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if *configFile == "" {
		if v, ok := lookupEnv("LEGION_CONFIG"); ok {
			*configFile = v
		}
	}
	byName := map[string]option{}
	for _, o := range opts {
		byName[o.name] = o
	}
	if *configFile != "" {
		values, err := readConfigFile(*configFile, byName)
		if err != nil {
			return cfg, ActionRun, err
		}
		for _, name := range sortedKeys(values) {
			if err := byName[name].set(&cfg, values[name]); err != nil {
				return cfg, ActionRun, fmt.Errorf("%s: %s: %v", *configFile, name, err)
			}
		}
		cfg.ConfigFile = *configFile
	}
	for _, o := range opts {
		env := "LEGION_" + strings.ToUpper(strings.ReplaceAll(o.name, "-", "_"))
		if v, ok := lookupEnv(env); ok {
			if err := o.set(&cfg, v); err != nil {
				return cfg, ActionRun, fmt.Errorf("%s: %v", env, err)
			}
		}
	}
	for _, name := range sortedKeys(fromFlags) {
		if err := byName[name].set(&cfg, fromFlags[name]); err != nil {
			return cfg, ActionRun, fmt.Errorf("--%s: %v", name, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, ActionRun, err
	}
	return cfg, ActionRun, nil
}

// boolValue is a flag that may be given bare (--in-memory) or with a value
// (--in-memory=no).
type boolValue struct {
	into map[string]string
	name string
}

func (b boolValue) String() string   { return "" }
func (b boolValue) IsBoolFlag() bool { return true }
func (b boolValue) Set(v string) error {
	if _, err := parseBool(v); err != nil {
		return err
	}
	b.into[b.name] = v
	return nil
}

// readConfigFile reads a TOML file of option names to scalar values.
func readConfigFile(path string, known map[string]option) (map[string]string, error) {
	var raw map[string]any
	md, err := toml.DecodeFile(path, &raw)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	_ = md
	out := map[string]string{}
	for k, v := range raw {
		name := strings.ReplaceAll(k, "_", "-")
		if _, ok := known[name]; !ok {
			return nil, fmt.Errorf("config file %s: unknown setting %q (see legion-server --help)", path, k)
		}
		switch v := v.(type) {
		case string:
			out[name] = v
		case bool:
			out[name] = strconv.FormatBool(v)
		case int64:
			out[name] = strconv.FormatInt(v, 10)
		case float64:
			out[name] = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			return nil, fmt.Errorf("config file %s: %s must be a string, number or boolean", path, k)
		}
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// physicalMemory returns the machine's memory in bytes, or 0 if unknown.
func physicalMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	return 0
}
