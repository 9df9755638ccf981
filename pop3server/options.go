package pop3server

import (
	"crypto/tls"
	"time"

	"github.com/rs/zerolog"
)

// PlaintextAuth says where USER/PASS and AUTH PLAIN/LOGIN are allowed on a
// connection that is not encrypted.
type PlaintextAuth int

const (
	// PlaintextLocal allows cleartext logins from loopback, private
	// (RFC 1918, RFC 4193) and link-local addresses only.
	PlaintextLocal PlaintextAuth = iota
	// PlaintextAlways allows cleartext logins from anywhere.
	PlaintextAlways
	// PlaintextNever requires TLS for every login.
	PlaintextNever
)

// Workarounds are per-server output fixes for broken clients.
type Workarounds struct {
	// OutlookNoNULs replaces NUL octets in message bodies by 0x80.
	OutlookNoNULs bool
	// OENSEOH adds the blank line ending the header when a message lacks it.
	OENSEOH bool
}

// Options configures a Server. The zero value of every field means its
// documented default; a negative count or duration disables that limit
// (upstream.Options follows the same rule for its timeouts). No flag can
// set a negative value: disabling a limit is for tests and embedders.
type Options struct {
	// TLSConfig enables STLS on plain connections. Implicit-TLS listeners
	// are wrapped by the caller (tls.NewListener); the server recognizes
	// their *tls.Conn and never offers STLS on them.
	TLSConfig *tls.Config
	// PlaintextAuth decides whether USER and SASL are offered without TLS.
	PlaintextAuth PlaintextAuth
	// Implementation is the CAPA IMPLEMENTATION text. Default "popbridge".
	Implementation string
	// Expire is the CAPA EXPIRE value before login (and after it when the
	// Mailbox is not an Expirer). Default "NEVER".
	Expire string
	// Workarounds for broken clients.
	Workarounds Workarounds

	Limits

	// LoginTimeout bounds one Backend.Login call. Default 30 s.
	LoginTimeout time.Duration
	// LockSession allows one logged-in session per user at a time; a second
	// login gets "-ERR [IN-USE]".
	LockSession bool
	// Locker takes the LockSession locks. nil means a lock table in this
	// process; a Locker backed by a shared database makes the lock hold
	// across every replica (docs/operations.md, "Several replicas").
	Locker SessionLocker

	// Logger receives errors and panics; the session log lines come from
	// the Observer.
	Logger zerolog.Logger
	// Observer receives events for metrics and logs; may be nil.
	Observer Observer
}

// Limits are the Server's bounds on clients, embedded in Options; the
// configuration (internal/config) embeds them too, so each is declared
// once. Zero means the default, negative disables, as for all Options.
type Limits struct {
	// MaxLineLength bounds a command line, CRLF excluded. Default 1024.
	MaxLineLength int
	// PreLoginIdleTimeout bounds silence before login. Default 180 s, as
	// Dovecot: Thunderbird sends AUTH before it prompts for the password,
	// so a person typing it is silent that long. Idle unauthenticated
	// connections cost little since the oldest are evicted when the
	// server is full (MaxPreLoginConns).
	PreLoginIdleTimeout time.Duration
	// PreLoginTimeout bounds the whole AUTHORIZATION phase, TLS handshake
	// included. Default 180 s.
	PreLoginTimeout time.Duration
	// IdleTimeout is the autologout timer after login (RFC 1939 says at
	// least 10 minutes). Default 600 s.
	IdleTimeout time.Duration
	// ReleaseAfter is how long a logged-in client may be silent before
	// the Mailbox, if it is a Releaser, is asked to give back what it
	// holds while idle (docs/design.md, "Idle sessions"). Default 250 ms:
	// popbridge's release and resume cost no upstream round trip, only a
	// few microseconds of CPU and about 10 KiB of allocation, so even a
	// client on a slow link that pauses between commands loses nothing
	// measurable, while thousands of idle sessions each keep ~14 KiB less.
	ReleaseAfter time.Duration
	// WriteTimeout bounds a write that makes no progress (a client that
	// stopped reading). Default 120 s.
	WriteTimeout time.Duration
	// MaxBadCommandsPreLogin and MaxBadCommandsPostLogin close the
	// connection after that many unknown, malformed or out-of-state
	// commands. Defaults 3 and 20.
	MaxBadCommandsPreLogin  int
	MaxBadCommandsPostLogin int
	// MaxLoginFailures closes the connection after that many refused
	// logins. Default 3.
	MaxLoginFailures int
	// AuthFailDelay delays every refused login; repeated failures from one
	// client address double it up to AuthPenaltyMax. Defaults 2 s and 15 s.
	AuthFailDelay  time.Duration
	AuthPenaltyMax time.Duration
	// MaxConnsPerIP caps concurrent unauthenticated connections per
	// client address (IPv6 per /64). Logged-in sessions do not count:
	// behind a NAT, many users share an address. Default 10.
	MaxConnsPerIP int
	// MaxUserIPConns caps concurrent logged-in sessions per user and
	// client address, like Dovecot's mail_max_userip_connections; the next
	// login gets "-ERR [IN-USE]". Default 10.
	MaxUserIPConns int
	// MaxSessions caps concurrent connections in all. Default 5000.
	MaxSessions int
	// MaxPreLoginConns caps concurrent unauthenticated connections. When
	// it or MaxSessions is reached, the oldest unauthenticated connection
	// (not one whose login is being checked) is closed to admit the new
	// one; logged-in sessions are never closed for that. Default 1000.
	MaxPreLoginConns int
}

// DefaultReleaseAfter is Options.ReleaseAfter's default.
const DefaultReleaseAfter = 250 * time.Millisecond

// DefaultPreLoginIdleTimeout is Options.PreLoginIdleTimeout's default.
const DefaultPreLoginIdleTimeout = 180 * time.Second

func (o Options) withDefaults() Options {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Implementation == "" {
		o.Implementation = "popbridge"
	}
	if o.Expire == "" {
		o.Expire = "NEVER"
	}
	defInt(&o.MaxLineLength, 1024)
	def(&o.PreLoginIdleTimeout, DefaultPreLoginIdleTimeout)
	def(&o.PreLoginTimeout, 180*time.Second)
	def(&o.IdleTimeout, 600*time.Second)
	def(&o.ReleaseAfter, DefaultReleaseAfter)
	def(&o.WriteTimeout, 120*time.Second)
	defInt(&o.MaxBadCommandsPreLogin, 3)
	defInt(&o.MaxBadCommandsPostLogin, 20)
	defInt(&o.MaxLoginFailures, 3)
	def(&o.AuthFailDelay, 2*time.Second)
	def(&o.AuthPenaltyMax, 15*time.Second)
	defInt(&o.MaxConnsPerIP, 10)
	defInt(&o.MaxSessions, 5000)
	defInt(&o.MaxUserIPConns, 10)
	defInt(&o.MaxPreLoginConns, 1000)
	def(&o.LoginTimeout, 30*time.Second)
	if o.MaxLineLength < 64 {
		o.MaxLineLength = 64 // room for the longest command we accept
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	return o
}

type nopObserver struct{}

func (nopObserver) ConnectionOpened(ConnInfo)              {}
func (nopObserver) LoginAttempted(ConnInfo, string, error) {}
func (nopObserver) CommandDone(string, bool)               {}
func (nopObserver) SessionClosed(ConnInfo, SessionStats)   {}
