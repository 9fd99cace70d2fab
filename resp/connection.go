package resp

import (
	"crypto/subtle"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// checkPassword compares credentials with the default user's password in
// constant time. Only the "default" user exists.
func (s *Server) checkPassword(user, pass []byte) bool {
	want := *s.requirePass.Load()
	if user != nil && string(user) != "default" {
		return false
	}
	if want == "" {
		// No password: the default user is "nopass", as in Redis.
		return true
	}
	return subtle.ConstantTimeCompare(pass, []byte(want)) == 1
}

const wrongPass = "WRONGPASS invalid username-password pair or user is disabled."

func cmdAuth(s *Server, c *client, args [][]byte, w *writer) {
	var user, pass []byte
	switch len(args) {
	case 2:
		pass = args[1]
		if *s.requirePass.Load() == "" {
			w.errorLine("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
			return
		}
	case 3:
		user, pass = args[1], args[2]
	default:
		w.syntaxError()
		return
	}
	if !s.checkPassword(user, pass) {
		w.errorLine(wrongPass)
		return
	}
	c.authed = true
	w.ok()
}

func cmdHello(s *Server, c *client, args [][]byte, w *writer) {
	resp3 := w.resp3
	if len(args) > 1 {
		v, err := strconv.Atoi(string(args[1]))
		if err != nil {
			w.errorLine("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 && v != 3 {
			w.errorLine("NOPROTO unsupported protocol version")
			return
		}
		resp3 = v == 3
	}
	var name []byte
	setName, auth := false, false
	var user, pass []byte
	for i := 2; i < len(args); i++ {
		switch strings.ToUpper(string(args[i])) {
		case "AUTH":
			if i+2 >= len(args) {
				w.errorf("ERR Syntax error in HELLO option '%s'", args[i])
				return
			}
			auth, user, pass = true, args[i+1], args[i+2]
			i += 2
		case "SETNAME":
			if i+1 >= len(args) {
				w.errorf("ERR Syntax error in HELLO option '%s'", args[i])
				return
			}
			name, setName = args[i+1], true
			i++
		default:
			w.errorf("ERR Syntax error in HELLO option '%s'", args[i])
			return
		}
	}
	if auth {
		if !s.checkPassword(user, pass) {
			w.errorLine(wrongPass)
			return
		}
		c.authed = true
	} else if !c.authed && *s.requirePass.Load() != "" {
		w.errorLine("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if setName {
		if !validClientName(name) {
			w.errorLine("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.mu.Lock()
		c.name = string(name)
		c.mu.Unlock()
	}
	w.resp3 = resp3
	c.mu.Lock()
	c.resp3 = resp3
	c.mu.Unlock()
	proto := int64(2)
	if resp3 {
		proto = 3
	}
	w.mapHeader(7)
	w.bulkString("server")
	w.bulkString("legion")
	w.bulkString("version")
	w.bulkString(s.cfg.Version)
	w.bulkString("proto")
	w.integer(proto)
	w.bulkString("id")
	w.integer(c.id)
	w.bulkString("mode")
	w.bulkString("standalone")
	w.bulkString("role")
	w.bulkString("master")
	w.bulkString("modules")
	w.array(0)
}

// validClientName applies Redis's rule: printable ASCII without spaces.
func validClientName(name []byte) bool {
	for _, b := range name {
		if b < '!' || b > '~' {
			return false
		}
	}
	return true
}

func cmdSelect(s *Server, c *client, args [][]byte, w *writer) {
	n, err := strconv.ParseInt(string(args[1]), 10, 64)
	switch {
	case err != nil:
		w.notInteger()
	case n != 0:
		w.errorLine("ERR DB index is out of range")
	default:
		w.ok()
	}
}

func cmdReset(s *Server, c *client, args [][]byte, w *writer) {
	w.resp3 = false
	c.mu.Lock()
	c.name, c.resp3 = "", false
	c.mu.Unlock()
	if *s.requirePass.Load() != "" {
		c.authed = false
	}
	w.status("RESET")
}

func cmdTime(s *Server, c *client, args [][]byte, w *writer) {
	now := time.Now()
	w.array(2)
	w.bulkString(strconv.FormatInt(now.Unix(), 10))
	w.bulkString(strconv.FormatInt(int64(now.Nanosecond()/1000), 10))
}

func cmdDBSize(s *Server, c *client, args [][]byte, w *writer) {
	n, err := s.db.PartitionCount()
	if err != nil {
		s.replyError(w, err)
		return
	}
	w.integer(n)
}

func cmdClientID(s *Server, c *client, args [][]byte, w *writer) { w.integer(c.id) }

func cmdClientSetName(s *Server, c *client, args [][]byte, w *writer) {
	if !validClientName(args[2]) {
		w.errorLine("ERR Client names cannot contain spaces, newlines or special characters.")
		return
	}
	c.mu.Lock()
	c.name = string(args[2])
	c.mu.Unlock()
	w.ok()
}

func cmdClientGetName(s *Server, c *client, args [][]byte, w *writer) {
	c.mu.Lock()
	name := c.name
	c.mu.Unlock()
	if name == "" {
		w.null()
		return
	}
	w.bulkString(name)
}

func cmdClientSetInfo(s *Server, c *client, args [][]byte, w *writer) {
	attr, val := strings.ToLower(string(args[2])), string(args[3])
	for _, b := range []byte(val) {
		if b < '!' || b > '~' {
			w.errorf("ERR %s cannot contain spaces, newlines or special characters.", strings.ToUpper(attr))
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch attr {
	case "lib-name":
		c.libName = val
	case "lib-ver":
		c.libVer = val
	default:
		w.errorf("ERR Unrecognized option '%s'", args[2])
		return
	}
	w.ok()
}

// info formats the CLIENT LIST line of c, as Redis does (fields Legion
// does not track are reported as Redis would for an idle client).
func (c *client) info(now time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := 2
	if c.resp3 {
		resp = 3
	}
	cmd := c.lastCmd
	if cmd == "" {
		cmd = "NULL"
	}
	return fmt.Sprintf("id=%d addr=%s laddr=%s fd=-1 name=%s age=%d idle=%d flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=%s user=default redir=-1 resp=%d lib-name=%s lib-ver=%s",
		c.id, c.addr, c.laddr, c.name, int(now.Sub(c.created).Seconds()), int(now.Sub(c.lastAt).Seconds()), cmd, resp, c.libName, c.libVer)
}

// clientList returns the connected clients ordered by id.
func (s *Server) clientList() []*client {
	s.clientsMu.Lock()
	list := make([]*client, 0, len(s.clients))
	for _, c := range s.clients {
		list = append(list, c)
	}
	s.clientsMu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].id < list[j].id })
	return list
}

func cmdClientList(s *Server, c *client, args [][]byte, w *writer) {
	var ids map[int64]bool
	for i := 2; i < len(args); i++ {
		switch strings.ToUpper(string(args[i])) {
		case "TYPE":
			if i+1 >= len(args) {
				w.syntaxError()
				return
			}
			switch strings.ToLower(string(args[i+1])) {
			case "normal":
			case "master", "replica", "pubsub":
				ids = map[int64]bool{} // Legion has none of those
			default:
				w.errorf("ERR Unknown client type '%s'", args[i+1])
				return
			}
			i++
		case "ID":
			if i+1 >= len(args) {
				w.syntaxError()
				return
			}
			if ids == nil {
				ids = map[int64]bool{}
			}
			for i+1 < len(args) {
				id, err := strconv.ParseInt(string(args[i+1]), 10, 64)
				if err != nil || id <= 0 {
					w.errorf("ERR Invalid client ID")
					return
				}
				ids[id] = true
				i++
			}
		default:
			w.syntaxError()
			return
		}
	}
	now := time.Now()
	var b strings.Builder
	for _, cl := range s.clientList() {
		if ids != nil && !ids[cl.id] {
			continue
		}
		b.WriteString(cl.info(now))
		b.WriteByte('\n')
	}
	w.verbatim(b.String())
}

func cmdClientInfo(s *Server, c *client, args [][]byte, w *writer) {
	w.verbatim(c.info(time.Now()) + "\n")
}

// cmdClientKill supports the old form (CLIENT KILL addr:port) and the
// filter form (ID, ADDR, LADDR, USER, SKIPME).
func cmdClientKill(s *Server, c *client, args [][]byte, w *writer) {
	if len(args) == 3 {
		for _, cl := range s.clientList() {
			if cl.addr == string(args[2]) {
				s.kill(cl, c)
				w.ok()
				return
			}
		}
		w.errorLine("ERR No such client")
		return
	}
	if len(args)%2 != 0 {
		w.syntaxError()
		return
	}
	var (
		id          int64
		addr, laddr string
		user        string
		skipMe      = true
	)
	for i := 2; i < len(args); i += 2 {
		v := string(args[i+1])
		switch strings.ToUpper(string(args[i])) {
		case "ID":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				w.errorLine("ERR client-id should be greater than 0")
				return
			}
			id = n
		case "ADDR":
			addr = v
		case "LADDR":
			laddr = v
		case "USER":
			user = v
		case "SKIPME":
			switch strings.ToLower(v) {
			case "yes":
				skipMe = true
			case "no":
				skipMe = false
			default:
				w.syntaxError()
				return
			}
		case "TYPE":
			if strings.ToLower(v) != "normal" {
				w.integer(0)
				return
			}
		default:
			w.syntaxError()
			return
		}
	}
	killed := int64(0)
	for _, cl := range s.clientList() {
		if id != 0 && cl.id != id || addr != "" && cl.addr != addr || laddr != "" && cl.laddr != laddr ||
			user != "" && user != "default" || skipMe && cl == c {
			continue
		}
		s.kill(cl, c)
		killed++
	}
	w.integer(killed)
}

// kill closes another client's connection. Only its socket is closed
// from here: the read then fails in the client's own goroutine, which
// cleans up. Killing oneself happens after the reply is written.
func (s *Server) kill(victim, self *client) {
	if victim == self {
		self.w.closeAfter = true
		return
	}
	victim.conn.nc.Close()
}
