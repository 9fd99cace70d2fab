package scripting

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
	"github.com/yuin/gopher-lua/parse"
)

const (
	// maxSourceBytes caps handler sources and loadstring input: gopher-lua's
	// parser cannot be interrupted, so its input must be small enough to
	// parse promptly.
	maxSourceBytes = 1 << 20
	// maxSyntaxDepth bounds the nesting of the syntax tree. gopher-lua's
	// compiler recurses once per level, so an unbounded depth could exhaust
	// the Go stack (a fatal error, not a panic).
	maxSyntaxDepth = 1000
)

// compileError carries a compile failure in Lua's "name:LINE: message" form.
type compileError struct {
	line int
	msg  string
}

// compileLua parses and compiles src. name is the chunk name used in
// messages ("handler").
func compileLua(src []byte, name string) (proto *lua.FunctionProto, cerr *compileError) {
	if len(src) > maxSourceBytes {
		return nil, &compileError{0, fmt.Sprintf("%s: source of %d bytes exceeds %d bytes", name, len(src), maxSourceBytes)}
	}
	defer func() {
		if rcv := recover(); rcv != nil {
			proto, cerr = nil, &compileError{0, fmt.Sprintf("%s: %v", name, rcv)}
		}
	}()
	chunk, err := parse.Parse(bytes.NewReader(src), name)
	if err != nil {
		var pe *parse.Error
		if errors.As(err, &pe) {
			if pe.Pos.Line <= 0 {
				return nil, &compileError{0, fmt.Sprintf("%s: %s at EOF", name, pe.Message)}
			}
			return nil, &compileError{pe.Pos.Line, fmt.Sprintf("%s:%d: %s near '%s'", name, pe.Pos.Line, pe.Message, pe.Token)}
		}
		return nil, &compileError{0, fmt.Sprintf("%s: %s", name, strings.TrimSpace(err.Error()))}
	}
	if line, ok := checkDepthStmts(chunk, 0); !ok {
		return nil, &compileError{line, fmt.Sprintf("%s:%d: chunk has too many syntax levels", name, line)}
	}
	proto, err = lua.Compile(chunk, name)
	if err != nil {
		var ce *lua.CompileError
		if errors.As(err, &ce) {
			return nil, &compileError{ce.Line, fmt.Sprintf("%s:%d: %s", name, ce.Line, ce.Message)}
		}
		return nil, &compileError{0, fmt.Sprintf("%s: %s", name, err.Error())}
	}
	// The main chunk is vararg with Lua 5.0's implicit "arg" table, which
	// gopher-lua builds on every call although the main chunk has no local
	// of that name. Dropping the flag saves two maps per call.
	proto.IsVarArg &^= lua.VarArgNeedsArg
	return proto, nil
}

// checkDepthStmts walks the tree and fails (with the offending line) as soon
// as the nesting exceeds maxSyntaxDepth. Its own recursion is bounded by the
// same limit.
func checkDepthStmts(stmts []ast.Stmt, depth int) (int, bool) {
	for _, s := range stmts {
		if line, ok := checkDepthStmt(s, depth+1); !ok {
			return line, false
		}
	}
	return 0, true
}

func checkDepthExprs(exprs []ast.Expr, depth int) (int, bool) {
	for _, e := range exprs {
		if line, ok := checkDepthExpr(e, depth); !ok {
			return line, false
		}
	}
	return 0, true
}

func checkDepthStmt(s ast.Stmt, depth int) (int, bool) {
	if depth > maxSyntaxDepth {
		return s.Line(), false
	}
	type check func() (int, bool)
	run := func(cs ...check) (int, bool) {
		for _, c := range cs {
			if line, ok := c(); !ok {
				return line, false
			}
		}
		return 0, true
	}
	exprs := func(es []ast.Expr) check { return func() (int, bool) { return checkDepthExprs(es, depth+1) } }
	expr := func(e ast.Expr) check { return func() (int, bool) { return checkDepthExpr(e, depth+1) } }
	stmts := func(ss []ast.Stmt) check { return func() (int, bool) { return checkDepthStmts(ss, depth) } }
	switch s := s.(type) {
	case *ast.AssignStmt:
		return run(exprs(s.Lhs), exprs(s.Rhs))
	case *ast.LocalAssignStmt:
		return run(exprs(s.Exprs))
	case *ast.FuncCallStmt:
		return run(expr(s.Expr))
	case *ast.DoBlockStmt:
		return run(stmts(s.Stmts))
	case *ast.WhileStmt:
		return run(expr(s.Condition), stmts(s.Stmts))
	case *ast.RepeatStmt:
		return run(expr(s.Condition), stmts(s.Stmts))
	case *ast.IfStmt:
		return run(expr(s.Condition), stmts(s.Then), stmts(s.Else))
	case *ast.NumberForStmt:
		return run(expr(s.Init), expr(s.Limit), expr(s.Step), stmts(s.Stmts))
	case *ast.GenericForStmt:
		return run(exprs(s.Exprs), stmts(s.Stmts))
	case *ast.FuncDefStmt:
		cs := []check{expr(s.Func)}
		if s.Name != nil {
			cs = append(cs, expr(s.Name.Func), expr(s.Name.Receiver))
		}
		return run(cs...)
	case *ast.ReturnStmt:
		return run(exprs(s.Exprs))
	}
	return 0, true
}

func checkDepthExpr(e ast.Expr, depth int) (int, bool) {
	if e == nil {
		return 0, true
	}
	if depth > maxSyntaxDepth {
		return e.Line(), false
	}
	d := depth + 1
	pair := func(a, b ast.Expr) (int, bool) {
		if line, ok := checkDepthExpr(a, d); !ok {
			return line, false
		}
		return checkDepthExpr(b, d)
	}
	switch e := e.(type) {
	case *ast.AttrGetExpr:
		return pair(e.Object, e.Key)
	case *ast.TableExpr:
		for _, f := range e.Fields {
			if line, ok := pair(f.Key, f.Value); !ok {
				return line, false
			}
		}
	case *ast.FuncCallExpr:
		if line, ok := pair(e.Func, e.Receiver); !ok {
			return line, false
		}
		return checkDepthExprs(e.Args, d)
	case *ast.LogicalOpExpr:
		return pair(e.Lhs, e.Rhs)
	case *ast.RelationalOpExpr:
		return pair(e.Lhs, e.Rhs)
	case *ast.StringConcatOpExpr:
		return pair(e.Lhs, e.Rhs)
	case *ast.ArithmeticOpExpr:
		return pair(e.Lhs, e.Rhs)
	case *ast.UnaryMinusOpExpr:
		return checkDepthExpr(e.Expr, d)
	case *ast.UnaryNotOpExpr:
		return checkDepthExpr(e.Expr, d)
	case *ast.UnaryLenOpExpr:
		return checkDepthExpr(e.Expr, d)
	case *ast.FunctionExpr:
		return checkDepthStmts(e.Stmts, d)
	}
	return 0, true
}

// stateless reports whether running the chunk again could only rebuild
// the same global values, so that the values of an earlier run may be
// reused: its top-level code creates no tables and calls no functions (the
// only values it can make are numbers, strings, booleans, nil, references
// to the read-only libraries, and closures), and no function anywhere in
// it assigns an upvalue (so no closure can carry anything from one call to
// the next). Anything it does not recognize makes it not stateless.
func stateless(p *lua.FunctionProto) bool {
	for _, inst := range p.Code {
		switch int(inst >> 26) {
		case lua.OP_MOVE, lua.OP_MOVEN, lua.OP_LOADK, lua.OP_LOADBOOL, lua.OP_LOADNIL,
			lua.OP_GETUPVAL, lua.OP_GETGLOBAL, lua.OP_GETTABLE, lua.OP_GETTABLEKS, lua.OP_SETGLOBAL,
			lua.OP_ADD, lua.OP_SUB, lua.OP_MUL, lua.OP_DIV, lua.OP_MOD, lua.OP_POW, lua.OP_UNM,
			lua.OP_NOT, lua.OP_CONCAT, lua.OP_JMP, lua.OP_EQ, lua.OP_LT, lua.OP_LE,
			lua.OP_TEST, lua.OP_TESTSET, lua.OP_CLOSURE, lua.OP_RETURN:
		default:
			return false
		}
	}
	var noUpvalueWrites func(*lua.FunctionProto) bool
	noUpvalueWrites = func(f *lua.FunctionProto) bool {
		for _, inst := range f.Code {
			if int(inst>>26) == lua.OP_SETUPVAL {
				return false
			}
		}
		for _, c := range f.FunctionPrototypes {
			if !noUpvalueWrites(c) {
				return false
			}
		}
		return true
	}
	return noUpvalueWrites(p)
}
