package scripting

import (
	"fmt"
	"time"
)

// Limits bounds what a single call may do. The zero value of a field is not
// "unlimited": use DefaultLimits and change what you need.
type Limits struct {
	// InstructionBudget is the number of Lua VM instructions a call may
	// execute, including the handler's top-level chunk, which runs again on
	// every call. Library functions charge for their work too (roughly one
	// unit per 32 bytes they produce or scan, one per pattern-matching
	// step, one per value decoded), so the budget is a deterministic cost
	// bound. Default 50,000,000.
	InstructionBudget int64
	// Timeout is a wall-clock bound, enforced only when Call.Accept is set
	// and at Load. Default 1s.
	Timeout time.Duration
	// MaxCallDepth is the number of Lua call frames (Lua and library
	// functions). Default 200.
	MaxCallDepth int
	// MaxStringBytes is the largest string a script may build with the
	// string, table and cjson libraries. Default 64 MiB.
	MaxStringBytes int
	// MaxStateBytes bounds the encoded new state. Default 16 MiB.
	MaxStateBytes int
	// MaxOutputBytes bounds the encoded output. Default 16 MiB.
	MaxOutputBytes int
	// MaxEventBytes bounds the event or request argument and the handler
	// source (which is further capped at 1 MiB). Default 4 MiB.
	MaxEventBytes int
	// MaxTags bounds the distinct tags index may return. Default 1024.
	MaxTags int
	// MaxTagBytes bounds the length of one tag. Default 1024.
	MaxTagBytes int
	// MaxMemoryBytes bounds the process's Go heap while accepting: a call
	// (with Call.Accept set, or Load) is stopped with ErrMemory soon after
	// the heap exceeds it. 0 means no bound. Default 0; the server sets it.
	MaxMemoryBytes int64
}

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits {
	return Limits{
		InstructionBudget: 50_000_000,
		Timeout:           time.Second,
		MaxCallDepth:      200,
		MaxStringBytes:    64 << 20,
		MaxStateBytes:     16 << 20,
		MaxOutputBytes:    16 << 20,
		MaxEventBytes:     4 << 20,
		MaxTags:           1024,
		MaxTagBytes:       1024,
		MaxMemoryBytes:    0,
	}
}

// maxCallDepthLimit keeps gopher-lua's fixed call-frame stack (allocated per
// pooled state) and the Go stack of nested metamethod calls reasonable.
const maxCallDepthLimit = 10000

// Validate reports the first field that is out of range.
func (l Limits) Validate() error {
	switch {
	case l.InstructionBudget <= 0:
		return fmt.Errorf("scripting: InstructionBudget must be positive, got %d", l.InstructionBudget)
	case l.Timeout <= 0:
		return fmt.Errorf("scripting: Timeout must be positive, got %v", l.Timeout)
	case l.MaxCallDepth < 10 || l.MaxCallDepth > maxCallDepthLimit:
		return fmt.Errorf("scripting: MaxCallDepth must be in [10, %d], got %d", maxCallDepthLimit, l.MaxCallDepth)
	case l.MaxStringBytes <= 0:
		return fmt.Errorf("scripting: MaxStringBytes must be positive, got %d", l.MaxStringBytes)
	case l.MaxStateBytes <= 0:
		return fmt.Errorf("scripting: MaxStateBytes must be positive, got %d", l.MaxStateBytes)
	case l.MaxOutputBytes <= 0:
		return fmt.Errorf("scripting: MaxOutputBytes must be positive, got %d", l.MaxOutputBytes)
	case l.MaxEventBytes <= 0:
		return fmt.Errorf("scripting: MaxEventBytes must be positive, got %d", l.MaxEventBytes)
	case l.MaxTags < 0:
		return fmt.Errorf("scripting: MaxTags must not be negative, got %d", l.MaxTags)
	case l.MaxTagBytes <= 0:
		return fmt.Errorf("scripting: MaxTagBytes must be positive, got %d", l.MaxTagBytes)
	case l.MaxMemoryBytes < 0:
		return fmt.Errorf("scripting: MaxMemoryBytes must not be negative, got %d", l.MaxMemoryBytes)
	}
	return nil
}
