package scripting

import (
	"errors"
	"strings"
)

// Sentinel errors. Every failure returned by the Engine is an *Error whose
// Kind is one of these; use errors.Is to test for them.
var (
	ErrCompile    = errors.New("scripting: compile error")
	ErrNoApply    = errors.New("scripting: handler does not define function apply")
	ErrNoQuery    = errors.New("scripting: handler does not define function query")
	ErrRuntime    = errors.New("scripting: runtime error")
	ErrBudget     = errors.New("scripting: instruction budget exceeded")
	ErrTimeout    = errors.New("scripting: timeout")
	ErrMemory     = errors.New("scripting: memory limit exceeded")
	ErrStringSize = errors.New("scripting: string too large")
	ErrCallDepth  = errors.New("scripting: call depth exceeded")
	ErrStateSize  = errors.New("scripting: state too large")
	ErrOutputSize = errors.New("scripting: output too large")
	ErrEventSize  = errors.New("scripting: event too large")
	ErrNotData    = errors.New("scripting: value is not data")
	ErrTags       = errors.New("scripting: invalid tags")
	ErrCorrupt    = errors.New("scripting: corrupt value encoding")
)

// Error describes a failed Load, Apply, Index or Query.
type Error struct {
	Kind  error  // one of the package sentinels
	Func  string // "apply", "index", "query" or "load"
	Line  int    // Lua line when known, else 0
	Msg   string // the message; for ErrRuntime the Lua message with its "handler:LINE:" position
	Reply string // the script's own error reply text when it raised error({err="..."})
}

// Error returns "scripting: FUNC: MSG".
func (e *Error) Error() string {
	return "scripting: " + e.Func + ": " + e.Msg
}

// Unwrap returns Kind so that errors.Is(err, ErrBudget) works.
func (e *Error) Unwrap() error { return e.Kind }

// RESPError is the text of the RESP error line (without the leading "-"):
// the user's Reply verbatim when the script raised error({err=...}),
// otherwise "ERR script: ..." describing the failure. It never contains CR
// or LF.
func (e *Error) RESPError() string {
	if e.Reply != "" {
		return sanitizeLine(e.Reply)
	}
	switch e.Kind {
	case ErrBudget, ErrTimeout, ErrMemory, ErrStringSize, ErrCallDepth,
		ErrStateSize, ErrOutputSize, ErrEventSize:
		return sanitizeLine("ERR script: " + kindText(e.Kind) + " in " + e.Func)
	}
	return sanitizeLine("ERR script: " + e.Func + ": " + e.Msg)
}

// Transient reports whether err is a non-deterministic failure (wall-clock
// timeout or memory bound). Such a failure says nothing about the event: it
// must never be recorded as an event's result or replayed as one.
func Transient(err error) bool {
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrMemory)
}

// kindText is the sentinel's text without the package prefix.
func kindText(kind error) string {
	return strings.TrimPrefix(kind.Error(), "scripting: ")
}

// sanitizeLine replaces CR and LF, which cannot appear in a RESP simple
// string or error line, with spaces.
func sanitizeLine(s string) string {
	if strings.IndexAny(s, "\r\n") < 0 {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c == '\r' || c == '\n' {
			b[i] = ' '
		}
	}
	return string(b)
}
