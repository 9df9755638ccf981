// Package loginguard keeps wrong passwords away from the upstream.
//
// Every failed login that reaches the upstream counts against the address
// the upstream sees, and without --upstream-send-id (plus Dovecot's
// login_trusted_networks) that is popbridge's own: Dovecot's auth penalty
// (2 s doubling to 15 s per source address) then delays every user of the
// bridge, and an attacker with wrong passwords slows everyone. A Guard
// wraps the backend so that popbridge is not that channel:
//
//   - A refused user+password pair is answered locally for NegativeTTL: a
//     client retrying the same wrong password (a misconfigured device, a
//     bot) costs the upstream one failure, not one per attempt. Identical
//     attempts in flight at once share the first one's verdict.
//   - A user whose recent upstream failures exceed UserBurst is "under
//     attack": further attempts with a password not known to be right
//     reach the upstream at most once per UserInterval, and are refused
//     locally otherwise. A password that logged the user in before
//     (KnownGoodTTL) is always tried, so the real user, whose devices poll
//     with the right password, is never locked out by the attack.
//   - Those later attempts are kept for clients that have not themselves
//     been refused (by the upstream or here) within NegativeTTL: an
//     attacker's addresses, which keep failing, never spend them, so a sustained
//     attack from a set of addresses adds no upstream failure (and no
//     upstream penalty on popbridge's address) after its first burst,
//     while a user whose password changed can still log in from a
//     device that has not been failing.
//
// Passwords are never stored: entries are keyed by an HMAC-SHA256 of user
// and password under a random key made at process start, so the tables
// cannot be reversed or even compared across processes. Every table is an
// LRU of bounded size, so an attacker with many names costs bounded memory.
//
// The per-client-address penalty (pop3server's --auth-fail-delay and
// --auth-penalty-max) applies before any of this: pop3server serves it
// before it calls the backend.
package loginguard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/popbridge/popbridge/pop3server"
)

// Defaults for the zero values of Options.
const (
	DefaultNegativeTTL  = 5 * time.Minute
	DefaultKnownGoodTTL = 7 * 24 * time.Hour
	DefaultUserBurst    = 3
	DefaultUserInterval = 60 * time.Second
	DefaultMaxEntries   = 100000
)

// Options tunes a Guard; zero values mean the defaults.
type Options struct {
	// NegativeTTL is how long a user+password the upstream refused is
	// refused locally. Keep it short: a password that becomes right
	// upstream (an account unlocked) is refused that long.
	NegativeTTL time.Duration
	// KnownGoodTTL is how long a user+password that logged in is let
	// through a user's throttle.
	KnownGoodTTL time.Duration
	// UserBurst is how many unverified attempts (passwords not known to be
	// right) per user may reach the upstream at once; after that one more
	// per UserInterval (a token bucket). A login that succeeds gives its
	// token back.
	UserBurst    int
	UserInterval time.Duration
	// MaxEntries bounds each table (refused pairs, known-good pairs,
	// per-user buckets).
	MaxEntries int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = DefaultNegativeTTL
	}
	if o.KnownGoodTTL <= 0 {
		o.KnownGoodTTL = DefaultKnownGoodTTL
	}
	if o.UserBurst <= 0 {
		o.UserBurst = DefaultUserBurst
	}
	if o.UserInterval <= 0 {
		o.UserInterval = DefaultUserInterval
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Reasons a Guard refuses a login without asking the upstream; they are
// the "reason" of the failed-login log line (pop3server.FailureReason).
var (
	// ErrRecentlyRefused: the same user and password were refused by the
	// upstream within NegativeTTL.
	ErrRecentlyRefused error = reason("recently refused upstream")
	// ErrUserThrottled: the user is under attack and this password is not
	// known to be right.
	ErrUserThrottled error = reason("too many failed logins for this user")
)

type reason string

func (r reason) Error() string              { return string(r) }
func (r reason) LoginFailureReason() string { return string(r) }

// pairKey is the HMAC of a user and password: the only trace of a password.
type pairKey [sha256.Size]byte

// Guard is a pop3server.Backend in front of another.
type Guard struct {
	next pop3server.Backend
	opts Options
	key  [32]byte

	refused   *lru.Cache[pairKey, time.Time]    // pair -> when refused
	knownGood *lru.Cache[pairKey, time.Time]    // pair -> when it last logged in
	failedBy  *lru.Cache[netip.Addr, time.Time] // client address -> when it was last refused

	mu       sync.Mutex
	buckets  *lru.Cache[string, *bucket] // user (lower case) -> attempts
	inflight map[pairKey]*call

	// stats, for tests and metrics
	upstreamCalls, localRefusals int64
}

var _ pop3server.Backend = (*Guard)(nil)

// New returns a Guard passing logins to next.
func New(next pop3server.Backend, opts Options) *Guard {
	opts = opts.withDefaults()
	g := &Guard{next: next, opts: opts, inflight: make(map[pairKey]*call)}
	rand.Read(g.key[:]) // never returns an error since Go 1.24
	g.refused, _ = lru.New[pairKey, time.Time](opts.MaxEntries)
	g.knownGood, _ = lru.New[pairKey, time.Time](opts.MaxEntries)
	g.buckets, _ = lru.New[string, *bucket](opts.MaxEntries)
	g.failedBy, _ = lru.New[netip.Addr, time.Time](opts.MaxEntries)
	return g
}

// bucket is one user's allowance of unverified upstream attempts.
type bucket struct {
	tokens    float64
	at        time.Time // when tokens was last brought up to date
	exhausted time.Time // when the attempts last ran out: the user is under attack
}

// call is an unverified login in flight, whose verdict identical
// attempts wait for (they then find it in the refused table, or try).
type call struct {
	done chan struct{}
}

// Login implements pop3server.Backend.
func (g *Guard) Login(ctx context.Context, conn pop3server.ConnInfo, username, password string) (pop3server.Mailbox, error) {
	// Pairs are exact (the upstream decides whether case matters); the
	// attack accounting is per user whatever the case.
	user := strings.ToLower(username)
	k := g.pair(username, password)
	for {
		g.mu.Lock()
		now := g.opts.Now()
		if at, ok := g.refused.Get(k); ok && now.Sub(at) < g.opts.NegativeTTL {
			g.localRefusals++
			g.failedLocked(conn, now)
			g.mu.Unlock()
			return nil, pop3server.ErrAuthFailed.Wrap(ErrRecentlyRefused)
		}
		known := false
		if at, ok := g.knownGood.Get(k); ok && now.Sub(at) < g.opts.KnownGoodTTL {
			known = true
		}
		if c, ok := g.inflight[k]; ok && !known {
			// The same unverified pair is being checked: wait for its
			// verdict rather than ask the upstream twice. (A pair known
			// to be right goes at once: several devices of one user.)
			g.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return nil, pop3server.ErrTemporary.Wrap(context.Cause(ctx))
			}
			continue // refused now, or try for ourselves
		}
		if !known && !g.takeLocked(user, now, clientOf(conn)) {
			g.localRefusals++
			g.failedLocked(conn, now)
			g.mu.Unlock()
			return nil, pop3server.ErrAuthFailed.Wrap(ErrUserThrottled)
		}
		var c *call
		if !known {
			c = &call{done: make(chan struct{})}
			g.inflight[k] = c
		}
		g.upstreamCalls++
		g.mu.Unlock()

		mbox, err := g.next.Login(ctx, conn, username, password)

		g.mu.Lock()
		now = g.opts.Now()
		switch {
		case err == nil:
			g.knownGood.Add(k, now)
			g.refused.Remove(k)
			if !known {
				g.giveBackLocked(user, now)
			}
		case isAuth(err):
			g.refused.Add(k, now)
			g.knownGood.Remove(k)
			g.failedLocked(conn, now)
		default:
			// Not the credentials' fault (upstream down): nothing learnt.
			if !known {
				g.giveBackLocked(user, now)
			}
		}
		if c != nil {
			delete(g.inflight, k)
			close(c.done)
		}
		g.mu.Unlock()
		return mbox, err
	}
}

// takeLocked spends one of user's unverified attempts, if any is left.
// While the user is under attack (the attempts ran out within
// NegativeTTL), a client the upstream refused within NegativeTTL gets none
// of the attempts that come back one per UserInterval; each such refusal
// keeps the attack current.
func (g *Guard) takeLocked(user string, now time.Time, client netip.Addr) bool {
	b := g.refillLocked(user, now)
	if b.tokens < 1 {
		b.exhausted = now
		return false
	}
	if now.Sub(b.exhausted) < g.opts.NegativeTTL && client.IsValid() {
		if at, ok := g.failedBy.Get(client); ok && now.Sub(at) < g.opts.NegativeTTL {
			b.exhausted = now
			return false
		}
	}
	b.tokens--
	if b.tokens < 1 {
		b.exhausted = now
	}
	return true
}

// failedLocked notes that conn's client was refused, by the upstream or
// here: an address that keeps guessing stays a failing one.
func (g *Guard) failedLocked(conn pop3server.ConnInfo, now time.Time) {
	if a := clientOf(conn); a.IsValid() {
		g.failedBy.Add(a, now)
	}
}

// clientOf is the client's address as failures are counted: IPv6 by /64,
// the smallest block a site gets, like pop3server's per-address limits.
func clientOf(conn pop3server.ConnInfo) netip.Addr {
	a := conn.RemoteAddr.Addr().Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

func (g *Guard) giveBackLocked(user string, now time.Time) {
	b := g.refillLocked(user, now)
	b.tokens = min(b.tokens+1, float64(g.opts.UserBurst))
}

func (g *Guard) refillLocked(user string, now time.Time) *bucket {
	b, ok := g.buckets.Get(user)
	if !ok {
		b = &bucket{tokens: float64(g.opts.UserBurst), at: now}
		g.buckets.Add(user, b)
		return b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(b.tokens+float64(d)/float64(g.opts.UserInterval), float64(g.opts.UserBurst))
	}
	b.at = now
	return b
}

// pair is the keyed hash of a user and password.
func (g *Guard) pair(user, password string) pairKey {
	m := hmac.New(sha256.New, g.key[:])
	m.Write([]byte(user))
	m.Write([]byte{0}) // user names carry no NUL (pop3server refuses it)
	m.Write([]byte(password))
	var k pairKey
	m.Sum(k[:0])
	return k
}

func isAuth(err error) bool {
	var e *pop3server.Error
	return errors.As(err, &e) && e.Code == pop3server.CodeAuth
}

// Stats reports how many logins went to the upstream and how many were
// refused locally.
func (g *Guard) Stats() (upstream, refusedLocally int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.upstreamCalls, g.localRefusals
}
