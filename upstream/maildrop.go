package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

// message is one numbered message of the snapshot.
type message struct {
	uid  imap.UID
	size int64
}

// maildrop is the pop3server.Mailbox of one session: the snapshot taken at
// login and the upstream connection it was taken on. Its methods run on
// the POP3 connection's goroutine only.
type maildrop struct {
	b        *Backend
	l        *link
	session  string // pop3server's session ID, for logs
	upstream string // canonical URL, for the cache key
	user     string // the login name exactly as sent upstream
	mailbox  string
	policy   policy.Policy
	// bearer, when set, logs in with SASL OAUTHBEARER or XOAUTH2
	// instead of the POP3 credentials (see loginOAuth).
	bearer *Bearer
	client string // the client's address, for the journal

	// Device views (devices.go): device is the part of the POP3 login name
	// after the device separator; devs the mailbox's devices and ledger as
	// of login; hide what this device is done with (sorted UIDs, not
	// numbered); present the listing's UIDs a QUIT may act on.
	device  string
	devs    policy.Devices
	hide    []uint32
	present []uint32
	// copied is what the last moves answered with COPYUID (quarantine.go).
	copied map[uint32]copiedUID

	caps           imap.CapSet // after login
	uidValidity    uint32
	permanentFlags []imap.Flag
	// key names the listing in Options.Cache; entry is the listing the
	// snapshot was made from (hidden messages included), from which the
	// QUIT update derives the next one. cacheable is false when the
	// listing could not be checked against the SELECT data.
	key       cache.Key
	entry     *cache.Entry
	cacheable bool
	msgUIDs   []imap.UID // message n is msgUIDs[n-1]
	infos     []pop3server.MessageInfo

	body   *body    // the open Body, if any
	pf     prefetch // read-ahead of small messages (prefetch.go)
	dead   error    // why the connection was retired; nil while usable
	closed bool
}

var (
	_ pop3server.Mailbox  = (*maildrop)(nil)
	_ pop3server.Expirer  = (*maildrop)(nil)
	_ pop3server.Releaser = (*maildrop)(nil)
)

var errRetired = errors.New("upstream connection retired")

// debug and warn start a log event carrying the session and the user. No
// per-session logger is kept: zerolog gives each one a 500-octet buffer,
// and thousands of idle sessions would hold them for nothing. A disabled
// level costs nothing (zerolog's nil event).
func (m *maildrop) debug() *zerolog.Event { return m.logged(m.b.opts.Logger.Debug()) }
func (m *maildrop) warn() *zerolog.Event  { return m.logged(m.b.opts.Logger.Warn()) }

func (m *maildrop) logged(e *zerolog.Event) *zerolog.Event {
	return e.Str("session", m.session).Str("user", m.user)
}

// open logs in, selects the mailbox and takes the snapshot. The link is
// armed on entry (from dial) and disarmed on return.
func (m *maildrop) open(ctx context.Context, username, password string) error {
	defer m.l.raw.disarm()
	stop := context.AfterFunc(ctx, func() { m.l.raw.Close() })
	defer stop()
	cause := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return err
	}

	if err := m.authenticate(ctx, username, password, cause); err != nil {
		return err
	}

	if m.journalOn() {
		// Queued restores first, so this session lists what they bring
		// back.
		if err := m.applyRestores(ctx); err != nil {
			err = cause(err)
			m.retire(err)
			return pop3server.ErrTemporary.Wrap(err)
		}
		m.l.raw.arm() // the restore's exchanges disarmed the link
	}

	sel, err := m.selectMailbox(cause)
	if err != nil {
		return err
	}
	if m.viewsOn() {
		if err := m.loadDevices(ctx); err != nil {
			m.retire(err)
			return pop3server.ErrTemporary.Wrap(err)
		}
	}

	start := time.Now()
	fetched, err := m.snapshot(ctx, sel)
	if fetched || err != nil {
		m.b.observe("list", start, err)
	}
	if err != nil {
		err = cause(fmt.Errorf("listing %q: %w", m.mailbox, err))
		m.retire(err)
		return pop3server.ErrTemporary.Wrap(err)
	}
	if !stop() {
		err := cause(errLoginTimeout)
		m.retire(err)
		return pop3server.ErrTemporary.Wrap(err)
	}
	return nil
}

// authenticate logs in (the login phase of open) and learns the
// capabilities after login. cause adds the login deadline to an error.
func (m *maildrop) authenticate(ctx context.Context, username, password string, cause func(error) error) error {
	start := time.Now()
	err := m.login(username, password)
	m.b.observe("login", start, err)
	if err != nil {
		err = cause(err)
		m.retire(err)
		m.debug().Err(err).Msg("upstream login failed")
		if ctx.Err() != nil {
			return pop3server.ErrTemporary.Wrap(err)
		}
		return err
	}
	m.l.caps = nil // the capabilities before login; go-imap keeps the new ones
	if m.caps = m.b.capSets.intern(m.imap().Caps()); m.caps == nil {
		err := cause(errors.New("no capabilities after login"))
		m.retire(err)
		return pop3server.ErrTemporary.Wrap(err)
	}
	return nil
}

// selectMailbox selects the maildrop (with CONDSTORE where offered, for
// revalidating cached listings) and keeps its UIDVALIDITY and permanent
// flags; the error is already mapped for the client.
func (m *maildrop) selectMailbox(cause func(error) error) (*imap.SelectData, error) {
	start := time.Now()
	sel, err := m.imap().Select(m.mailbox, &imap.SelectOptions{
		CondStore: m.caps.Has(imap.CapCondStore) && !m.b.opts.noCondStore,
	}).Wait()
	m.b.observe("select", start, err)
	if err != nil {
		err = cause(fmt.Errorf("SELECT %q: %w", m.mailbox, err))
		m.retire(err)
		return nil, selectError(err)
	}
	if sel.UIDValidity == 0 {
		err := fmt.Errorf("SELECT %q: no UIDVALIDITY", m.mailbox)
		m.retire(err)
		return nil, pop3server.ErrTemporary.Wrap(err)
	}
	m.uidValidity = sel.UIDValidity
	m.permanentFlags = sel.PermanentFlags
	return sel, nil
}

// login sends LOGIN, or AUTHENTICATE PLAIN where the server has disabled
// LOGIN. The error is already mapped for the client.
func (m *maildrop) login(username, password string) error {
	if m.bearer != nil {
		return m.loginBearer()
	}
	var err error
	switch {
	case !m.l.caps.Has(imap.CapLoginDisabled):
		err = m.imap().Login(username, password).Wait()
	case m.l.caps.Has(imap.Cap("AUTH=PLAIN")):
		err = m.imap().Authenticate(sasl.NewPlainClient("", username, password))
	default:
		return errConfig.Wrap(errors.New("upstream has LOGINDISABLED and no AUTH=PLAIN"))
	}
	if err != nil {
		return loginError(fmt.Errorf("login: %w", err))
	}
	return nil
}

// Messages returns the snapshot taken at login.
func (m *maildrop) Messages() []pop3server.MessageInfo { return m.infos }

// Expire reports the RFC 2449 EXPIRE value of the user's policy.
func (m *maildrop) Expire() string { return m.policy.Expire() }

// message returns message n, or ErrNoSuchMessage.
func (m *maildrop) message(n int) (message, error) {
	if n < 1 || n > len(m.msgUIDs) {
		return message{}, pop3server.ErrNoSuchMessage
	}
	return message{uid: m.msgUIDs[n-1], size: m.infos[n-1].Size}, nil
}

// Release gives back the go-imap client while the POP3 client is silent
// (release.go), unless something is outstanding on the connection: a body
// being read, a window fetched ahead, any command of ours.
func (m *maildrop) Release() {
	if m.closed || m.dead != nil || m.l.client == nil || m.body != nil ||
		len(m.pf.batches) > 0 || m.l.raw.isArmed() {
		return
	}
	if err := m.l.release(); err != nil {
		m.retire(err)
		return
	}
	m.b.releases.Add(1)
	m.debug().Msg("upstream client released while idle")
}

// imap is the session's go-imap client, resumed first if it was released:
// every use of the client after login goes through it.
func (m *maildrop) imap() *imapclient.Client {
	if m.l.client == nil {
		m.b.resumes.Add(1)
		if err := m.l.resume(m.caps); err != nil {
			m.retire(err) // the client is set, and fails every command
		}
	}
	return m.l.client
}

// usable fails once the connection has been retired.
func (m *maildrop) usable() error {
	if m.dead != nil {
		return pop3server.ErrTemporary.Wrap(fmt.Errorf("%w: %w", errRetired, m.dead))
	}
	return nil
}

// retire marks the connection unusable and closes it, which unblocks
// anything waiting on it. go-imap's Client.Close waits for its reader, which
// may be parked on a literal nobody reads; it is left to Close, after any
// open body has been drained.
func (m *maildrop) retire(err error) {
	if m.dead == nil {
		m.dead = err
		m.debug().Err(err).Msg("upstream connection retired")
	}
	m.l.raw.Close()
}

// exchange runs f as one upstream operation: with the no-progress timeout
// armed and ctx able to abort it. Any failure other than a tagged NO
// retires the connection, whose state is then unknown. It is observed as
// name, unless name is empty.
func (m *maildrop) exchange(ctx context.Context, name string, f func() error) error {
	if err := m.usable(); err != nil {
		return err
	}
	m.l.raw.arm()
	stop := context.AfterFunc(ctx, func() { m.l.raw.Close() })
	start := time.Now()
	err := f()
	stopped := stop()
	m.l.raw.disarm()
	if !stopped {
		cause := fmt.Errorf("%s: %w", name, context.Cause(ctx))
		if err != nil {
			err = fmt.Errorf("%w (%w)", err, cause)
		} else {
			err = cause
		}
	}
	if name != "" {
		m.b.observe(name, start, err)
	}
	if !stopped || (err != nil && !keepsConn(err)) {
		m.retire(err)
	}
	return err
}

// keepsConn reports whether the connection survives err: the command was
// answered in full, only not the way we hoped.
func keepsConn(err error) bool {
	return isNo(err) || errors.Is(err, pop3server.ErrNoSuchMessage)
}

// Close logs out without applying anything: LOGOUT (never CLOSE, which
// would expunge \Deleted messages), bounded by logoutTimeout.
func (m *maildrop) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	if m.body != nil {
		m.body.abort()
	}
	if m.dead == nil {
		m.l.raw.arm()
		t := time.AfterFunc(logoutTimeout, func() { m.l.raw.Close() })
		// Windows fetched ahead and never read: their answers come
		// before LOGOUT's and are discarded.
		_ = m.settleBatches(context.Background(), false)
		if m.dead == nil {
			start := time.Now()
			var err error
			if m.l.client == nil {
				err = m.l.logout() // released: no client needed for that
			} else {
				err = m.l.client.Logout().Wait()
			}
			m.b.observe("logout", start, err)
		}
		t.Stop()
	}
	_ = m.settleBatches(context.Background(), false) // abandons them on a dead connection
	m.pf.bodies.Close()
	m.l.raw.Close()
	if m.l.client != nil { // nil: released and never resumed
		_ = m.l.client.Close() // waits for go-imap's reader to exit
	}
	return nil
}
