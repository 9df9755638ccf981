package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"

	"github.com/popbridge/popbridge/pop3server"
)

// Authenticator decides, per POP3 login, whether the upstream login is
// pass-through (the POP3 credentials are sent upstream, the default) or
// OAuth2 (package oauth: the POP3 password is a device password checked
// locally, and the upstream login is SASL XOAUTH2 or OAUTHBEARER with a
// token).
type Authenticator interface {
	// Authorize returns nil, nil for a pass-through user. Otherwise it
	// checks the POP3 credentials and returns where to get tokens; its
	// errors are *pop3server.Error values for the client ([AUTH] for a
	// wrong device password, [SYS/TEMP], [SYS/PERM]).
	Authorize(ctx context.Context, username, password string) (TokenSource, error)
}

// AppAuthorizer is optionally implemented by an Authenticator that can
// log in to a mailbox without its user's credentials: OAuth2 application
// mode (oauth2-app). Immediate restores use it. It returns nil, nil for a
// user who is not in application mode.
type AppAuthorizer interface {
	AuthorizeApp(ctx context.Context, username string) (TokenSource, error)
}

// DeviceNamer is optionally implemented by a TokenSource whose login
// proved a named device (an OAuth2 device password): that device is the
// session's device for device views (docs/policy.md), whatever the login
// name says after the device separator.
type DeviceNamer interface {
	Device() string
}

// TokenSource hands out bearer tokens for one login.
type TokenSource interface {
	// Token returns the SASL identity and a bearer token. refused is nil
	// on the first call; after the upstream refused the previous token it
	// says so, and Token returns another one or a *pop3server.Error that
	// ends the login (the source decides when to give up).
	Token(ctx context.Context, refused *Refusal) (Bearer, error)
}

// Bearer is what the SASL OAuth mechanisms send.
type Bearer struct {
	User  string // the mailbox (authorization identity)
	Token string
}

// Refusal is an upstream's refusal of a bearer token.
type Refusal struct {
	Token string
	// Status is the refusal's JSON "status" (e.g. "401" or
	// "invalid_token"), or the IMAP response code; for logs.
	Status string
}

// maxTokenAttempts bounds the logins one POP3 login may cost whatever the
// TokenSource does.
const maxTokenAttempts = 4

// loginOAuth is Login for a user with a TokenSource: each refused token
// costs a new connection (an XOAUTH2 failure leaves the command open; see
// xoauth2Client) and a new token.
func (b *Backend) loginOAuth(ctx context.Context, cfg dialConfig, conn pop3server.ConnInfo, username string, ts TokenSource, mk func(*link) *maildrop) (*maildrop, error) {
	var refused *Refusal
	for range maxTokenAttempts {
		bearer, err := ts.Token(ctx, refused)
		if err != nil {
			return nil, err
		}
		m, err := b.openMaildrop(ctx, cfg, conn, username, "", &bearer, mk)
		if err == nil {
			return m, nil
		}
		var r *refusedError
		if !errors.As(err, &r) {
			return nil, err
		}
		refused = &Refusal{Token: bearer.Token, Status: r.status}
	}
	return nil, pop3server.ErrTemporary.Wrap(errors.New("upstream refused every token"))
}

// refusedError is an upstream refusal of a bearer token (as opposed to a
// temporary failure, such as Dovecot's NO [UNAVAILABLE] when it cannot
// reach its introspection endpoint).
type refusedError struct {
	status string
	err    error
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("upstream refused the token (%s): %v", e.status, e.err)
}
func (e *refusedError) Unwrap() error { return e.err }

// loginBearer authenticates with OAUTHBEARER when the server offers it
// (RFC 7628, the standard), else XOAUTH2 (Microsoft 365 offers only that).
func (m *maildrop) loginBearer() error {
	var c saslBearer
	switch {
	case m.l.caps.Has(imap.Cap("AUTH=OAUTHBEARER")):
		c = &oauthBearerClient{user: m.bearer.User, token: m.bearer.Token}
	case m.l.caps.Has(imap.Cap("AUTH=XOAUTH2")):
		c = &xoauth2Client{user: m.bearer.User, token: m.bearer.Token}
	default:
		return errConfig.Wrap(errors.New("upstream offers neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2"))
	}
	err := m.imap().Authenticate(c)
	if err == nil {
		return nil
	}
	status := c.status()
	var ie *imap.Error
	if errors.As(err, &ie) {
		le := loginError(fmt.Errorf("authenticate: %w", err))
		if le.Code != pop3server.CodeAuth {
			return le // [UNAVAILABLE] and friends: temporary
		}
		if status == "" {
			status = string(ie.Code)
		}
		return &refusedError{status: status, err: err}
	}
	if status != "" {
		// Our XOAUTH2 client stopped at the error challenge.
		return &refusedError{status: status, err: err}
	}
	return pop3server.ErrTemporary.Wrap(fmt.Errorf("authenticate: %w", err))
}

// saslBearer is a sasl.Client that remembers the status of an error
// challenge.
type saslBearer interface {
	sasl.Client
	status() string
}

// The two clients below are ours because go-sasl has none that works
// here: it dropped XOAUTH2 in 2020 and will not take it back, and its
// OAUTHBEARER client answers the error challenge with an error instead of
// RFC 7628's %x01, which leaves go-imap's AUTHENTICATE open.

// oauthBearerClient is RFC 7628 OAUTHBEARER.
type oauthBearerClient struct {
	user, token string
	failed      string
}

func (c *oauthBearerClient) Start() (string, []byte, error) {
	// gs2-header "n,a=USER," then kvpairs; host and port are optional.
	ir := "n,a=" + gs2Escape(c.user) + ",\x01auth=Bearer " + c.token + "\x01\x01"
	return "OAUTHBEARER", []byte(ir), nil
}

// Next answers the only challenge there is, the JSON error, with a single
// %x01 (RFC 7628 3.2.3); the server then fails the command with NO.
func (c *oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	c.failed = challengeStatus(challenge)
	return []byte{0x01}, nil
}

func (c *oauthBearerClient) status() string { return c.failed }

// xoauth2Client is Google's and Microsoft's XOAUTH2.
type xoauth2Client struct {
	user, token string
	failed      string
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

// Next gets the JSON error challenge. XOAUTH2 wants an empty response
// next, but go-imap writes an empty response as "=", which Dovecot answers
// with BAD; so we stop here with an error, and the caller closes the
// connection (the command is left open).
func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	c.failed = challengeStatus(challenge)
	return nil, fmt.Errorf("XOAUTH2 refused (%s)", c.failed)
}

func (c *xoauth2Client) status() string { return c.failed }

// challengeStatus extracts "status" from an error challenge; never the
// whole challenge, which is the server's text.
func challengeStatus(challenge []byte) string {
	var v struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(challenge, &v) != nil || v.Status == "" {
		return "error challenge"
	}
	if len(v.Status) > 40 {
		v.Status = v.Status[:40]
	}
	return v.Status
}

// gs2Escape escapes a SASL name for the GS2 header (RFC 5801 4).
func gs2Escape(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}
