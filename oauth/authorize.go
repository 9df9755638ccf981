package oauth

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

// What the POP3 client sees (docs/oauth2.md, "What the client sees"). The
// texts are fixed: never the provider's or the upstream's words.
var (
	// ErrReauthorize: the grant is revoked or expired, or fresh tokens
	// are refused; the mailbox is marked for re-enrollment.
	ErrReauthorize = &pop3server.Error{Code: pop3server.CodeSysPerm, Text: "mailbox authorization expired, ask your administrator"}
	// ErrMisconfigured: the provider refused popbridge's client, or the
	// grant cannot be opened with this secret key.
	ErrMisconfigured = &pop3server.Error{Code: pop3server.CodeSysPerm, Text: "mailbox authorization misconfigured, ask your administrator"}
)

// Authenticator implements upstream.Authenticator: users whose resolved
// auth is oauth2-user or oauth2-app log in to popbridge with a device
// password and upstream with a token.
type Authenticator struct {
	m        *Manager
	v        *Verifier
	resolver *policy.Resolver
	log      zerolog.Logger
}

var _ upstream.Authenticator = (*Authenticator)(nil)

// NewAuthenticator returns the Authenticator for resolver's auth: and
// provider: settings.
func NewAuthenticator(m *Manager, v *Verifier, resolver *policy.Resolver) *Authenticator {
	return &Authenticator{m: m, v: v, resolver: resolver, log: m.o.Logger}
}

// Authorize checks the device password of an OAuth2 user. Nothing about
// the grant is read or written before the password has matched, so a
// wrong password can never disturb the tokens.
func (a *Authenticator) Authorize(ctx context.Context, username, password string) (upstream.TokenSource, error) {
	s := a.resolver.Resolve(username)
	if s.Auth == "" || s.Auth == ModePassthrough {
		return nil, nil
	}
	mailbox := policy.NormalizeName(username)
	rec, err := a.m.o.Store.GetMailbox(ctx, mailbox)
	if errors.Is(err, ErrNotFound) {
		a.log.Info().Str("user", mailbox).Str("auth", s.Auth).Msg("login refused: mailbox not enrolled or not allow-listed")
		return nil, pop3server.ErrAuthFailed.Wrap(errors.New("mailbox not enrolled"))
	}
	if err != nil {
		return nil, pop3server.ErrTemporary.Wrap(fmt.Errorf("store: %w", err))
	}
	creds, err := a.m.o.Store.DeviceCredentials(ctx, mailbox)
	if err != nil {
		return nil, pop3server.ErrTemporary.Wrap(fmt.Errorf("store: %w", err))
	}
	device, err := a.v.Check(ctx, mailbox, password, creds)
	if errors.Is(err, errNoDevice) {
		return nil, pop3server.ErrAuthFailed.Wrap(err)
	}
	if err != nil {
		return nil, pop3server.ErrTemporary.Wrap(err)
	}
	// The device is who it says it is: from here on, never [AUTH].
	if rec.Mode != s.Auth {
		a.log.Error().Str("user", mailbox).Str("enrolled", rec.Mode).Str("configured", s.Auth).
			Msg("mailbox enrolled for another auth mode than the config file gives it; enroll it again")
		return nil, ErrMisconfigured.Wrap(fmt.Errorf("enrolled as %s, configured as %s", rec.Mode, s.Auth))
	}
	if rec.NeedsReenroll {
		return nil, ErrReauthorize.Wrap(fmt.Errorf("marked for re-enrollment: %s", rec.LastError))
	}
	provider := s.Provider
	if rec.Mode == ModeUser {
		provider = rec.Provider // the grant belongs to the provider that issued it
	}
	if a.m.o.Providers[provider] == nil {
		return nil, ErrMisconfigured.Wrap(fmt.Errorf("provider %q not in the config file", provider))
	}
	return &tokenSource{a: a, mailbox: mailbox, device: device, mode: rec.Mode, provider: provider}, nil
}

// AuthorizeApp returns the application-mode token source of username's
// mailbox, without a device password: for popbridge restore, which acts
// for the admin (upstream.AppAuthorizer). A user not in oauth2-app mode
// gives nil, nil; a mailbox not allow-listed an error.
func (a *Authenticator) AuthorizeApp(ctx context.Context, username string) (upstream.TokenSource, error) {
	s := a.resolver.Resolve(username)
	if s.Auth != ModeApp {
		return nil, nil
	}
	mailbox := policy.NormalizeName(username)
	rec, err := a.m.o.Store.GetMailbox(ctx, mailbox)
	if err != nil {
		return nil, fmt.Errorf("mailbox %s: %w", mailbox, err)
	}
	if rec.Mode != ModeApp {
		return nil, fmt.Errorf("mailbox %s is enrolled as %s, configured as %s", mailbox, rec.Mode, s.Auth)
	}
	if a.m.o.Providers[s.Provider] == nil {
		return nil, fmt.Errorf("provider %q not in the config file", s.Provider)
	}
	return &tokenSource{a: a, mailbox: mailbox, mode: ModeApp, provider: s.Provider}, nil
}

// tokenSource is one login's upstream.TokenSource.
type tokenSource struct {
	a               *Authenticator
	mailbox, device string
	mode, provider  string
	lastFresh       bool
	freshRefusals   int
}

// Device is the device whose password this login proved: the session's
// device for device views (upstream.DeviceNamer).
func (t *tokenSource) Device() string { return t.device }

func (t *tokenSource) Token(ctx context.Context, refused *upstream.Refusal) (upstream.Bearer, error) {
	stale := ""
	if refused != nil {
		if t.lastFresh {
			t.freshRefusals++
		}
		if t.freshRefusals >= 2 {
			t.a.m.markReenroll(ctx, t.mailbox, "upstream refused fresh tokens twice ("+refused.Status+")")
			return upstream.Bearer{}, ErrReauthorize.Wrap(errors.New("upstream refused fresh tokens twice"))
		}
		t.a.log.Warn().Str("user", t.mailbox).Str("device", t.device).Str("status", refused.Status).
			Msg("upstream refused the access token; getting a new one")
		stale = refused.Token
	}
	var (
		tok   string
		fresh bool
		err   error
	)
	if t.mode == ModeApp {
		tok, fresh, err = t.a.m.appToken(ctx, t.provider, t.mailbox, stale)
	} else {
		tok, fresh, err = t.a.m.AccessToken(ctx, t.mailbox, stale)
	}
	if err != nil {
		return upstream.Bearer{}, clientError(err)
	}
	t.lastFresh = fresh
	return upstream.Bearer{User: t.mailbox, Token: tok}, nil
}

// clientError maps the Manager's errors to what the POP3 client sees.
func clientError(err error) error {
	switch {
	case errors.Is(err, errReenroll):
		return ErrReauthorize.Wrap(err)
	case errors.Is(err, errMisconfigured):
		return ErrMisconfigured.Wrap(err)
	default:
		return pop3server.ErrTemporary.Wrap(err)
	}
}

// appToken returns the application token for mailbox (oauth2-app): the
// provider's client-credentials token, one for all its mailboxes
// (Microsoft 365), or with a Google service account a token per mailbox
// (domain-wide delegation). It is fetched again when it nears expiry or
// when stale, the token the upstream refused, is still the cached one.
// It is kept in memory only: it costs one request to get again.
func (m *Manager) appToken(ctx context.Context, provider, mailbox, stale string) (string, bool, error) {
	p := m.o.Providers[provider]
	key := provider
	if p.serviceAccount != nil {
		key += "\x00" + mailbox
	}
	// One request per token however many logins need it; other
	// providers and mailboxes do not wait for it.
	unlock := m.lockFlight("app\x00" + key)
	defer unlock()
	m.appMu.Lock()
	t := m.appTokens[key]
	m.appMu.Unlock()
	if t != nil && t.AccessToken != stale && m.o.Now().Add(m.o.RefreshMargin).Before(t.Expiry) {
		return t.AccessToken, false, nil
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, m.o.HTTPClient)
	var err error
	if p.serviceAccount != nil {
		t, err = p.serviceAccount.delegatedToken(hctx, mailbox, p.AppScopes)
	} else {
		cc := clientcredentials.Config{ClientID: p.ClientID, ClientSecret: p.clientSecret, TokenURL: p.TokenURL, Scopes: p.AppScopes, AuthStyle: authStyle}
		t, err = cc.Token(hctx)
	}
	if err != nil {
		err = classify(err)
		if errors.Is(err, errReenroll) {
			// No grant to re-enroll in app mode: the app itself was
			// refused (for a service account: no domain-wide delegation
			// for this scope, or an unknown user).
			err = fmt.Errorf("%w: %w", errMisconfigured, err)
		}
		m.o.Metrics.refreshed(resultOf(err))
		m.o.Logger.Warn().Str("provider", p.Name).Str("mailbox", mailbox).Err(err).Msg("app token request failed")
		return "", false, err
	}
	t.Expiry = m.expiry(t)
	m.appMu.Lock()
	m.appTokens[key] = t
	m.appMu.Unlock()
	m.o.Metrics.refreshed("ok")
	m.o.Logger.Info().Str("provider", p.Name).Time("expiry", t.Expiry).Msg("app token fetched")
	return t.AccessToken, true, nil
}
