package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
)

// Grant is what is sealed in a Mailbox row: the delegated tokens.
type Grant struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Expiry       time.Time `json:"expiry"`
}

// Defaults for ManagerOptions.
const (
	// DefaultRefreshMargin: an access token with less than this left is
	// refreshed before use, so that it does not expire during the login.
	DefaultRefreshMargin = 5 * time.Minute
	// DefaultTokenTimeout bounds one token request.
	DefaultTokenTimeout = 30 * time.Second
	// lockPoll is how often a process waiting for another replica's
	// refresh looks at the store again.
	lockPoll = 100 * time.Millisecond
)

// Reasons for errTemporary, errReenroll and errMisconfigured; they reach
// the log only.
var (
	// errReenroll: the grant is revoked or expired, or fresh tokens are
	// refused; the admin must enroll the mailbox again.
	errReenroll = errors.New("mailbox needs enrolling again")
	// errMisconfigured: the provider refused the client itself
	// (invalid_client, unauthorized_client, invalid_scope...).
	errMisconfigured = errors.New("the identity provider refused the client configuration")
	// errTemporary: the provider or the store is failing for now.
	errTemporary = errors.New("temporary failure")
)

// ManagerOptions configures NewManager.
type ManagerOptions struct {
	Store     Store
	Key       *ServerKey
	Providers map[string]*Provider // loaded (Provider.Load)
	// HTTPClient makes token requests; nil means one with TokenTimeout.
	HTTPClient *http.Client
	// Now is the clock (tests use a fake one); nil means time.Now.
	Now           func() time.Time
	RefreshMargin time.Duration // default DefaultRefreshMargin
	Logger        zerolog.Logger
	Metrics       *Metrics // nil: none
}

// Manager hands out access tokens for enrolled mailboxes, refreshing
// them ahead of expiry. A refresh is single-flight per mailbox: within
// the process by a mutex per mailbox, across processes sharing a store by
// the store's lock, and every write is a version compare-and-swap, so a
// loser re-reads what the winner stored instead of spending the refresh
// token again (providers with reuse detection would revoke the grant).
type Manager struct {
	o ManagerOptions

	mu      sync.Mutex
	flights map[string]*flight

	appMu     sync.Mutex
	appTokens map[string]*oauth2.Token // provider (and mailbox, for a service account) -> app token
}

type flight struct {
	mu   sync.Mutex
	refs int
}

// NewManager returns a Manager.
func NewManager(o ManagerOptions) *Manager {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RefreshMargin <= 0 {
		o.RefreshMargin = DefaultRefreshMargin
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: DefaultTokenTimeout}
	}
	return &Manager{o: o, flights: map[string]*flight{}, appTokens: map[string]*oauth2.Token{}}
}

// Provider returns the named provider, or nil.
func (m *Manager) Provider(name string) *Provider { return m.o.Providers[name] }

// lockFlight serializes the refreshes of one token in this process: a
// mailbox's grant, or an app token.
func (m *Manager) lockFlight(mailbox string) func() {
	m.mu.Lock()
	f := m.flights[mailbox]
	if f == nil {
		f = &flight{}
		m.flights[mailbox] = f
	}
	f.refs++
	m.mu.Unlock()
	f.mu.Lock()
	return func() {
		f.mu.Unlock()
		m.mu.Lock()
		if f.refs--; f.refs == 0 {
			delete(m.flights, mailbox)
		}
		m.mu.Unlock()
	}
}

// load reads and opens a mailbox's grant.
func (m *Manager) load(ctx context.Context, mailbox string) (Mailbox, Grant, error) {
	rec, err := m.o.Store.GetMailbox(ctx, mailbox)
	if err != nil {
		return rec, Grant{}, fmt.Errorf("%w: reading mailbox %s: %w", errTemporary, mailbox, err)
	}
	if rec.NeedsReenroll {
		return rec, Grant{}, fmt.Errorf("%w: marked (%s)", errReenroll, rec.LastError)
	}
	var g Grant
	pt, err := m.o.Key.Open(rec.Mailbox, rec.SealedGrant)
	if err == nil {
		err = json.Unmarshal(pt, &g)
	}
	if err != nil {
		// Another key file, or a damaged row: the admin must fix it, and
		// retrying will not help.
		return rec, Grant{}, fmt.Errorf("%w: %w", errMisconfigured, ErrUnseal)
	}
	return rec, g, nil
}

// AccessExpiry is when mailbox's stored access token expires, for
// `popbridge oauth devices`; it contacts nobody.
func (m *Manager) AccessExpiry(ctx context.Context, mailbox string) (time.Time, error) {
	_, g, err := m.load(ctx, mailbox)
	return g.Expiry, err
}

// usable reports whether g's access token has more than margin left.
func (m *Manager) usable(g Grant, margin time.Duration) bool {
	return g.AccessToken != "" && m.o.Now().Add(margin).Before(g.Expiry)
}

// AccessToken returns a usable access token for mailbox. stale, when not
// empty, is a token the upstream just refused: a different usable one is
// returned if another login already replaced it, else the grant is
// refreshed. fresh reports whether the token was obtained by a refresh
// during this call.
func (m *Manager) AccessToken(ctx context.Context, mailbox, stale string) (token string, fresh bool, err error) {
	_, g, err := m.load(ctx, mailbox)
	if err != nil {
		return "", false, err
	}
	if stale == "" && m.usable(g, m.o.RefreshMargin) {
		return g.AccessToken, false, nil
	}
	if stale != "" && g.AccessToken != stale && m.usable(g, 0) {
		return g.AccessToken, false, nil
	}
	if stale == "" {
		stale = g.AccessToken
	}
	return m.refresh(ctx, mailbox, stale)
}

// refresh replaces the access token stale, once per mailbox however many
// logins ask at the same time, in this process or in others.
func (m *Manager) refresh(ctx context.Context, mailbox, stale string) (string, bool, error) {
	unlock := m.lockFlight(mailbox)
	defer unlock()
	for {
		_, g, err := m.load(ctx, mailbox)
		if err != nil {
			return "", false, err
		}
		if g.AccessToken != stale && m.usable(g, 0) {
			return g.AccessToken, false, nil // refreshed by someone else meanwhile
		}
		release, err := m.o.Store.Lock(ctx, "oauth-refresh:"+mailbox)
		if errors.Is(err, ErrLocked) {
			// Another replica is refreshing: wait for its result.
			t := time.NewTimer(lockPoll)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
				return "", false, fmt.Errorf("%w: waiting for another replica's refresh: %w", errTemporary, context.Cause(ctx))
			}
		}
		if err != nil {
			return "", false, fmt.Errorf("%w: store lock: %w", errTemporary, err)
		}
		tok, fresh, err := m.refreshLocked(ctx, mailbox, stale)
		release()
		if errors.Is(err, ErrConflict) {
			continue // the row moved under us: read it again
		}
		return tok, fresh, err
	}
}

// refreshLocked runs with the mailbox's store lock held.
func (m *Manager) refreshLocked(ctx context.Context, mailbox, stale string) (string, bool, error) {
	// Read again under the lock: the previous holder may have just stored
	// a new token.
	rec, g, err := m.load(ctx, mailbox)
	if err != nil {
		return "", false, err
	}
	if g.AccessToken != stale && m.usable(g, 0) {
		return g.AccessToken, false, nil
	}
	p := m.o.Providers[rec.Provider]
	if p == nil {
		return "", false, fmt.Errorf("%w: provider %q of mailbox %s is not in the config file", errMisconfigured, rec.Provider, rec.Mailbox)
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, m.o.HTTPClient)
	// An access token that is already expired makes x/oauth2 refresh.
	t, err := p.config("").TokenSource(hctx, &oauth2.Token{RefreshToken: g.RefreshToken}).Token()
	if err != nil {
		err = classify(err)
		m.o.Metrics.refreshed(resultOf(err))
		if errors.Is(err, errReenroll) {
			m.markReenroll(ctx, rec.Mailbox, oauthCode(err))
		}
		m.o.Logger.Warn().Str("mailbox", rec.Mailbox).Str("provider", p.Name).Err(err).Msg("token refresh failed")
		return "", false, err
	}
	ng := Grant{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, Expiry: m.expiry(t)}
	if ng.RefreshToken == "" {
		ng.RefreshToken = g.RefreshToken // not rotated
	}
	// The rotated refresh token is stored before the new access token is
	// used: if the write fails, the login fails, and the old refresh token
	// (which providers keep valid for a while) is still what we have.
	if err := m.storeGrant(ctx, rec, ng); err != nil {
		m.o.Metrics.refreshed("store_error")
		return "", false, err
	}
	m.o.Metrics.refreshed("ok")
	m.o.Logger.Info().Str("mailbox", rec.Mailbox).Str("provider", p.Name).Time("expiry", ng.Expiry).
		Bool("rotated", ng.RefreshToken != g.RefreshToken).Msg("access token refreshed")
	return ng.AccessToken, true, nil
}

// expiry is when t expires by our clock.
func (m *Manager) expiry(t *oauth2.Token) time.Time {
	if t.ExpiresIn > 0 {
		return m.o.Now().Add(time.Duration(t.ExpiresIn) * time.Second)
	}
	if !t.Expiry.IsZero() {
		return t.Expiry
	}
	return m.o.Now().Add(time.Hour) // no expiry given: assume the common hour
}

// storeGrant seals g into rec and writes it with a version check.
func (m *Manager) storeGrant(ctx context.Context, rec Mailbox, g Grant) error {
	pt, err := json.Marshal(g)
	if err != nil {
		return err
	}
	sealed, err := m.o.Key.Seal(rec.Mailbox, pt)
	if err != nil {
		return err
	}
	rec.SealedGrant = sealed
	rec.NeedsReenroll = false
	rec.LastError = ""
	rec.UpdatedAt = m.o.Now().UTC()
	if _, err := m.o.Store.PutMailbox(ctx, rec); err != nil {
		if errors.Is(err, ErrConflict) {
			return err
		}
		return fmt.Errorf("%w: storing the refreshed grant: %w", errTemporary, err)
	}
	return nil
}

// markReenroll flags mailbox so that logins stop trying (and the admin
// sees it in `popbridge oauth devices` and the metric).
func (m *Manager) markReenroll(ctx context.Context, mailbox, reason string) {
	for range 5 {
		rec, err := m.o.Store.GetMailbox(ctx, mailbox)
		if err != nil {
			break
		}
		if rec.NeedsReenroll {
			return
		}
		rec.NeedsReenroll = true
		rec.LastError = reason
		rec.UpdatedAt = m.o.Now().UTC()
		_, err = m.o.Store.PutMailbox(ctx, rec)
		if err == nil {
			m.o.Metrics.reenrollMarked()
			m.o.Logger.Error().Str("mailbox", mailbox).Str("reason", reason).
				Msg("mailbox authorization expired: marked for re-enrollment (popbridge oauth enroll)")
			return
		}
		if !errors.Is(err, ErrConflict) {
			break
		}
	}
	m.o.Logger.Error().Str("mailbox", mailbox).Str("reason", reason).Msg("could not mark the mailbox for re-enrollment")
}

// oauthError carries an OAuth error code (RFC 6749 5.2) for logs and
// last_error; the provider's description is kept out because it may
// echo request data.
type oauthError struct {
	kind   error // errReenroll, errMisconfigured or errTemporary
	code   string
	status int
}

func (e *oauthError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("%v: token endpoint answered %d %s", e.kind, e.status, e.code)
	}
	return fmt.Sprintf("%v: token endpoint answered %d", e.kind, e.status)
}
func (e *oauthError) Unwrap() error { return e.kind }

// classify maps an x/oauth2 error to errReenroll, errMisconfigured or
// errTemporary.
func classify(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("%w: token endpoint unreachable: %w", errTemporary, err)
		}
		return fmt.Errorf("%w: token request: %w", errTemporary, err)
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	e := &oauthError{code: re.ErrorCode, status: status}
	switch {
	case re.ErrorCode == "invalid_grant":
		e.kind = errReenroll
	case status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout ||
		re.ErrorCode == "temporarily_unavailable" || re.ErrorCode == "server_error":
		e.kind = errTemporary
	case re.ErrorCode != "" || status == http.StatusBadRequest || status == http.StatusUnauthorized:
		e.kind = errMisconfigured
	default:
		e.kind = errTemporary
	}
	return e
}

// oauthCode is the OAuth error code in err, or a short description.
func oauthCode(err error) string {
	var e *oauthError
	if errors.As(err, &e) && e.code != "" {
		return e.code
	}
	return "refused"
}

func resultOf(err error) string {
	switch {
	case errors.Is(err, errReenroll):
		return "invalid_grant"
	case errors.Is(err, errMisconfigured):
		return "refused"
	default:
		return "temp_failure"
	}
}
