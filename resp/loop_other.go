//go:build !linux

package resp

import (
	"errors"
	"net"
	"time"
)

// Event loops are built on epoll; elsewhere every connection has a
// goroutine of its own.
const loopsAvailable = false

type loop struct{}

func (s *Server) startLoops(int) error  { return errors.New("no event loops on this system") }
func (s *Server) stopLoops(time.Time)   {}
func (s *Server) serveLoop(nc net.Conn) { go s.serveConn(nc) }
