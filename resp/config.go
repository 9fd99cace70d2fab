package resp

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/legiondb/legion"
	"github.com/legiondb/legion/scripting"
)

// param is one CONFIG parameter: how to read it and, if it can change at
// run time, how to set it.
type param struct {
	get func(s *Server) string
	set func(s *Server, v string) error // nil: immutable
}

var errImmutable = fmt.Errorf("can't set immutable config")

func parseInt(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("argument couldn't be parsed into an integer")
	}
	return n, nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// limitParam exposes one field of the handler limits.
func limitParam(get func(l scripting.Limits) int64, set func(l *scripting.Limits, n int64)) param {
	return param{
		get: func(s *Server) string { return strconv.FormatInt(get(s.db.Limits()), 10) },
		set: func(s *Server, v string) error {
			n, err := parseInt(v)
			if err != nil {
				return err
			}
			l := s.db.Limits()
			set(&l, n)
			if err := l.Validate(); err != nil {
				return err
			}
			return s.db.SetLimits(l)
		},
	}
}

// configParams returns the CONFIG parameters. Names follow Redis where a
// Redis parameter means the same thing; Legion's own are prefixed script-.
func configParams() map[string]param {
	return map[string]param{
		"port": {get: func(s *Server) string { return strconv.Itoa(s.cfg.Port) }},
		"bind": {get: func(s *Server) string { return s.cfg.Bind }},
		"requirepass": {
			get: func(s *Server) string { return *s.requirePass.Load() },
			set: func(s *Server, v string) error { s.requirePass.Store(&v); return nil },
		},
		"protected-mode": {
			get: func(s *Server) string { return yesNo(s.protectedMode.Load()) },
			set: func(s *Server, v string) error {
				switch strings.ToLower(v) {
				case "yes":
					s.protectedMode.Store(true)
				case "no":
					s.protectedMode.Store(false)
				default:
					return fmt.Errorf("argument must be 'yes' or 'no'")
				}
				return nil
			},
		},
		"maxclients": {
			get: func(s *Server) string { return strconv.FormatInt(s.maxClients.Load(), 10) },
			set: func(s *Server, v string) error {
				n, err := parseInt(v)
				if err != nil || n < 1 {
					return fmt.Errorf("argument must be between 1 and 9223372036854775807 inclusive")
				}
				s.maxClients.Store(n)
				return nil
			},
		},
		"timeout": {
			get: func(s *Server) string {
				return strconv.FormatInt(int64(time.Duration(s.lim.idle.Load())/time.Second), 10)
			},
			set: func(s *Server, v string) error {
				n, err := parseInt(v)
				if err != nil || n < 0 {
					return fmt.Errorf("argument must be between 0 and 2147483647 inclusive")
				}
				s.lim.idle.Store(int64(time.Duration(n) * time.Second))
				return nil
			},
		},
		"proto-max-bulk-len": {
			get: func(s *Server) string { return strconv.FormatInt(s.lim.maxBulk.Load(), 10) },
			set: func(s *Server, v string) error {
				n, err := parseInt(v)
				if err != nil || n < 1<<20 {
					return fmt.Errorf("argument must be at least 1048576")
				}
				s.lim.maxBulk.Store(n)
				return nil
			},
		},
		"fsync-min-interval": {
			get: func(s *Server) string { return legion.FormatFsyncMinInterval(s.db.FsyncMinInterval()) },
			set: func(s *Server, v string) error {
				d, err := legion.ParseFsyncMinInterval(v)
				if err != nil {
					return err
				}
				return s.db.SetFsyncMinInterval(d)
			},
		},
		"slowlog-log-slower-than": {
			get: func(s *Server) string {
				th, _ := s.slowlog.settings()
				if th < 0 {
					return "-1"
				}
				return strconv.FormatInt(th.Microseconds(), 10)
			},
			set: func(s *Server, v string) error {
				n, err := parseInt(v)
				if err != nil || n < -1 {
					return fmt.Errorf("argument must be -1 or a non-negative number of microseconds")
				}
				_, maxLen := s.slowlog.settings()
				s.slowlog.set(time.Duration(n)*time.Microsecond, maxLen)
				return nil
			},
		},
		"slowlog-max-len": {
			get: func(s *Server) string { _, n := s.slowlog.settings(); return strconv.Itoa(n) },
			set: func(s *Server, v string) error {
				n, err := parseInt(v)
				if err != nil || n < 0 || n > 1<<24 {
					return fmt.Errorf("argument must be between 0 and 16777216 inclusive")
				}
				th, _ := s.slowlog.settings()
				s.slowlog.set(th, int(n))
				return nil
			},
		},
		"databases":        {get: func(*Server) string { return "1" }},
		"appendonly":       {get: func(*Server) string { return "no" }},
		"save":             {get: func(*Server) string { return "" }},
		"maxmemory":        {get: func(*Server) string { return "0" }},
		"maxmemory-policy": {get: func(*Server) string { return "noeviction" }},
		"cluster-enabled":  {get: func(*Server) string { return "no" }},
		"appendfsync": {get: func(s *Server) string {
			return s.db.StorageStats().Fsync.String()
		}},
		"dir": {get: func(s *Server) string { return s.db.StorageStats().DataDir }},
		// Redis's script time limit, in milliseconds, is Legion's
		// wall-clock limit on accepting an event.
		"lua-time-limit": limitParam(
			func(l scripting.Limits) int64 { return l.Timeout.Milliseconds() },
			func(l *scripting.Limits, n int64) { l.Timeout = time.Duration(n) * time.Millisecond }),
		"busy-reply-threshold": limitParam(
			func(l scripting.Limits) int64 { return l.Timeout.Milliseconds() },
			func(l *scripting.Limits, n int64) { l.Timeout = time.Duration(n) * time.Millisecond }),
		"script-timeout": limitParam(
			func(l scripting.Limits) int64 { return l.Timeout.Milliseconds() },
			func(l *scripting.Limits, n int64) { l.Timeout = time.Duration(n) * time.Millisecond }),
		"script-instruction-budget": limitParam(
			func(l scripting.Limits) int64 { return l.InstructionBudget },
			func(l *scripting.Limits, n int64) { l.InstructionBudget = n }),
		"script-max-call-depth": limitParam(
			func(l scripting.Limits) int64 { return int64(l.MaxCallDepth) },
			func(l *scripting.Limits, n int64) { l.MaxCallDepth = int(n) }),
		"script-max-string-bytes": limitParam(
			func(l scripting.Limits) int64 { return int64(l.MaxStringBytes) },
			func(l *scripting.Limits, n int64) { l.MaxStringBytes = int(n) }),
		"script-max-state-bytes": limitParam(
			func(l scripting.Limits) int64 { return int64(l.MaxStateBytes) },
			func(l *scripting.Limits, n int64) { l.MaxStateBytes = int(n) }),
		"script-max-output-bytes": limitParam(
			func(l scripting.Limits) int64 { return int64(l.MaxOutputBytes) },
			func(l *scripting.Limits, n int64) { l.MaxOutputBytes = int(n) }),
		"script-max-event-bytes": limitParam(
			func(l scripting.Limits) int64 { return int64(l.MaxEventBytes) },
			func(l *scripting.Limits, n int64) { l.MaxEventBytes = int(n) }),
		"script-max-tags": limitParam(
			func(l scripting.Limits) int64 { return int64(l.MaxTags) },
			func(l *scripting.Limits, n int64) { l.MaxTags = int(n) }),
		"script-max-tag-bytes": limitParam(
			func(l scripting.Limits) int64 { return int64(l.MaxTagBytes) },
			func(l *scripting.Limits, n int64) { l.MaxTagBytes = int(n) }),
		"script-max-memory-bytes": limitParam(
			func(l scripting.Limits) int64 { return l.MaxMemoryBytes },
			func(l *scripting.Limits, n int64) { l.MaxMemoryBytes = n }),
	}
}

func (s *Server) params() map[string]param {
	ps := configParams()
	for k, v := range s.cfg.Settings {
		v := v
		if _, ok := ps[k]; !ok {
			ps[k] = param{get: func(*Server) string { return v }}
		}
	}
	return ps
}

func cmdConfigGet(s *Server, c *client, args [][]byte, w *writer) {
	ps := s.params()
	found := map[string]string{}
	for _, a := range args[2:] {
		pat := strings.ToLower(string(a))
		for name, p := range ps {
			if globMatch(pat, name) {
				found[name] = p.get(s)
			}
		}
	}
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	sort.Strings(names)
	w.mapHeader(len(names))
	for _, n := range names {
		w.bulkString(n)
		w.bulkString(found[n])
	}
}

func cmdConfigSet(s *Server, c *client, args [][]byte, w *writer) {
	if len(args)%2 != 0 {
		w.errorLine("ERR wrong number of arguments for 'config|set' command")
		return
	}
	ps := s.params()
	// Check every pair before applying any, as Redis does.
	type change struct {
		name, value string
		p           param
	}
	var changes []change
	for i := 2; i < len(args); i += 2 {
		name := strings.ToLower(string(args[i]))
		p, ok := ps[name]
		if !ok {
			w.errorf("ERR Unknown option or number of arguments for CONFIG SET - '%s'", args[i])
			return
		}
		if p.set == nil {
			w.errorf("ERR CONFIG SET failed (possibly related to argument '%s') - %v", name, errImmutable)
			return
		}
		changes = append(changes, change{name, string(args[i+1]), p})
	}
	for _, ch := range changes {
		if err := ch.p.set(s, ch.value); err != nil {
			w.errorf("ERR CONFIG SET failed (possibly related to argument '%s') - %v", ch.name, err)
			return
		}
		s.logger.Info("configuration changed", "param", ch.name)
	}
	w.ok()
}

func cmdConfigResetStat(s *Server, c *client, args [][]byte, w *writer) {
	s.stats.commands.Store(0)
	s.stats.connections.Store(0)
	s.stats.rejected.Store(0)
	s.stats.errors.Store(0)
	w.ok()
}
