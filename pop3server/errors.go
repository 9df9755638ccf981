package pop3server

import (
	"errors"
	"fmt"
)

// Code is an RFC 2449 extended response code, written in brackets after
// "-ERR".
type Code string

// Response codes (RFC 2449 IN-USE, RFC 3206 AUTH and SYS/*).
const (
	CodeNone    Code = ""
	CodeAuth    Code = "AUTH"     // credentials refused; retrying with the same ones will fail
	CodeSysTemp Code = "SYS/TEMP" // temporary system failure; retry later
	CodeSysPerm Code = "SYS/PERM" // permanent system failure; needs the admin
	CodeInUse   Code = "IN-USE"   // the maildrop is locked by another session
)

// Error is an error the client may see. Text is sent after "-ERR [Code]"
// and must never carry upstream text or secrets; Err is the cause, kept for
// the log only.
type Error struct {
	Code Code
	Text string
	Err  error
}

func (e *Error) Error() string {
	s := e.Text
	if e.Code != CodeNone {
		s = "[" + string(e.Code) + "] " + s
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches errors by code and text, so errors.Is(err, ErrNoSuchMessage)
// holds for a wrapped copy carrying a cause.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Text == e.Text
}

// Wrap returns a copy of e carrying cause for the log.
func (e *Error) Wrap(cause error) *Error {
	return &Error{Code: e.Code, Text: e.Text, Err: cause}
}

// Errors backends return; the server also uses them itself.
var (
	// ErrAuthFailed answers every refused login, whether the user exists or not.
	ErrAuthFailed = &Error{Code: CodeAuth, Text: "authentication failed"}
	// ErrTemporary is a temporary failure, such as an unreachable upstream.
	ErrTemporary = &Error{Code: CodeSysTemp, Text: "temporary failure, try again later"}
	// ErrInUse answers a login while another session holds the maildrop.
	ErrInUse = &Error{Code: CodeInUse, Text: "maildrop already in use"}
	// ErrNoSuchMessage answers a command on a message that does not exist
	// (or vanished upstream during the session).
	ErrNoSuchMessage = &Error{Text: "no such message"}
	// ErrUserIPLimit answers a login beyond Options.MaxUserIPConns sessions
	// of one user from one client address (Dovecot's words).
	ErrUserIPLimit = &Error{Code: CodeInUse, Text: "Maximum number of connections from user+IP exceeded"}
	// ErrUpdateFailed answers a QUIT whose update was not wholly applied.
	ErrUpdateFailed = &Error{Code: CodeSysTemp, Text: "some deleted messages not removed"}
)

// clientError turns any backend error into the *Error the client sees. An
// error that is not an *Error becomes ErrTemporary, keeping the cause.
func clientError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrTemporary.Wrap(err)
}

// responseText is the "-ERR" line's text for e, without the CRLF.
func (e *Error) responseText() string {
	if e.Code == CodeNone {
		return e.Text
	}
	return fmt.Sprintf("[%s] %s", e.Code, e.Text)
}

// A cause of a refused login may say why in a few fixed words for the
// failed-login log line ("reason"): any error in the chain with a
// LoginFailureReason method. Backends may add their own (a throttle).
type reasonError string

func (e reasonError) Error() string              { return string(e) }
func (e reasonError) LoginFailureReason() string { return string(e) }

// Reasons the server itself refuses logins for, before any backend call.
var (
	// ErrMechanismNotOffered: APOP or a SASL mechanism other than PLAIN
	// and LOGIN; the bridge never holds the secret those need.
	ErrMechanismNotOffered error = reasonError("mechanism not offered")
	errBadCredentialBytes  error = reasonError("invalid credentials")
	errAuthzid             error = reasonError("authorization identity differs from the user")
)

// ReasonAuthFailed is the reason of a login the backend refused.
const ReasonAuthFailed = "authentication failed"

// FailureReason is the short, fixed text saying why a login failed, for
// logs: the first LoginFailureReason in err's chain, else ReasonAuthFailed.
// It never contains anything the client sent.
func FailureReason(err error) string {
	var r interface{ LoginFailureReason() string }
	if errors.As(err, &r) {
		return r.LoginFailureReason()
	}
	return ReasonAuthFailed
}
