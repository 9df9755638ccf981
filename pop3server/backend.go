// Package pop3server implements the POP3 wire protocol (RFC 1939, RFC 2449
// CAPA, RFC 2595 STLS, RFC 3206 response codes, RFC 5034 SASL AUTH) and its
// per-connection state machine. It knows nothing of IMAP: a Backend turns a
// login into a Mailbox, and the Mailbox serves message bodies.
//
// The server owns numbering and deletion marks. A Mailbox is a snapshot taken
// at login; it is told what the session did only through Update, which is
// called only when the client sends QUIT in the TRANSACTION state.
package pop3server

import (
	"context"
	"io"
	"net/netip"
	"time"
)

// ConnInfo describes one client connection. RemoteAddr is the real client
// address (after a PROXY protocol header, when one was accepted).
type ConnInfo struct {
	// SessionID is unique per connection in this process, for logs.
	SessionID string
	// RemoteAddr is the client address; invalid if the listener is not IP.
	RemoteAddr netip.AddrPort
	// LocalAddr is the address the client connected to.
	LocalAddr netip.AddrPort
	// TLS reports whether the connection is encrypted (implicit TLS or STLS).
	TLS bool
}

// Backend authenticates users and opens their maildrop.
type Backend interface {
	// Login is called once per connection, after USER/PASS or AUTH succeeded
	// on the wire, with credentials the server has already checked for
	// forbidden bytes (NUL, CR, LF, other controls) and length. The backend
	// passes them through to its authority.
	//
	// On success the returned Mailbox is a snapshot of the maildrop; it is
	// used by this connection only and always Closed exactly once.
	//
	// Errors: an *Error with CodeAuth for bad credentials (the server answers
	// with a fixed text, whether or not the user exists), CodeSysTemp for a
	// temporary failure (unreachable or slow authority), CodeInUse when the
	// maildrop is locked. Any other error is logged and answered
	// "-ERR [SYS/TEMP]". ctx is cancelled when the login deadline passes or
	// the server shuts down.
	Login(ctx context.Context, conn ConnInfo, username, password string) (Mailbox, error)
}

// MessageInfo is what STAT, LIST and UIDL need for one message. It never
// changes during a session.
type MessageInfo struct {
	// Size is the number of octets Retrieve delivers (before dot-stuffing),
	// with CRLF line ends.
	Size int64
	// UIDL is the unique-id listing: 1 to 70 characters in 0x21..0x7E,
	// unique within the maildrop and stable across sessions.
	UIDL string
}

// Mailbox is one user's maildrop as of login. Methods are called from the
// connection's goroutine only, never concurrently.
type Mailbox interface {
	// Messages lists the maildrop: element i is message number i+1. The
	// server calls it once after login and never changes the slice.
	Messages() []MessageInfo

	// Retrieve returns message n (1-based) whole. It returns once the body
	// has started to arrive, so the server can answer "+OK" knowing that
	// the message exists. ErrNoSuchMessage means the message vanished
	// upstream during the session (another client expunged it).
	Retrieve(ctx context.Context, n int) (Body, error)

	// Top returns the header of message n, the blank line that ends it, and
	// at most lines lines of its body. It must not mark the message read.
	Top(ctx context.Context, n int, lines int) (Body, error)

	// Update is called only when the client sent QUIT in TRANSACTION state.
	// It applies what marks says (deleted messages, messages retrieved in
	// full) according to the backend's policy. An error means the update
	// was not (or not wholly) applied: the client is told
	// "-ERR [SYS/TEMP] some deleted messages not removed".
	Update(ctx context.Context, marks Marks) error

	// Close releases the maildrop. It is called exactly once, after Update
	// or without it, and must never apply anything.
	Close() error
}

// Marks is what a session did to its maildrop. Message numbers are 1-based
// and sorted ascending.
type Marks struct {
	// Deleted lists the messages marked by DELE and not unmarked by RSET.
	Deleted []int
	// Retrieved lists the messages whose RETR reached the client in full:
	// the terminating dot was written and flushed.
	Retrieved []int
}

// Body streams one message (or part of one, for TOP) from the backend.
type Body interface {
	io.Reader
	// Close releases the body. It may be called before EOF (the client went
	// away mid-transfer) and must then return promptly without blocking on
	// the rest of the message.
	Close() error
}

// Expirer is optionally implemented by a Mailbox to report the RFC 2449
// EXPIRE value that applies to its user ("NEVER" or a number of days). CAPA
// after login shows it instead of Options.Expire.
type Expirer interface {
	Expire() string
}

// Releaser is optionally implemented by a Mailbox that holds resources
// it can give back while its client is silent. The server calls Release on
// the session's goroutine, in TRANSACTION state, once the client has sent
// nothing for Options.ReleaseAfter; at most once per wait for a command.
// The Mailbox may then free what it holds (popbridge's upstream client and
// its buffers) and must resume by itself on its next method call; a
// Release that finds something outstanding simply does nothing.
type Releaser interface {
	Release()
}

// Observer receives events for metrics and logs. Every method must be cheap
// and safe for concurrent use. A nil Observer in Options is valid.
type Observer interface {
	// ConnectionOpened is called when a connection is accepted.
	ConnectionOpened(conn ConnInfo)
	// LoginAttempted is called after each USER/PASS or AUTH attempt that
	// reached the backend or was refused before it; err is nil on success.
	LoginAttempted(conn ConnInfo, username string, err error)
	// CommandDone is called after every command with its upper-case verb
	// (or "UNKNOWN") and whether it was answered "+OK".
	CommandDone(verb string, ok bool)
	// SessionClosed is called once per connection when it ends.
	SessionClosed(conn ConnInfo, stats SessionStats)
}

// SessionStats summarizes a connection for its end-of-session log line.
type SessionStats struct {
	Username   string
	LoggedIn   bool
	Start      time.Time
	Duration   time.Duration
	Top        int   // TOP commands answered +OK
	Retr       int   // RETR commands completed
	Deleted    int   // messages marked at the end
	BytesSent  int64 // octets written to the client
	Messages   int   // messages in the maildrop at login
	MaildropSz int64 // octets in the maildrop at login
	// Result is how the session ended: one of SessionResults.
	Result string
}

// SessionResults are the values SessionStats.Result takes (and so the
// result label of popbridge_sessions_ended_total), each set by the server
// in exactly one situation:
//
//	quit           the client sent QUIT (and any update succeeded)
//	update-failed  the client sent QUIT and the upstream update failed
//	disconnected   the client went away (closed, reset, a write failed)
//	timeout        an idle or pre-login timeout fired
//	shutdown       Shutdown ended the session (drain)
//	limit          a limit closed it: connections, bad commands, login
//	               failures, line length
//	evicted        a pre-login connection closed to make room for a new
//	               one (MaxPreLoginConns)
//	tls-error      the implicit-TLS handshake failed
//	error          a message transfer broke off, or an internal error
var SessionResults = []string{"quit", "update-failed", "disconnected", "timeout", "shutdown", "limit", "evicted", "tls-error", "error"}

// SessionLocker takes the per-user session lock of Options.LockSession.
// TryLock is called once per login, after the backend accepted the
// credentials, and must not wait for the lock: it returns ErrInUse when
// another session (in this process or, for a shared locker, in another
// replica) holds key, and any other error when the lock service itself is
// failing, which the client sees as "-ERR [SYS/TEMP]". release is called
// once when the session ends, however it ends.
type SessionLocker interface {
	TryLock(ctx context.Context, key string) (release func(), err error)
}
