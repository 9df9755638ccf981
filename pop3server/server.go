package pop3server

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("pop3server: server closed")

// Server accepts POP3 connections and runs one session per connection.
type Server struct {
	backend Backend
	opts    Options

	draining atomic.Bool
	sessions atomic.Int64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perIP     map[netip.Addr]int // unauthenticated connections per client address
	admitted  int                // connections holding an admit slot
	prelogin  *list.List         // unauthenticated *conn, oldest first
	userIP    map[string]int     // logged-in sessions per user and client address
	evictions int64
	locks     map[string]struct{}
	connsDone sync.WaitGroup

	penalties *penaltyTracker
}

// NewServer returns a server that logs users in through backend.
func NewServer(backend Backend, opts Options) *Server {
	opts = opts.withDefaults()
	return &Server{
		backend:   backend,
		opts:      opts,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		perIP:     make(map[netip.Addr]int),
		prelogin:  list.New(),
		userIP:    make(map[string]int),
		locks:     make(map[string]struct{}),
		penalties: newPenaltyTracker(opts.AuthFailDelay, opts.AuthPenaltyMax),
	}
}

// Serve accepts connections on l until Shutdown or Close. A listener made
// by tls.NewListener serves implicit TLS (POP3S). Serve always returns a
// non-nil error; after Shutdown or Close it is ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	if !s.trackListener(l, true) {
		l.Close()
		return ErrServerClosed
	}
	defer s.trackListener(l, false)

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.draining.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Like net/http: back off on EMFILE and friends rather
				// than spinning or giving up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.opts.Logger.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, nc)
		if !s.trackConn(c, true) {
			nc.Close()
			continue
		}
		go c.serve()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting connections, ends idle sessions with
// "-ERR [SYS/TEMP]", lets busy ones finish their current command, and waits
// for all sessions to end. When ctx is done first, the remaining
// connections are closed and ctx's error returned. Nothing is applied to a
// session that did not QUIT.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.interrupt()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.connsDone.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeConns()
		<-done
		return ctx.Err()
	}
}

// Close closes all listeners and connections at once.
func (s *Server) Close() error {
	s.draining.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.closeConns()
	s.connsDone.Wait()
	return nil
}

// Draining reports whether Shutdown or Close has been called.
func (s *Server) Draining() bool { return s.draining.Load() }

// ActiveSessions is the number of open connections.
func (s *Server) ActiveSessions() int { return int(s.sessions.Load()) }

func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.cancel() // aborts a backend call or body in progress
		c.raw.Close()
	}
}

func (s *Server) trackListener(l net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.draining.Load() {
			return false
		}
		s.listeners[l] = struct{}{}
	} else {
		delete(s.listeners, l)
	}
	return true
}

func (s *Server) trackConn(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.draining.Load() {
			return false
		}
		s.conns[c] = struct{}{}
		s.connsDone.Add(1)
		s.sessions.Add(1)
	} else {
		delete(s.conns, c)
		s.sessions.Add(-1)
		s.connsDone.Done()
	}
	return true
}

// lockUser takes the per-user session lock (Options.LockSession): in
// Options.Locker when set, else in this process's table. Lock keys ignore
// case, as user names do.
func (s *Server) lockUser(ctx context.Context, user string) (unlock func(), err error) {
	key := strings.ToLower(user)
	if s.opts.Locker != nil {
		return s.opts.Locker.TryLock(ctx, key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, busy := s.locks[key]; busy {
		return nil, ErrInUse
	}
	s.locks[key] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.locks, key)
	}, nil
}

// clientKey groups IPv6 clients by /64, the smallest block a site gets, so
// one attacker cannot dodge per-address limits by rotating addresses.
func clientKey(addr netip.Addr) netip.Addr {
	addr = addr.Unmap()
	if addr.Is6() {
		p, err := addr.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return addr
}

// plaintextAllowed applies Options.PlaintextAuth to an unencrypted
// connection from addr.
func (s *Server) plaintextAllowed(addr netip.Addr) bool {
	switch s.opts.PlaintextAuth {
	case PlaintextAlways:
		return true
	case PlaintextNever:
		return false
	}
	addr = addr.Unmap()
	return addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast()
}

func newSessionID() string {
	var b [9]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case nil:
		return netip.AddrPort{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
