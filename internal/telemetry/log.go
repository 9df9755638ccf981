// Package telemetry turns pop3server events into popbridge's log lines (and
// metrics): one line per session end, one per failed login in a fixed shape
// that fail2ban can match.
package telemetry

import (
	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/pop3server"
)

// LogObserver writes the session log lines. Field names and order are part
// of popbridge's interface (deploy/fail2ban matches them): do not reorder.
type LogObserver struct {
	Log zerolog.Logger
}

var _ pop3server.Observer = LogObserver{}

// ConnectionOpened logs at debug level only: one line per connection is
// the session-end line.
func (o LogObserver) ConnectionOpened(c pop3server.ConnInfo) {
	o.Log.Debug().Str("session", c.SessionID).Str("client_ip", c.RemoteAddr.Addr().String()).
		Bool("tls", c.TLS).Msg("connect")
}

// LoginAttempted logs every refused login with the client address, and
// successful ones at debug level.
//
// Only a refusal of the credentials is logged as event "login_failed" (the
// line deploy/fail2ban matches); a login that failed because the upstream
// is unreachable or the maildrop is locked is not the client's doing and
// gets another event name, so it can never get a client banned.
func (o LogObserver) LoginAttempted(c pop3server.ConnInfo, user string, err error) {
	var ev *zerolog.Event
	var event, reason string
	switch LoginResult(err) {
	case LoginOK:
		o.Log.Debug().Str("session", c.SessionID).Str("client_ip", c.RemoteAddr.Addr().String()).
			Str("user", user).Msg("login")
		return
	case LoginAuthFailed:
		// Why, in fixed words ("authentication failed", "mechanism not
		// offered", "recently failed", ...): never client input.
		ev, event, reason = o.Log.Warn(), "login_failed", pop3server.FailureReason(err)
	case LoginInUse:
		ev, event, reason = o.Log.Info(), "login_in_use", "maildrop in use"
	default:
		ev, event, reason = o.Log.Error(), "login_temp_failure", "temporary failure"
	}
	// client_ip right after event: fail2ban's filter relies on this order,
	// and nothing the client controls (user) comes before it.
	ev.Str("event", event).Str("client_ip", c.RemoteAddr.Addr().String()).
		Uint16("client_port", c.RemoteAddr.Port()).Str("session", c.SessionID).
		Str("user", user).Str("reason", reason).Bool("tls", c.TLS).Msg("login failed")
}

// CommandDone is for metrics only.
func (o LogObserver) CommandDone(string, bool) {}

// SessionClosed writes the one line per session, with Dovecot's counters.
func (o LogObserver) SessionClosed(c pop3server.ConnInfo, s pop3server.SessionStats) {
	o.Log.Info().Str("event", "session_end").Str("session", c.SessionID).
		Str("client_ip", c.RemoteAddr.Addr().String()).Uint16("client_port", c.RemoteAddr.Port()).
		Str("user", s.Username).Bool("logged_in", s.LoggedIn).Bool("tls", c.TLS).
		Dur("duration", s.Duration).Int("top", s.Top).Int("retr", s.Retr).Int("del", s.Deleted).
		Int("msgs", s.Messages).Int64("size", s.MaildropSz).Int64("bytes_sent", s.BytesSent).
		Str("result", s.Result).Msg("session end")
}

// Multi fans events out to several observers.
type Multi []pop3server.Observer

func (m Multi) ConnectionOpened(c pop3server.ConnInfo) {
	for _, o := range m {
		o.ConnectionOpened(c)
	}
}

func (m Multi) LoginAttempted(c pop3server.ConnInfo, user string, err error) {
	for _, o := range m {
		o.LoginAttempted(c, user, err)
	}
}

func (m Multi) CommandDone(verb string, ok bool) {
	for _, o := range m {
		o.CommandDone(verb, ok)
	}
}

func (m Multi) SessionClosed(c pop3server.ConnInfo, s pop3server.SessionStats) {
	for _, o := range m {
		o.SessionClosed(c, s)
	}
}
