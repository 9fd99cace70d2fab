package resp

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/legiondb/legion"
	"github.com/legiondb/legion/scripting"
)

// command is one entry of the command table: everything dispatch, arity
// errors, COMMAND replies and routing need to know about a command.
type command struct {
	name  string // lower case
	group string // COMMAND DOCS group
	// arity counts the command name (and subcommand) as Redis does:
	// n > 0 exactly n arguments, n < 0 at least -n.
	arity int
	flags []string // Redis command flags: write, readonly, admin, fast, ...
	// Key positions (1-based; 0 = no keys; lastKey -1 = through the end).
	firstKey, lastKey, keyStep int
	summary                    string
	syntax                     string // arguments after the name, for docs
	run                        func(s *Server, c *client, args [][]byte, w *writer)
	subcommands                map[string]*command // container commands only
	parent                     *command
	noAuth                     bool // allowed before AUTH
	// waits marks a command that may take long without using the CPU
	// (a scan of the database, a backup, a compilation that syncs): an
	// event loop does not run it, its connection leaves the loop for a
	// goroutine of its own.
	waits bool
	// write: the command has the "write" flag. It waits for a sync with
	// fsync always (LEGION.APPLY leaves that wait to an event loop's
	// connection, see client.deferSync), and for the storage engine while
	// writes are stalled.
	write bool
}

func (cmd *command) arityOK(n int) bool {
	if cmd.arity >= 0 {
		return n == cmd.arity
	}
	return n >= -cmd.arity
}

// fullName is Redis 7's name for errors and COMMAND: "script|load".
func (cmd *command) fullName() string {
	if cmd.parent != nil {
		return cmd.parent.name + "|" + cmd.name
	}
	return cmd.name
}

// buildCommands returns the command table. It is built per server, so
// tests can add commands without touching shared state.
func buildCommands() map[string]*command {
	t := map[string]*command{}
	add := func(cmd *command) *command {
		cmd.write = slices.Contains(cmd.flags, "write")
		t[cmd.name] = cmd
		return cmd
	}
	container := func(parent *command, subs ...*command) {
		parent.subcommands = map[string]*command{}
		for _, sc := range subs {
			sc.write = slices.Contains(sc.flags, "write")
			sc.parent = parent
			if sc.group == "" {
				sc.group = parent.group
			}
			parent.subcommands[sc.name] = sc
		}
		if parent.subcommands["help"] == nil {
			var lines []string
			for _, sc := range parent.sortedSubcommands() {
				lines = append(lines, strings.ToUpper(sc.name)+" "+sc.syntax, "    "+sc.summary)
			}
			lines = append(lines, "HELP", "    Print this help.")
			help := &command{name: "help", group: parent.group, arity: 2, flags: []string{"loading", "stale"},
				summary: "Returns helpful text about the different subcommands.", parent: parent,
				run: helpReply(strings.ToUpper(parent.name), lines)}
			parent.subcommands["help"] = help
		}
	}

	// Legion's own commands.
	add(&command{name: "legion.apply", group: "legion", arity: -3, flags: []string{"write"}, firstKey: 1, lastKey: 1, keyStep: 1,
		summary: "Runs the active handler's apply on the key's state with an event, stores the new state and its tags, and returns the output.",
		syntax:  "key event [FAST|CONSISTENT]", run: cmdApply})
	add(&command{name: "legion.get", group: "legion", arity: 2, flags: []string{"readonly", "fast"}, firstKey: 1, lastKey: 1, keyStep: 1,
		summary: "Returns the key's state as JSON, or nil if it was never written.", syntax: "key", run: cmdGet})
	add(&command{name: "legion.search", group: "legion", arity: -2, flags: []string{"readonly"},
		summary: "Scrolls the tag index: [tag, key] pairs from (tag, \"\"), or after (tag, key).",
		syntax:  "tag [AFTER key] [COUNT count] [EXACT]", run: cmdSearch})
	add(&command{name: "legion.inspect", group: "legion", arity: 2, flags: []string{"readonly"}, firstKey: 1, lastKey: 1, keyStep: 1,
		summary: "Returns the key's power state as JSON.", syntax: "key", run: cmdInspect})
	add(&command{name: "legion.query", group: "legion", arity: 3, flags: []string{"readonly"}, firstKey: 1, lastKey: 1, keyStep: 1,
		summary: "Runs the active handler's read-only query on the key's state.", syntax: "key request", run: cmdQuery})
	add(&command{name: "legion.dryrun", group: "legion", arity: 3, flags: []string{"readonly"}, firstKey: 1, lastKey: 1, keyStep: 1,
		summary: "Runs apply without storing anything; returns [output, new state as JSON].", syntax: "key event", run: cmdDryRun})

	container(add(&command{name: "script", group: "scripting", arity: -2, summary: "A container for handler commands."}),
		&command{name: "load", arity: 3, flags: []string{"noscript"},
			summary: "Compiles and stores a handler and makes it the active handler; returns its SHA1.", syntax: "script", run: cmdScriptLoad, waits: true},
		&command{name: "exists", arity: -3, flags: []string{"noscript"},
			summary: "Tells which handler versions are stored: 1 or 0 for each SHA1.", syntax: "sha1 [sha1 ...]", run: cmdScriptExists},
		&command{name: "flush", arity: -2, flags: []string{"noscript"},
			summary: "Drops every stored handler version that is neither active nor referenced by a stored event.", syntax: "[ASYNC|SYNC]", run: cmdScriptFlush, waits: true},
	)
	add(&command{name: "legion.check", group: "legion", arity: -1, flags: []string{"admin"},
		summary: "Verifies that every stored state decodes and the tag index matches the handler's tags; REPAIR fixes the index.",
		syntax:  "[REPAIR]", run: cmdCheck, waits: true})
	add(&command{name: "legion.backup", group: "legion", arity: 2, flags: []string{"admin", "noscript"},
		summary: "Writes a consistent copy of the data dir into a new directory, while writes go on.",
		syntax:  "directory", run: cmdBackup, waits: true})
	container(add(&command{name: "legion.script", group: "legion", arity: -2, summary: "A container for handler version commands."}),
		&command{name: "list", arity: 2, flags: []string{"readonly"},
			summary: "Lists the stored handler versions: sha, when loaded, whether active, and how many stored events reference it.", run: cmdLegionScriptList},
		&command{name: "show", arity: 3, flags: []string{"readonly"},
			summary: "Returns the source of a stored handler version.", syntax: "sha1", run: cmdLegionScriptShow},
		&command{name: "use", arity: 3, flags: []string{"write"},
			summary: "Makes a stored handler version the active one; partitions are re-indexed in the background.", syntax: "sha1", run: cmdLegionScriptUse, waits: true},
	)

	// Connection commands.
	add(&command{name: "ping", group: "connection", arity: -1, flags: []string{"fast"}, summary: "Returns the server's liveliness response.", syntax: "[message]", run: cmdPing})
	add(&command{name: "echo", group: "connection", arity: 2, flags: []string{"fast"}, summary: "Returns the given string.", syntax: "message", run: cmdEcho})
	add(&command{name: "quit", group: "connection", arity: -1, flags: []string{"fast", "noscript", "loading", "stale"}, noAuth: true,
		summary: "Closes the connection.", run: cmdQuit})
	add(&command{name: "hello", group: "connection", arity: -1, flags: []string{"fast", "noscript", "loading", "stale"}, noAuth: true,
		summary: "Handshakes with the server: selects the protocol version and returns the connection's properties.",
		syntax:  "[protover [AUTH username password] [SETNAME clientname]]", run: cmdHello})
	add(&command{name: "auth", group: "connection", arity: -2, flags: []string{"fast", "noscript", "loading", "stale"}, noAuth: true,
		summary: "Authenticates the connection.", syntax: "[username] password", run: cmdAuth})
	add(&command{name: "reset", group: "connection", arity: 1, flags: []string{"fast", "noscript", "loading", "stale"}, noAuth: true,
		summary: "Resets the connection: protocol 2, no name, and unauthenticated if a password is set.", run: cmdReset})
	add(&command{name: "select", group: "connection", arity: 2, flags: []string{"fast", "loading", "stale"},
		summary: "Selects the database; Legion has only database 0.", syntax: "index", run: cmdSelect})
	container(add(&command{name: "client", group: "connection", arity: -2, summary: "A container for client connection commands."}),
		&command{name: "id", arity: 2, flags: []string{"fast", "noscript", "loading", "stale"}, summary: "Returns the unique client ID of the connection.", run: cmdClientID},
		&command{name: "setname", arity: 3, flags: []string{"fast", "noscript", "loading", "stale"}, summary: "Sets the connection name.", syntax: "connection-name", run: cmdClientSetName},
		&command{name: "getname", arity: 2, flags: []string{"fast", "noscript", "loading", "stale"}, summary: "Returns the connection name.", run: cmdClientGetName},
		&command{name: "setinfo", arity: 4, flags: []string{"fast", "noscript", "loading", "stale"}, summary: "Sets information specific to the client or connection.", syntax: "LIB-NAME libname | LIB-VER libver", run: cmdClientSetInfo},
		&command{name: "list", arity: -2, flags: []string{"admin", "noscript", "loading", "stale"}, summary: "Lists open connections.", syntax: "[TYPE NORMAL] [ID client-id ...]", run: cmdClientList},
		&command{name: "info", arity: 2, flags: []string{"noscript", "loading", "stale"}, summary: "Returns information about the connection.", run: cmdClientInfo},
		&command{name: "kill", arity: -3, flags: []string{"admin", "noscript", "loading", "stale"}, summary: "Terminates open connections.", syntax: "ip:port | [ID client-id] [ADDR ip:port] [LADDR ip:port] [USER username] [SKIPME yes|no]", run: cmdClientKill},
	)

	// Server commands.
	add(&command{name: "dbsize", group: "server", arity: 1, flags: []string{"readonly", "fast"}, summary: "Returns the number of partitions.", run: cmdDBSize})
	add(&command{name: "time", group: "server", arity: 1, flags: []string{"loading", "stale", "fast"}, summary: "Returns the server time.", run: cmdTime})
	add(&command{name: "info", group: "server", arity: -1, flags: []string{"loading", "stale"}, summary: "Returns information and statistics about the server.",
		syntax: "[section [section ...]]", run: cmdInfo})
	container(add(&command{name: "config", group: "server", arity: -2, summary: "A container for server configuration commands."}),
		&command{name: "get", arity: -3, flags: []string{"admin", "noscript", "loading", "stale"}, summary: "Returns the effective values of configuration parameters.", syntax: "parameter [parameter ...]", run: cmdConfigGet},
		&command{name: "set", arity: -4, flags: []string{"admin", "noscript", "loading", "stale"}, summary: "Sets configuration parameters in-flight.", syntax: "parameter value [parameter value ...]", run: cmdConfigSet},
		&command{name: "resetstat", arity: 2, flags: []string{"admin", "noscript", "loading", "stale"}, summary: "Resets the server's statistics.", run: cmdConfigResetStat},
	)
	container(add(&command{name: "slowlog", group: "server", arity: -2, summary: "A container for slow log commands."}),
		&command{name: "get", arity: -2, flags: []string{"admin", "loading", "stale"}, summary: "Returns the slow log's entries, newest first.", syntax: "[count]", run: cmdSlowlogGet},
		&command{name: "len", arity: 2, flags: []string{"admin", "loading", "stale"}, summary: "Returns the number of entries in the slow log.", run: cmdSlowlogLen},
		&command{name: "reset", arity: 2, flags: []string{"admin", "loading", "stale"}, summary: "Clears all entries from the slow log.", run: cmdSlowlogReset},
	)
	cmdCmd := add(&command{name: "command", group: "server", arity: -1, flags: []string{"loading", "stale"}, summary: "Returns detailed information about all commands.", run: cmdCommand})
	container(cmdCmd,
		&command{name: "count", arity: 2, flags: []string{"loading", "stale"}, summary: "Returns a count of commands.", run: cmdCommandCount},
		&command{name: "info", arity: -2, flags: []string{"loading", "stale"}, summary: "Returns information about one, multiple or all commands.", syntax: "[command-name [command-name ...]]", run: cmdCommandInfo},
		&command{name: "docs", arity: -2, flags: []string{"loading", "stale"}, summary: "Returns documentary information about one, multiple or all commands.", syntax: "[command-name [command-name ...]]", run: cmdCommandDocs},
		&command{name: "list", arity: -2, flags: []string{"loading", "stale"}, summary: "Returns a list of command names.", syntax: "[FILTERBY MODULE module-name | ACLCAT category | PATTERN pattern]", run: cmdCommandList},
		&command{name: "getkeys", arity: -3, flags: []string{"loading", "stale"}, summary: "Extracts the key names from an arbitrary command.", syntax: "command [arg [arg ...]]", run: cmdCommandGetKeys},
	)
	return t
}

// replyError writes err as a RESP error line. It is the one place that
// maps the runtime's errors to RESP error prefixes.
func (s *Server) replyError(w *writer, err error) {
	var se *scripting.Error
	switch {
	case errors.As(err, &se):
		w.errorLine(se.RESPError())
	case errors.Is(err, legion.ErrNoHandler):
		w.errorLine("NOSCRIPT no handler loaded; load one with SCRIPT LOAD")
	case errors.Is(err, legion.ErrKeySize):
		w.errorf("ERR key too large (at most %d bytes)", legion.MaxKeyBytes)
	case errors.Is(err, legion.ErrClosed):
		w.errorLine("ERR server is shutting down")
	case errors.Is(err, legion.ErrUnknownHandler):
		w.errorLine("NOSCRIPT no handler with that SHA1")
	case errors.Is(err, legion.ErrBadSHA):
		w.errorLine("ERR malformed SHA1: want 40 hex digits")
	case errors.Is(err, legion.ErrReindexing), errors.Is(err, legion.ErrBackupInMemory):
		w.errorLine("ERR " + strings.TrimPrefix(err.Error(), "legion: "))
	case errors.Is(err, legion.ErrNoSpace), errors.Is(err, legion.ErrStorageFailed):
		// Logged by the store when it happens, not per command.
		w.errorLine("ERR " + strings.TrimPrefix(err.Error(), "store: "))
	case errors.Is(err, legion.ErrCorrupt):
		s.logger.Error("corrupt data", "err", err)
		w.errorLine("ERR corrupt data: " + err.Error() + " (LEGION.CHECK reports every damaged partition)")
	default:
		s.logger.Error("command failed", "err", err)
		w.errorLine("ERR " + err.Error())
	}
}

func cmdApply(s *Server, c *client, args [][]byte, w *writer) {
	if len(c.ahead) > 0 {
		// Applied with an earlier write of this pipeline.
		r := c.ahead[0]
		c.ahead[0] = legion.Result{}
		c.ahead = c.ahead[1:]
		s.writeResult(w, r)
		return
	}
	mode, ok := applyMode(args[3:])
	if !ok {
		w.syntaxError()
		return
	}
	next := c.conn.pipeline()
	if len(next) == 0 && !c.deferSync {
		out, err := s.db.Apply(context.Background(), args[1], args[2], mode)
		if err != nil {
			s.replyError(w, err)
			return
		}
		s.writeOutput(w, out)
		return
	}
	// More commands follow in this pipeline: apply this write and the
	// writes right after it as one batch, and wait for durability once,
	// before the pipeline's replies are sent. The replies of the later
	// writes wait in c.ahead for their commands' turn.
	writes := append(c.writes[:0], legion.Write{Key: args[1], Event: args[2], Mode: mode})
	for i := range next {
		cmd := &next[i]
		if c.held+len(writes) >= maxDeferred || !s.isApply(cmd) {
			break
		}
		m, ok := applyMode(cmd.Args[3:])
		if !ok {
			break
		}
		writes = append(writes, legion.Write{Key: cmd.Args[1], Event: cmd.Args[2], Mode: m})
	}
	results := slices.Grow(c.results[:0], len(writes))[:len(writes)]
	wait := s.db.ApplyBatch(context.Background(), writes, results)
	c.pending = append(c.pending, wait)
	c.held += len(writes)
	clear(writes) // the arguments belong to the read buffer
	c.writes = writes[:0]
	c.results = results
	c.ahead = results[1:]
	s.writeResult(w, results[0])
	results[0] = legion.Result{}
}

// applyMode parses LEGION.APPLY's options.
func applyMode(opts [][]byte) (legion.Mode, bool) {
	mode := legion.Consistent
	for _, opt := range opts {
		switch strings.ToUpper(string(opt)) {
		case "FAST":
			mode = legion.Fast
		case "CONSISTENT":
			mode = legion.Consistent
		default:
			return 0, false
		}
	}
	return mode, true
}

// mustWait reports whether a command of reqs may wait long (see
// command.waits), so an event loop must not run them itself. Writes of
// LEGION.APPLY are the loop's to run: their waits for a sync are left to
// it (client.deferSync), unless a read brings more of them than a
// pipeline holds before it syncs.
func (s *Server) mustWait(reqs []request) bool {
	applies := 0
	for i := range reqs {
		r := &reqs[i]
		cmd := lookup(s.commands, r.Args[0])
		if cmd == nil {
			continue
		}
		r.cmd = cmd // dispatch need not look it up again
		if cmd.subcommands != nil && len(r.Args) > 1 {
			if sub := lookup(cmd.subcommands, r.Args[1]); sub != nil {
				cmd = sub
			}
		}
		if cmd.waits || cmd.write && (s.syncWrites && cmd != s.applyCmd || s.db.WritesStalled()) {
			return true
		}
		if cmd == s.applyCmd && s.syncWrites {
			if applies++; applies >= maxDeferred {
				return true
			}
		}
	}
	return false
}

// isApply reports whether r is a LEGION.APPLY that dispatch would run.
func (s *Server) isApply(r *request) bool {
	if len(r.Args) < 3 {
		return false
	}
	if r.cmd != nil {
		return r.cmd == s.applyCmd // looked up by an event loop already
	}
	return lookup(s.commands, r.Args[0]) == s.applyCmd
}

// writeResult writes one write's output or error.
func (s *Server) writeResult(w *writer, r legion.Result) {
	if r.Err != nil {
		s.replyError(w, r.Err)
		return
	}
	s.writeOutput(w, r.Out)
}

// writeOutput converts a handler output by Redis's Lua rules.
func (s *Server) writeOutput(w *writer, out legion.Output) {
	b, err := out.AppendRESP(w.b, w.resp3)
	if err != nil {
		s.replyError(w, err)
		return
	}
	w.b = b
}

func cmdGet(s *Server, c *client, args [][]byte, w *writer) {
	s.writeOptional(w)(s.db.Get(args[1]))
}

func cmdInspect(s *Server, c *client, args [][]byte, w *writer) {
	s.writeOptional(w)(s.db.Inspect(args[1]))
}

// writeOptional returns a function answering with a bulk string, nil when
// absent, or the error.
func (s *Server) writeOptional(w *writer) func(b []byte, ok bool, err error) {
	return func(b []byte, ok bool, err error) {
		switch {
		case err != nil:
			s.replyError(w, err)
		case !ok:
			w.null()
		default:
			w.bulk(b)
		}
	}
}

func cmdQuery(s *Server, c *client, args [][]byte, w *writer) {
	out, err := s.db.Query(args[1], args[2])
	if err != nil {
		s.replyError(w, err)
		return
	}
	s.writeOutput(w, out)
}

func cmdDryRun(s *Server, c *client, args [][]byte, w *writer) {
	out, state, err := s.db.DryRun(args[1], args[2])
	if err != nil {
		s.replyError(w, err)
		return
	}
	// Convert first so a conversion error replaces the whole reply.
	conv, err := out.AppendRESP(nil, w.resp3)
	if err != nil {
		s.replyError(w, err)
		return
	}
	w.array(2)
	w.raw(conv)
	w.bulk(state)
}

// maxSearchCount mirrors the runtime's bound, so the error names COUNT.
const maxSearchCount = 100000

func cmdSearch(s *Server, c *client, args [][]byte, w *writer) {
	q := legion.SearchQuery{Tag: args[1]}
	for i := 2; i < len(args); i++ {
		switch opt := args[i]; {
		case bytes.EqualFold(opt, []byte("AFTER")):
			if i+1 >= len(args) {
				w.syntaxError()
				return
			}
			q.After, q.AfterKey = true, args[i+1]
			i++
		case bytes.EqualFold(opt, []byte("COUNT")):
			if i+1 >= len(args) {
				w.syntaxError()
				return
			}
			n, err := strconv.ParseInt(string(args[i+1]), 10, 64)
			if err != nil {
				w.notInteger()
				return
			}
			if n < 1 || n > maxSearchCount {
				w.errorf("ERR COUNT must be between 1 and %d", maxSearchCount)
				return
			}
			q.Count = int(n)
			i++
		case bytes.EqualFold(opt, []byte("EXACT")):
			q.Exact = true
		default:
			w.syntaxError()
			return
		}
	}
	// The records are written as they are read; the array's header, known
	// only then, is inserted before them.
	start := len(w.b)
	each := func(tag, key []byte) {
		w.array(2)
		w.bulk(tag)
		w.bulk(key)
	}
	var n int
	var err error
	c.searched = true
	if c.view != nil && c.view.Active() || len(c.conn.pipeline()) > 0 {
		// Searches pipelined together are concurrent: one view of the
		// store, taken now, answers them all.
		if c.view == nil {
			c.view = s.db.NewSearchView()
		}
		n, err = c.view.SearchFunc(q, each)
	} else {
		n, err = s.db.SearchFunc(q, each)
	}
	if err != nil {
		w.b = w.b[:start]
		s.replyError(w, err)
		return
	}
	var header [24]byte
	w.b = slices.Insert(w.b, start, appendPrefix(header[:0], '*', n)...)
}

func cmdScriptLoad(s *Server, c *client, args [][]byte, w *writer) {
	sha, err := s.db.LoadScript(args[2])
	if err != nil {
		s.replyError(w, err)
		return
	}
	w.bulkString(sha)
}

func cmdScriptExists(s *Server, c *client, args [][]byte, w *writer) {
	shas := make([]string, len(args)-2)
	for i, a := range args[2:] {
		shas[i] = string(a)
	}
	found, err := s.db.HandlerExists(shas...)
	if err != nil {
		s.replyError(w, err)
		return
	}
	w.array(len(found))
	for _, ok := range found {
		if ok {
			w.integer(1)
		} else {
			w.integer(0)
		}
	}
}

func cmdScriptFlush(s *Server, c *client, args [][]byte, w *writer) {
	if len(args) == 3 {
		switch strings.ToUpper(string(args[2])) {
		case "ASYNC", "SYNC":
		default:
			w.errorLine("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
			return
		}
	} else if len(args) > 3 {
		w.syntaxError()
		return
	}
	if _, err := s.db.FlushHandlers(); err != nil {
		s.replyError(w, err)
		return
	}
	w.ok()
}

func cmdLegionScriptList(s *Server, c *client, args [][]byte, w *writer) {
	hs, err := s.db.Handlers()
	if err != nil {
		s.replyError(w, err)
		return
	}
	w.array(len(hs))
	for _, h := range hs {
		w.mapHeader(4)
		w.bulkString("sha")
		w.bulkString(h.SHA)
		w.bulkString("loaded_at")
		w.integer(h.LoadedAt)
		w.bulkString("active")
		if h.Active {
			w.integer(1)
		} else {
			w.integer(0)
		}
		w.bulkString("references")
		w.integer(h.References)
	}
}

func cmdLegionScriptShow(s *Server, c *client, args [][]byte, w *writer) {
	src, err := s.db.HandlerSource(strings.ToLower(string(args[2])))
	if err != nil {
		s.replyError(w, err)
		return
	}
	w.bulk(src)
}

func cmdLegionScriptUse(s *Server, c *client, args [][]byte, w *writer) {
	if err := s.db.UseHandler(string(args[2])); err != nil {
		s.replyError(w, err)
		return
	}
	w.ok()
}

func cmdCheck(s *Server, c *client, args [][]byte, w *writer) {
	repair := false
	if len(args) == 2 {
		if strings.ToUpper(string(args[1])) != "REPAIR" {
			w.syntaxError()
			return
		}
		repair = true
	} else if len(args) > 2 {
		w.syntaxError()
		return
	}
	rep, err := s.db.Check(repair)
	if err != nil {
		s.replyError(w, err)
		return
	}
	w.mapHeader(7)
	w.bulkString("partitions")
	w.integer(rep.Partitions)
	w.bulkString("decode_errors")
	w.integer(rep.DecodeErrors)
	w.bulkString("tag_mismatches")
	w.integer(rep.TagMismatches)
	w.bulkString("index_missing")
	w.integer(rep.IndexMissing)
	w.bulkString("index_orphans")
	w.integer(rep.IndexOrphans)
	w.bulkString("repaired")
	w.integer(rep.Repaired)
	w.bulkString("problems")
	w.array(len(rep.Problems))
	for _, p := range rep.Problems {
		w.bulkString(p)
	}
}

func cmdBackup(s *Server, c *client, args [][]byte, w *writer) {
	if err := s.db.Backup(string(args[1])); err != nil {
		s.replyError(w, err)
		return
	}
	w.ok()
}

func cmdPing(s *Server, c *client, args [][]byte, w *writer) {
	switch len(args) {
	case 1:
		w.status("PONG")
	case 2:
		w.bulk(args[1])
	default:
		w.errorf("ERR wrong number of arguments for 'ping' command")
	}
}

func cmdEcho(s *Server, c *client, args [][]byte, w *writer) { w.bulk(args[1]) }

func cmdQuit(s *Server, c *client, args [][]byte, w *writer) {
	w.ok()
	w.closeAfter = true
}

// helpReply returns a HELP subcommand answering with lines of text.
func helpReply(container string, lines []string) func(*Server, *client, [][]byte, *writer) {
	return func(s *Server, c *client, args [][]byte, w *writer) {
		head := container + " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
		w.array(len(lines) + 1)
		w.status(head)
		for _, l := range lines {
			w.status(l)
		}
	}
}
