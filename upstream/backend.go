// Package upstream implements pop3server.Backend on an IMAP server, with the
// go-imap v2 client: each POP3 session logs in upstream with the client's
// credentials, takes a snapshot of one mailbox at login, streams bodies
// with BODY.PEEK, and applies the delete policy at QUIT (docs/design.md).
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/uidlmap"
)

// Defaults for the zero values of Options (docs/design.md#configuration).
const (
	DefaultDialTimeout    = 10 * time.Second
	DefaultLoginTimeout   = 30 * time.Second
	DefaultCommandTimeout = 60 * time.Second
	DefaultMailbox        = "INBOX"
	// DefaultJournalRetention and DefaultQuarantineTTL are the defaults
	// of --journal-retention and --quarantine-days.
	DefaultJournalRetention = 90 * 24 * time.Hour
	DefaultQuarantineTTL    = 14 * 24 * time.Hour
	// DefaultPrefetchBytes and DefaultPrefetchSessionBytes are the
	// --prefetch-bytes and --prefetch-session-bytes defaults.
	DefaultPrefetchBytes        = 64 << 20
	DefaultPrefetchSessionBytes = 1 << 20
	// logoutTimeout bounds the LOGOUT that Close sends.
	logoutTimeout = 5 * time.Second
)

// Options configures a Backend. URL (or a Resolver whose settings name an
// upstream) is required; every other zero value means the default.
//
// Negative values follow pop3server.Options: a negative timeout
// (DialTimeout, LoginTimeout, CommandTimeout, the breaker's Threshold)
// switches that limit off. Retention periods and byte budgets are not
// limits that can be switched off; for them zero or less means the default.
type Options struct {
	// URL is the upstream (see ParseURL). A Resolver may override it per
	// user; it may be nil only when every user resolves to an upstream.
	URL *URL
	// TLSConfig is used for imaps:// and imap:// (STARTTLS); RootCAs comes
	// from --upstream-ca. nil means the system roots. ServerName, when
	// empty, is the URL's host. Certificates are always verified unless
	// the caller sets InsecureSkipVerify itself.
	TLSConfig *tls.Config
	// Mailbox is the IMAP mailbox served as the maildrop; default INBOX.
	Mailbox string
	// UIDLFormat is --uidl-format (ParseUIDLFormat); the zero value is
	// DefaultUIDLFormat.
	UIDLFormat UIDLFormat
	// Policy is the server-wide delete policy, used when Resolver is nil.
	// Its zero value is honor/expunge without mark-seen; policy.Default is
	// the server default (docs/design.md#configuration).
	Policy policy.Policy
	// Resolver, when set, gives each user's upstream, mailbox and policy;
	// its Default should carry the server-wide values. Empty Upstream or
	// Mailbox fall back to URL and Mailbox.
	Resolver *policy.Resolver
	// DialTimeout bounds the TCP connect (default 10 s); LoginTimeout the
	// whole login: connect, TLS, greeting, LOGIN, SELECT and the listing
	// (default 30 s); CommandTimeout is how long any later upstream
	// command may go without progress (default 60 s). Negative: none.
	DialTimeout, LoginTimeout, CommandTimeout time.Duration
	// SendID sends IMAP ID with x-originating-ip/-port and
	// x-connected-ip/-port before LOGIN when the server offers ID.
	SendID bool
	// Cache, when set, keeps listings between sessions (docs/design.md#caches): a login
	// to an unchanged mailbox then costs LOGIN, SELECT and LOGOUT (plus
	// one UID SEARCH on servers without CONDSTORE), and new mail costs a
	// FETCH of the new messages only. Entries are keyed by upstream URL,
	// exact login name, mailbox and UIDVALIDITY.
	Cache *cache.Listings
	// UIDLs, when set, is the state store's UIDL map: UIDLs are then
	// remembered per user and mailbox and survive a UIDVALIDITY change, a
	// move to another server and a migration (docs/migration.md). nil
	// derives every UIDL from --uidl-format, as without a store.
	UIDLs uidlmap.Store
	// Prefetch is the read-ahead of sessions reading in order
	// (docs/prefetch.md); the zero value is off.
	Prefetch PrefetchOptions
	// Logger receives debug and warning events; it never sees passwords.
	Logger zerolog.Logger
	// Metrics, when set, observes upstream commands and updates.
	Metrics Metrics
	// Breaker makes logins fail fast while the upstream is unreachable
	// (see BreakerOptions); the zero value is on with the defaults.
	Breaker BreakerOptions
	// Authenticator, when set, may turn a user's login into an OAuth2
	// login (package oauth); nil means pass-through for everyone.
	Authenticator Authenticator

	// State, when set, is the durable store behind device views, the
	// deletion journal, quarantine and queued restores (docs/policy.md).
	// Without it none of these exist and the POP3 login name goes upstream
	// as it is.
	State State
	// Passive turns on, with State, the features that need no admin
	// action: the deletion journal, and device views for logins without a
	// device (so leave hides from a client what it deleted). The assembly
	// sets it when the store was configured explicitly.
	Passive bool
	// DeviceSeparator splits "alice@example.com#phone" into the upstream
	// user and the device (policy.SplitDevice); "" disables devices. Only
	// used with State.
	DeviceSeparator string
	// DeviceExpiry is how long a device that stopped logging in still
	// holds back messages it has not deleted (default 30 days).
	DeviceExpiry time.Duration
	// JournalRetention is how long journal entries are kept (default 90
	// days); QuarantineTTL how long quarantined messages stay before a
	// later session of their user expunges them (default 14 days).
	JournalRetention, QuarantineTTL time.Duration
	// QuarantineMailbox is where the quarantine action moves messages
	// (default policy.DefaultQuarantineMailbox); it is never served.
	QuarantineMailbox string
	// Now is the clock for device expiry, the journal and quarantine;
	// default time.Now. Tests set a fake one.
	Now func() time.Time

	// noCondStore makes the backend ignore CONDSTORE, so tests can run
	// the revalidation of servers without it against Dovecot.
	noCondStore bool
	// uidlChunk overrides firstRecordChunk, so tests can record a
	// mailbox over several logins without thousands of messages.
	uidlChunk int
}

// PrefetchOptions bounds read-ahead (--prefetch-bytes,
// --prefetch-session-bytes).
type PrefetchOptions struct {
	// Budget is the process-wide bound on octets fetched ahead; nil
	// turns read-ahead off.
	Budget *cache.Budget
	// SessionBytes is each session's limit (default
	// DefaultPrefetchSessionBytes); a message larger than an eighth of it
	// is never fetched ahead, it streams.
	SessionBytes int64
}

// Metrics observes the upstream side; implementations must be cheap and
// safe for concurrent use.
type Metrics interface {
	// ObserveCommand is called after each upstream exchange: "connect"
	// (TCP, TLS, greeting, CAPABILITY, ID), "login", "select", "list",
	// "fetch", "update", "logout". err is nil on success; a NO counts as
	// an error.
	ObserveCommand(name string, d time.Duration, err error)
	// UpdateApplied is called after a successful QUIT update with what was
	// done: "seen", "expunge", "flag" or "move", and how many messages.
	UpdateApplied(action string, n int)
}

// Backend is the IMAP implementation of pop3server.Backend. It is safe for
// concurrent use; each Login opens its own upstream connection.
type Backend struct {
	opts     Options
	uidl     uidlFormat
	uidlSep  byte       // see uidlSuffixSep
	breakers breakerSet // one circuit breaker per upstream URL
	// resolver is Options.Resolver until Reload replaces it.
	resolver atomic.Pointer[policy.Resolver]

	pruneMu   sync.Mutex
	lastPrune time.Time // journal pruning, see pruneJournal
	// expiryChecked remembers when each maildrop's quarantine was last
	// checked (expiryDue); bounded, an evicted key is only checked early.
	expiryChecked *lru.Cache[string, time.Time]

	// releases and resumes count idle sessions' go-imap clients given
	// back and started again (release.go).
	releases, resumes atomic.Uint64
	capSets           capSets
}

// IdleReleases reports how many sessions released their upstream client
// while their POP3 client was silent, and how many resumed one
// (release.go): popbridge_upstream_released_total and _resumed_total.
func (b *Backend) IdleReleases() (released, resumed uint64) {
	return b.releases.Load(), b.resumes.Load()
}

var _ pop3server.Backend = (*Backend)(nil)

// New checks opts and returns a Backend. It does not contact the upstream.
func New(opts Options) (*Backend, error) {
	if opts.URL == nil && (opts.Resolver == nil || opts.Resolver.Default.Upstream == "") {
		return nil, errors.New("upstream: no upstream URL")
	}
	if opts.Mailbox == "" {
		opts.Mailbox = DefaultMailbox
	}
	opts.UIDLFormat = opts.UIDLFormat.orDefault()
	f := opts.UIDLFormat.parts
	if opts.DialTimeout == 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.LoginTimeout == 0 {
		opts.LoginTimeout = DefaultLoginTimeout
	}
	if opts.CommandTimeout == 0 {
		opts.CommandTimeout = DefaultCommandTimeout
	}
	if opts.Prefetch.SessionBytes <= 0 {
		opts.Prefetch.SessionBytes = DefaultPrefetchSessionBytes
	}
	if opts.DeviceExpiry <= 0 {
		opts.DeviceExpiry = policy.DefaultDeviceExpiry
	}
	if opts.JournalRetention <= 0 {
		opts.JournalRetention = DefaultJournalRetention
	}
	if opts.QuarantineTTL <= 0 {
		opts.QuarantineTTL = DefaultQuarantineTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	expiry, err := lru.New[string, time.Time](10000)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	b := &Backend{opts: opts, uidl: f, uidlSep: uidlSuffixSep(f), expiryChecked: expiry}
	b.resolver.Store(opts.Resolver)
	return b, nil
}

var errLoginTimeout = errors.New("upstream login timed out")

// withTimeout is context.WithTimeoutCause for an Options timeout, which
// a negative value disables.
func withTimeout(ctx context.Context, d time.Duration, cause error) (context.Context, context.CancelFunc) {
	if d < 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, d, cause)
}

// Login logs in upstream as username and returns the maildrop snapshot.
// Bad credentials give pop3server.ErrAuthFailed; an unreachable, slow or
// failing upstream gives pop3server.ErrTemporary, never [AUTH].
func (b *Backend) Login(ctx context.Context, conn pop3server.ConnInfo, username, password string) (pop3server.Mailbox, error) {
	// The login runs on a goroutine of its own: its call chain (TLS,
	// go-imap, the listing) is deep, and the stack it grows would stay
	// with the session goroutine for as long as the session idles (4 KiB
	// of an idle session's 37, BenchmarkDovecotIdle). A panic is passed
	// on to the session goroutine, whose recover ends only that session.
	var mb pop3server.Mailbox
	var err error
	var panicked any
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { panicked = recover() }()
		mb, err = b.login(ctx, conn, username, password)
	}()
	<-done
	if panicked != nil {
		panic(panicked)
	}
	return mb, err
}

func (b *Backend) login(ctx context.Context, conn pop3server.ConnInfo, username, password string) (pop3server.Mailbox, error) {
	device := ""
	if b.opts.State != nil {
		username, device = policy.SplitDevice(username, b.opts.DeviceSeparator)
	}
	s := b.settings(username)
	if s.Policy.Action.Kind == policy.Quarantine && b.opts.QuarantineMailbox != "" {
		s.Policy.Action.Mailbox = b.opts.QuarantineMailbox
	}
	if sameMailbox(s.Mailbox, b.quarantine()) {
		// The quarantine is never served: a client would download, and
		// could delete, what the admin means to keep restorable.
		return nil, errConfig.Wrap(fmt.Errorf("the maildrop %q is the quarantine mailbox", s.Mailbox))
	}
	u, err := b.upstreamURL(s)
	if err != nil {
		return nil, err
	}

	ctx, cancel := withTimeout(ctx, b.opts.LoginTimeout, errLoginTimeout)
	defer cancel()
	cfg := b.dialConfig(u)
	if b.opts.SendID {
		cfg.id = &idParams{remote: conn.RemoteAddr, local: conn.LocalAddr}
	}
	mk := func(l *link) *maildrop {
		m := &maildrop{b: b, l: l, session: conn.SessionID, upstream: u.String(), user: username, mailbox: s.Mailbox,
			policy: s.Policy, device: device}
		if conn.RemoteAddr.IsValid() {
			m.client = conn.RemoteAddr.Addr().String()
		}
		return m
	}
	var ts TokenSource
	if b.opts.Authenticator != nil {
		if ts, err = b.opts.Authenticator.Authorize(ctx, username, password); err != nil {
			return nil, err
		}
		if dn, ok := ts.(DeviceNamer); ok && b.opts.State != nil && dn.Device() != "" {
			device = strings.ToLower(dn.Device()) // mk reads it
		}
	}
	var m *maildrop
	if ts != nil {
		m, err = b.loginOAuth(ctx, cfg, conn, username, ts, mk)
	} else {
		m, err = b.openMaildrop(ctx, cfg, conn, username, password, nil, mk)
	}
	if err != nil {
		return nil, err
	}
	m.pf = newPrefetch(b.opts.Prefetch.Budget, b.opts.Prefetch.SessionBytes)
	return m, nil
}

// openMaildrop connects and logs in, with password or, when bearer is
// set, with SASL OAUTHBEARER or XOAUTH2, and takes the snapshot.
func (b *Backend) openMaildrop(ctx context.Context, cfg dialConfig, conn pop3server.ConnInfo, username, password string, bearer *Bearer, mk func(*link) *maildrop) (*maildrop, error) {
	start := time.Now()
	l, err := b.dialGuarded(ctx, cfg)
	b.observe("connect", start, err)
	if err != nil {
		b.opts.Logger.Debug().Str("session", conn.SessionID).Str("user", username).Err(err).Msg("upstream connect failed")
		return nil, pop3server.ErrTemporary.Wrap(err)
	}
	m := mk(l)
	m.bearer = bearer
	if err := m.open(ctx, username, password); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Reload replaces the per-user settings (policies and overrides) for
// logins from now on, as on SIGHUP. A session keeps the settings it
// logged in with: its maildrop copied them at login.
func (b *Backend) Reload(r *policy.Resolver) {
	if r != nil {
		b.resolver.Store(r)
	}
}

// upstreamURL is the upstream of a user's settings.
func (b *Backend) upstreamURL(s policy.Settings) (*URL, error) {
	u := b.opts.URL
	if s.Upstream != "" && (u == nil || s.Upstream != u.String()) {
		var err error
		if u, err = ParseURL(s.Upstream); err != nil {
			return nil, errConfig.Wrap(err)
		}
	}
	if u == nil {
		return nil, errConfig.Wrap(errors.New("no upstream for this user"))
	}
	return u, nil
}

func (b *Backend) dialConfig(u *URL) dialConfig {
	return dialConfig{
		url:            u,
		tls:            b.opts.TLSConfig,
		dialTimeout:    b.opts.DialTimeout,
		commandTimeout: b.opts.CommandTimeout,
	}
}

// settings resolves the user's upstream, mailbox and policy.
func (b *Backend) settings(username string) policy.Settings {
	s := policy.Settings{Mailbox: b.opts.Mailbox, Policy: b.opts.Policy}
	if r := b.resolver.Load(); r != nil {
		s = r.Resolve(username)
	}
	if s.Mailbox == "" {
		s.Mailbox = b.opts.Mailbox
	}
	if strings.EqualFold(s.Mailbox, "INBOX") {
		// INBOX is case-insensitive; go-imap reports it upper-case, and
		// STATUS responses are matched by name.
		s.Mailbox = "INBOX"
	}
	return s
}

// quarantine is the quarantine mailbox's name.
func (b *Backend) quarantine() string {
	if b.opts.QuarantineMailbox != "" {
		return b.opts.QuarantineMailbox
	}
	return policy.DefaultQuarantineMailbox
}

// sameMailbox compares IMAP mailbox names: INBOX is case-insensitive
// (RFC 3501 5.1), every other name is not.
func sameMailbox(a, b string) bool {
	if strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX") {
		return true
	}
	return a == b
}

// now is the backend's clock in UTC.
func (b *Backend) now() time.Time { return b.opts.Now().UTC() }

func (b *Backend) observe(name string, start time.Time, err error) {
	if b.opts.Metrics != nil {
		b.opts.Metrics.ObserveCommand(name, time.Since(start), err)
	}
}

func (b *Backend) applied(action string, n int) {
	if b.opts.Metrics != nil && n > 0 {
		b.opts.Metrics.UpdateApplied(action, n)
	}
}
