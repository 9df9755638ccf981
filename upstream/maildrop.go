package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

// message is one numbered message of the snapshot.
type message struct {
	uid  imap.UID
	size int64
	// deleted is whether \Deleted was already set at login (by another
	// client): an update that backs out must leave that flag alone.
	deleted bool
}

// maildrop is the pop3server.Mailbox of one session: the snapshot taken at
// login and the upstream connection it was taken on. Its methods run on
// the POP3 connection's goroutine only.
type maildrop struct {
	b       *Backend
	l       *link
	log     zerolog.Logger
	mailbox string
	policy  policy.Policy

	caps           imap.CapSet // after login
	uidValidity    uint32
	permanentFlags []imap.Flag
	// uidNext and highestModSeq (0 without CONDSTORE) are SELECT's, kept
	// for revalidating cached listings (Options.Cache).
	uidNext       imap.UID
	highestModSeq uint64
	msgs          []message // message n is msgs[n-1]
	infos         []pop3server.MessageInfo

	body   *body // the open Body, if any
	dead   error // why the connection was retired; nil while usable
	closed bool
}

var (
	_ pop3server.Mailbox = (*maildrop)(nil)
	_ pop3server.Expirer = (*maildrop)(nil)
)

var errRetired = errors.New("upstream connection retired")

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

	start := time.Now()
	err := m.login(username, password)
	m.b.observe("login", start, err)
	if err != nil {
		err = cause(err)
		m.retire(err)
		m.log.Debug().Err(err).Msg("upstream login failed")
		if ctx.Err() != nil {
			return pop3server.ErrTemporary.Wrap(err)
		}
		return err
	}
	if m.caps = m.l.client.Caps(); m.caps == nil {
		err := cause(errors.New("no capabilities after login"))
		m.retire(err)
		return pop3server.ErrTemporary.Wrap(err)
	}

	start = time.Now()
	sel, err := m.l.client.Select(m.mailbox, &imap.SelectOptions{
		// HIGHESTMODSEQ, for revalidating cached listings.
		CondStore: m.caps.Has(imap.CapCondStore),
	}).Wait()
	m.b.observe("select", start, err)
	if err != nil {
		err = cause(fmt.Errorf("SELECT %q: %w", m.mailbox, err))
		m.retire(err)
		return selectError(err)
	}
	if sel.UIDValidity == 0 {
		err := fmt.Errorf("SELECT %q: no UIDVALIDITY", m.mailbox)
		m.retire(err)
		return pop3server.ErrTemporary.Wrap(err)
	}
	m.uidValidity = sel.UIDValidity
	m.permanentFlags = sel.PermanentFlags
	m.uidNext, m.highestModSeq = sel.UIDNext, sel.HighestModSeq

	if sel.NumMessages > 0 {
		// An empty mailbox is not listed: Dovecot answers a FETCH there
		// with BAD.
		start = time.Now()
		err = m.list()
		m.b.observe("list", start, err)
		if err != nil {
			err = cause(fmt.Errorf("listing %q: %w", m.mailbox, err))
			m.retire(err)
			return pop3server.ErrTemporary.Wrap(err)
		}
	}
	if !stop() {
		err := cause(errLoginTimeout)
		m.retire(err)
		return pop3server.ErrTemporary.Wrap(err)
	}
	return nil
}

// login sends LOGIN, or AUTHENTICATE PLAIN where the server has disabled
// LOGIN. The error is already mapped for the client.
func (m *maildrop) login(username, password string) error {
	var err error
	switch {
	case !m.l.caps.Has(imap.CapLoginDisabled):
		err = m.l.client.Login(username, password).Wait()
	case m.l.caps.Has(imap.Cap("AUTH=PLAIN")):
		err = m.l.client.Authenticate(sasl.NewPlainClient("", username, password))
	default:
		return errConfig.Wrap(errors.New("upstream has LOGINDISABLED and no AUTH=PLAIN"))
	}
	if err != nil {
		return loginError(fmt.Errorf("login: %w", err))
	}
	return nil
}

// list takes the snapshot with UID FETCH 1:* (UID RFC822.SIZE FLAGS):
// sequence numbers would shift under other clients' expunges.
func (m *maildrop) list() error {
	all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}
	msgs, partial, err := m.fetchListing(all)
	if err != nil {
		return err
	}
	if len(partial) > 0 {
		// go-imap routes a FETCH carrying our UID to our command even
		// when it is another client's unsolicited flag update, and then
		// drops the real response as a duplicate. Ask again for those.
		more, still, err := m.fetchListing(imap.UIDSetNum(partial...))
		if err != nil {
			return err
		}
		if len(still) > 0 {
			return fmt.Errorf("no size or flags for UIDs %v", still)
		}
		msgs = append(msgs, more...)
	}
	slices.SortFunc(msgs, func(a, b listed) int { return cmpUID(a.uid, b.uid) })
	msgs = slices.CompactFunc(msgs, func(a, b listed) bool { return a.uid == b.uid })

	m.msgs = make([]message, 0, len(msgs))
	m.infos = make([]pop3server.MessageInfo, 0, len(msgs))
	for _, l := range msgs {
		if l.hidden {
			continue
		}
		m.msgs = append(m.msgs, message{uid: l.uid, size: l.size, deleted: l.deleted})
		m.infos = append(m.infos, pop3server.MessageInfo{
			Size: l.size,
			UIDL: m.b.uidl.format(uint32(l.uid), m.uidValidity),
		})
	}
	return nil
}

// listed is one message as the listing FETCH reported it.
type listed struct {
	uid     imap.UID
	size    int64
	hidden  bool // carries policy.DeletedKeyword
	deleted bool // carries \Deleted
}

// fetchListing fetches UID, size and flags for set. partial lists the UIDs
// whose response lacked the size or the flags.
func (m *maildrop) fetchListing(set imap.UIDSet) (msgs []listed, partial []imap.UID, err error) {
	cmd := m.l.client.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true, Flags: true})
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var (
			l                 listed
			hasSize, hasFlags bool
		)
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				l.uid = item.UID
			case imapclient.FetchItemDataRFC822Size:
				l.size, hasSize = item.Size, true
			case imapclient.FetchItemDataFlags:
				hasFlags = true
				for _, f := range item.Flags {
					// imapmemserver lower-cases keywords; IMAP flags
					// are case-insensitive anyway.
					l.hidden = l.hidden || strings.EqualFold(string(f), policy.DeletedKeyword)
					l.deleted = l.deleted || strings.EqualFold(string(f), string(imap.FlagDeleted))
				}
			}
		}
		switch {
		case l.uid == 0:
		case hasSize && hasFlags:
			msgs = append(msgs, l)
		default:
			partial = append(partial, l.uid)
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, nil, fmt.Errorf("UID FETCH %v: %w", set, err)
	}
	return msgs, partial, nil
}

func cmpUID(a, b imap.UID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Messages returns the snapshot taken at login.
func (m *maildrop) Messages() []pop3server.MessageInfo { return m.infos }

// Expire reports the RFC 2449 EXPIRE value of the user's policy.
func (m *maildrop) Expire() string { return m.policy.Expire() }

// message returns message n, or ErrNoSuchMessage.
func (m *maildrop) message(n int) (message, error) {
	if n < 1 || n > len(m.msgs) {
		return message{}, pop3server.ErrNoSuchMessage
	}
	return m.msgs[n-1], nil
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
		m.log.Debug().Err(err).Msg("upstream connection retired")
	}
	m.l.raw.Close()
}

// exchange runs f as one upstream operation: with the no-progress timeout
// armed and ctx able to abort it. Any failure other than a tagged NO
// retires the connection, whose state is then unknown.
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
	m.b.observe(name, start, err)
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
		start := time.Now()
		err := m.l.client.Logout().Wait()
		t.Stop()
		m.b.observe("logout", start, err)
	}
	m.l.raw.Close()
	_ = m.l.client.Close() // waits for go-imap's reader to exit
	return nil
}
