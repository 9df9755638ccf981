package upstream

import (
	"errors"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/pop3server"
)

// Errors the client sees that pop3server does not define.
var (
	// errConfig is a login that cannot succeed until the admin changes
	// something: the upstream refuses our way of logging in, or the
	// maildrop mailbox does not exist.
	errConfig = &pop3server.Error{Code: pop3server.CodeSysPerm, Text: "maildrop not available, contact your administrator"}
)

// loginError maps the upstream's answer to LOGIN or AUTHENTICATE. Only a
// refusal of the credentials becomes [AUTH]; RFC 5530 codes that say the
// server (not the password) is the problem do not, so a client is never told
// its password is wrong when the upstream is merely unwell.
func loginError(err error) *pop3server.Error {
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo {
		// BAD, a BYE, I/O, a timeout: nothing about the credentials.
		return pop3server.ErrTemporary.Wrap(err)
	}
	switch ie.Code {
	case imap.ResponseCodeUnavailable, imap.ResponseCodeServerBug, imap.ResponseCodeLimit,
		imap.ResponseCodeCorruption:
		return pop3server.ErrTemporary.Wrap(err)
	case imap.ResponseCodeInUse:
		return pop3server.ErrInUse.Wrap(err)
	case imap.ResponseCodeContactAdmin, imap.ResponseCodePrivacyRequired:
		return errConfig.Wrap(err)
	default:
		// AUTHENTICATIONFAILED, AUTHORIZATIONFAILED, EXPIRED, ALERT or
		// no code at all: the credentials were refused.
		return pop3server.ErrAuthFailed.Wrap(err)
	}
}

// selectError maps a failed SELECT: a missing mailbox needs the admin,
// anything else is worth retrying.
func selectError(err error) *pop3server.Error {
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
		switch ie.Code {
		case imap.ResponseCodeNonExistent, imap.ResponseCodeNoPerm, imap.ResponseCodeContactAdmin:
			return errConfig.Wrap(err)
		}
	}
	return pop3server.ErrTemporary.Wrap(err)
}

// isNo reports whether err is a tagged NO (the command failed but the
// connection is in a known state).
func isNo(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo
}

// hasCode reports whether err is a tagged NO or BAD with one of codes.
func hasCode(err error, codes ...imap.ResponseCode) bool {
	var ie *imap.Error
	if !errors.As(err, &ie) {
		return false
	}
	for _, c := range codes {
		if ie.Code == c {
			return true
		}
	}
	return false
}
