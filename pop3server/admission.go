package pop3server

import (
	"container/list"
	"net/netip"
	"strings"
	"time"
)

// Admission, the way Dovecot's login processes do it:
//
//   - Unauthenticated connections are cheap for an attacker (a byte every
//     few seconds keeps one open), so they must never lock out real users.
//     They have their own cap (MaxPreLoginConns) inside the total one
//     (MaxSessions), and when either is full the OLDEST unauthenticated
//     connection is closed to admit the new one. A connection whose login
//     is being checked upstream is not evicted (that would waste the
//     upstream attempt), and a logged-in session never is.
//   - MaxConnsPerIP counts unauthenticated connections only: behind a NAT
//     or a load balancer without PROXY protocol, many users share one
//     address, and each logged-in user is capped on its own, per user and
//     client address (MaxUserIPConns, Dovecot's
//     mail_max_userip_connections).

// admission is one connection's share of the server's counters; every
// field is guarded by Server.mu.
type admission struct {
	ipKey    netip.Addr
	prelogin *list.Element // in Server.prelogin while unauthenticated
	slot     bool          // counted in Server.admitted
	userIP   string        // key in Server.userIP once logged in
	inLogin  bool          // Backend.Login running: not evictable
}

// Refusal texts, after "-ERR [SYS/TEMP] ".
const (
	refuseFull   = "too many connections"
	refusePerIP  = "too many connections from your address"
	refuseEvict  = "too many connections, closing the oldest unauthenticated ones"
	evictedWords = "-ERR [SYS/TEMP] " + refuseEvict
)

// admit reserves a slot for c, evicting the oldest evictable
// unauthenticated connection when a cap is reached. When ok is false,
// reason is the refusal text. release must be called once c ends, ok or not.
func (s *Server) admit(c *conn) (reason string, ok bool) {
	key := clientKey(c.info.RemoteAddr.Addr())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.MaxConnsPerIP > 0 && s.perIP[key] >= s.opts.MaxConnsPerIP {
		return refusePerIP, false
	}
	// Counted by admitted slots, not by len(s.conns): connections that are
	// accepted but not yet admitted (or being refused) must not make a
	// burst refuse each other.
	for s.full() {
		if !s.evictOldestLocked() {
			return refuseFull, false
		}
	}
	c.adm.ipKey = key
	c.adm.slot = true
	c.adm.prelogin = s.prelogin.PushBack(c)
	s.perIP[key]++
	s.admitted++
	return "", true
}

func (s *Server) full() bool {
	o := &s.opts
	return o.MaxSessions > 0 && s.admitted >= o.MaxSessions ||
		o.MaxPreLoginConns > 0 && s.prelogin.Len() >= o.MaxPreLoginConns
}

// evictOldestLocked closes the oldest unauthenticated connection that is
// not in the middle of an upstream login, taken from the client address
// holding the most of them: a flood comes from few addresses with many
// connections each (up to MaxConnsPerIP), a real client has one or two,
// so the flood pays first whatever the arrival order. Its counters are
// released at once, so the slot is free for the caller. It scans at most
// MaxPreLoginConns connections, under the server's lock.
func (s *Server) evictOldestLocked() bool {
	var victim *conn
	most := 0
	for e := s.prelogin.Front(); e != nil; e = e.Next() {
		v := e.Value.(*conn)
		if n := s.perIP[v.adm.ipKey]; !v.adm.inLogin && n > most {
			victim, most = v, n // strictly more: the oldest wins a tie
		}
	}
	if victim == nil {
		return false
	}
	s.leavePreLoginLocked(victim)
	victim.adm.slot = false
	s.admitted--
	s.evictions++
	victim.evict()
	return true
}

// leavePreLoginLocked stops counting c as unauthenticated.
func (s *Server) leavePreLoginLocked(c *conn) {
	if c.adm.prelogin == nil {
		return
	}
	s.prelogin.Remove(c.adm.prelogin)
	c.adm.prelogin = nil
	if s.perIP[c.adm.ipKey]--; s.perIP[c.adm.ipKey] <= 0 {
		delete(s.perIP, c.adm.ipKey)
	}
}

// release gives back everything c holds.
func (s *Server) release(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leavePreLoginLocked(c)
	if c.adm.slot {
		c.adm.slot = false
		s.admitted--
	}
	if k := c.adm.userIP; k != "" {
		c.adm.userIP = ""
		if s.userIP[k]--; s.userIP[k] <= 0 {
			delete(s.userIP, k)
		}
	}
}

// beginLogin marks c as checking credentials upstream, so it is not
// evicted meanwhile; it returns false when c was evicted already.
func (s *Server) beginLogin(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !c.adm.slot {
		return false
	}
	c.adm.inLogin = true
	return true
}

// endLogin ends beginLogin. When the login succeeded (user != ""), c
// leaves the unauthenticated counters and is counted for user at its
// address instead; ok is false when that user has MaxUserIPConns sessions
// from the address already.
func (s *Server) endLogin(c *conn, user string) (ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.adm.inLogin = false
	if user == "" {
		return true
	}
	key := strings.ToLower(user) + "\x00" + c.adm.ipKey.String()
	if max := s.opts.MaxUserIPConns; max > 0 && s.userIP[key] >= max {
		return false
	}
	s.leavePreLoginLocked(c)
	s.userIP[key]++
	c.adm.userIP = key
	return true
}

// Evictions is how many unauthenticated connections were closed to admit
// newer ones since the server started.
func (s *Server) Evictions() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.evictions
}

// evict ends an unauthenticated connection from another goroutine: a read
// in progress (or the next one) fails, and a failure delay is cut short.
// Called with Server.mu held.
func (c *conn) evict() {
	c.evicted.Store(true)
	c.raw.SetReadDeadline(time.Unix(1, 0))
	c.cancel()
}
