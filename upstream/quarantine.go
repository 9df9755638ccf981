package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/uidlmap"
)

// The quarantine action moves a message into the quarantine mailbox and
// journals it. A quarantined message is found again by the fingerprint its
// journal row recorded (Message-ID, Date, size), not by UID: MOVE gives it
// a new UID that the row, written before the move, cannot know, and the
// fingerprint works on servers without UIDPLUS too. Identical copies are
// interchangeable, so a fingerprint matching several messages takes any.
//
// A row's outcome says where its message is: "applied" while it is in
// quarantine, then "restored", "expired", or "missing" when it was no
// longer there (an admin removed it by hand).

// RestoreFilter selects the quarantined messages of a user to restore;
// zero fields do not filter.
type RestoreFilter struct {
	// Since selects messages quarantined at or after it.
	Since time.Time
	// MessageID selects one message by its Message-ID (angle brackets
	// optional).
	MessageID string
	// JournalID selects the message one journal row quarantined.
	JournalID int64
}

// quarantined returns the user's rows for messages still in quarantine
// from mailbox, selected by f and quarantined before until (zero: any
// time).
func (b *Backend) quarantined(ctx context.Context, user, mailbox string, f RestoreFilter, until time.Time) ([]JournalEntry, error) {
	rows, err := b.opts.State.Journal(ctx, JournalQuery{
		User: policy.NormalizeName(user), MessageID: trimMessageID(f.MessageID), Since: f.Since, Until: until,
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading the journal: %w", err)
	}
	out := rows[:0]
	for _, r := range rows {
		if r.Action == "quarantine" && r.Outcome == OutcomeApplied && r.Mailbox == mailbox &&
			(f.JournalID == 0 || r.ID == f.JournalID) {
			out = append(out, r)
		}
	}
	return out, nil
}

// trimMessageID drops the angle brackets an admin may copy with a
// Message-ID; the journal keeps it without them, as IMAP's ENVELOPE has it.
func trimMessageID(id string) string {
	if len(id) >= 2 && id[0] == '<' && id[len(id)-1] == '>' {
		return id[1 : len(id)-1]
	}
	return id
}

// locate selects the quarantine mailbox and finds the messages of rows
// there. It returns the UIDs found, the rows they belong to, and the
// rows whose message is not there. A missing quarantine mailbox holds
// nothing.
func (m *maildrop) locate(rows []JournalEntry) (found []uint32, foundRows, missing []JournalEntry, qValidity uint32, err error) {
	q := m.b.quarantine()
	sel, err := m.imap().Select(q, nil).Wait()
	if err != nil {
		if hasCode(err, imap.ResponseCodeNonExistent) {
			return nil, nil, rows, 0, nil
		}
		return nil, nil, nil, 0, fmt.Errorf("SELECT %q: %w", q, err)
	}
	var inQ map[uint32]meta
	if sel.NumMessages > 0 {
		if inQ, err = m.fetchMetaSet(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, nil); err != nil {
			return nil, nil, nil, 0, err
		}
	}
	taken := make(map[uint32]bool)
	for _, r := range rows {
		uid, ok := match(inQ, taken, meta{messageID: r.MessageID, date: r.Date, size: r.Size})
		if !ok {
			missing = append(missing, r)
			continue
		}
		taken[uid] = true
		found = append(found, uid)
		foundRows = append(foundRows, r)
	}
	return found, foundRows, missing, sel.UIDValidity, nil
}

// match finds an untaken message with fingerprint want. The lowest UID
// wins, so the result does not depend on map order.
func match(in map[uint32]meta, taken map[uint32]bool, want meta) (uint32, bool) {
	var best uint32
	for uid, md := range in {
		if md == want && !taken[uid] && (best == 0 || uid < best) {
			best = uid
		}
	}
	return best, best != 0
}

// restoreRows moves the quarantined messages of rows back into the
// maildrop, journaling each move first. The connection must be logged in;
// the quarantine mailbox is left selected. It returns how many messages
// went back.
func (m *maildrop) restoreRows(ctx context.Context, rows []JournalEntry) (int, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	var (
		uids                []uint32
		foundRows, missing  []JournalEntry
		qValidity           uint32
		restoreIDs, foundID []int64
	)
	err := m.exchange(ctx, "restore", func() (err error) {
		uids, foundRows, missing, qValidity, err = m.locate(rows)
		return err
	})
	if err != nil {
		return 0, err
	}
	m.setOutcome(ctx, rowIDs(missing), OutcomeMissing)
	if len(uids) == 0 {
		return 0, nil
	}
	entries := make([]JournalEntry, len(uids))
	for i, r := range foundRows {
		entries[i] = m.journalRow(m.b.quarantine(), qValidity, uids[i], meta{messageID: r.MessageID, date: r.Date, size: r.Size},
			ActionRestore, fmt.Sprintf("to %s (quarantined by journal entry %d)", m.mailbox, r.ID))
		foundID = append(foundID, r.ID)
	}
	if restoreIDs, err = m.appendJournal(ctx, entries); err != nil {
		return 0, err
	}
	sorted := slices.Sorted(slices.Values(uids))
	m.copied = nil
	err = m.exchange(ctx, "restore", func() error { return m.moveGuarded(sorted, m.mailbox) })
	m.setOutcome(ctx, restoreIDs, journalOutcome(err))
	if err != nil {
		return 0, err
	}
	m.setOutcome(ctx, foundID, OutcomeRestored)
	m.keepUIDLs(ctx, uids, foundRows)
	return len(uids), nil
}

// moveGuarded moves uids of the selected mailbox into mailbox, with the
// same care as the QUIT update where the server lacks UIDPLUS.
func (m *maildrop) moveGuarded(uids []uint32, mailbox string) error {
	return m.guarded(uids, policy.Action{Kind: policy.Move}, func(before []imap.UID) error {
		return m.move(uids, mailbox, before)
	})
}

// expungeGuarded expunges uids of the selected mailbox, never another.
func (m *maildrop) expungeGuarded(uids []uint32) error {
	return m.guarded(uids, policy.Action{Kind: policy.Expunge}, func(before []imap.UID) error {
		return m.expunge(uids, before)
	})
}

// guarded runs do for action a on uids, passing the UIDs already \Deleted
// where a ends in a plain EXPUNGE (no UIDPLUS), and refusing then when
// other messages are \Deleted too.
func (m *maildrop) guarded(uids []uint32, a policy.Action, do func(before []imap.UID) error) error {
	var before []imap.UID
	if m.needsGuardedExpunge(a) {
		var err error
		if before, err = m.searchDeleted(); err != nil {
			return err
		}
		if foreign(before, uids) {
			return errForeignDeleted
		}
	}
	return do(before)
}

// expireQuarantine expunges from quarantine what this user's sessions put
// there longer than the quarantine period ago. It runs after the QUIT
// update, when the maildrop no longer needs to be selected.
func (m *maildrop) expireQuarantine(ctx context.Context) error {
	rows, err := m.b.quarantined(ctx, m.user, m.mailbox, RestoreFilter{}, m.b.now().Add(-m.b.opts.QuarantineTTL))
	if err != nil || len(rows) == 0 {
		return err
	}
	var (
		uids               []uint32
		foundRows, missing []JournalEntry
		qValidity          uint32
	)
	err = m.exchange(ctx, "expire", func() (err error) {
		uids, foundRows, missing, qValidity, err = m.locate(rows)
		return err
	})
	if err != nil {
		return err
	}
	m.setOutcome(ctx, rowIDs(missing), OutcomeMissing)
	if len(uids) == 0 {
		return nil
	}
	entries := make([]JournalEntry, len(uids))
	for i, r := range foundRows {
		entries[i] = m.journalRow(m.b.quarantine(), qValidity, uids[i], meta{messageID: r.MessageID, date: r.Date, size: r.Size},
			ActionExpire, fmt.Sprintf("quarantined by journal entry %d", r.ID))
	}
	ids, err := m.appendJournal(ctx, entries)
	if err != nil {
		return err
	}
	sorted := slices.Sorted(slices.Values(uids))
	err = m.exchange(ctx, "expire", func() error { return m.expungeGuarded(sorted) })
	m.setOutcome(ctx, ids, journalOutcome(err))
	if err != nil {
		return err
	}
	m.setOutcome(ctx, rowIDs(foundRows), OutcomeExpired)
	return nil
}

// applyRestores carries out the restores queued for this user, at login
// before the maildrop is selected, so the session already lists them. A
// failure leaves the restore queued for the next login and does not stop
// this one, unless it cost the connection.
func (m *maildrop) applyRestores(ctx context.Context) error {
	st := m.b.opts.State
	pending, err := st.PendingRestores(ctx, policy.NormalizeName(m.user))
	if err != nil {
		return fmt.Errorf("store: queued restores: %w", err)
	}
	for _, r := range pending {
		rows, err := m.b.quarantined(ctx, m.user, m.mailbox, RestoreFilter{Since: r.Since, MessageID: r.MessageID, JournalID: r.JournalID}, time.Time{})
		if err != nil {
			return err
		}
		n, err := m.restoreRows(ctx, rows)
		if err != nil {
			m.warn().Err(err).Int64("restore", r.ID).Msg("queued restore failed; kept for the next login")
			if m.dead != nil {
				return err
			}
			continue
		}
		if err := st.FinishRestore(ctx, r.ID, OutcomeApplied); err != nil {
			m.warn().Err(err).Int64("restore", r.ID).Msg("store: restore done but not marked finished")
		}
		m.logged(m.b.opts.Logger.Info()).Int64("restore", r.ID).Int("messages", n).Msg("queued restore applied")
	}
	return nil
}

// housekeep runs after a QUIT update: quarantine expiry and journal
// pruning. Their failures are logged, never the client's problem.
func (m *maildrop) housekeep(ctx context.Context) {
	if !m.journalOn() || m.dead != nil {
		return
	}
	if m.b.expiryDue(m.ledgerKey()) {
		if err := m.expireQuarantine(ctx); err != nil {
			m.warn().Err(err).Msg("quarantine expiry failed")
		}
	}
	m.b.pruneJournal(ctx)
}

func rowIDs(rows []JournalEntry) []int64 {
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids
}

// RestoreNow moves user's quarantined messages selected by f back into
// the user's maildrop at once, logged in upstream as login with password:
// an account allowed to act for user, such as a Dovecot master user
// ("alice@example.com*popbridge"). It returns how many messages went
// back. The journal records each move. Errors are not for POP3 clients;
// they name what failed.
func (b *Backend) RestoreNow(ctx context.Context, user, login, password string, f RestoreFilter) (int, error) {
	return b.restoreAt(ctx, user, f, func(m *maildrop) error { return m.login(login, password) })
}

// ErrNoAppAccess is RestoreApp's answer for a user whose mailbox popbridge
// cannot open on its own: the restore must be queued.
var ErrNoAppAccess = errors.New("no application access to this mailbox")

// RestoreApp is RestoreNow for a user in OAuth2 application mode: the
// application token opens the mailbox. Users in other modes give
// ErrNoAppAccess.
func (b *Backend) RestoreApp(ctx context.Context, user string, f RestoreFilter) (int, error) {
	aa, ok := b.opts.Authenticator.(AppAuthorizer)
	if !ok {
		return 0, ErrNoAppAccess
	}
	ts, err := aa.AuthorizeApp(ctx, user)
	if err != nil {
		return 0, err
	}
	if ts == nil {
		return 0, ErrNoAppAccess
	}
	return b.restoreAt(ctx, user, f, func(m *maildrop) error {
		bearer, err := ts.Token(ctx, nil)
		if err != nil {
			return err
		}
		m.bearer = &bearer
		return m.login(user, "")
	})
}

// restoreAt connects, logs in with login and restores.
func (b *Backend) restoreAt(ctx context.Context, user string, f RestoreFilter, login func(*maildrop) error) (int, error) {
	if b.opts.State == nil {
		return 0, errors.New("restore needs a store")
	}
	s := b.settings(user)
	rows, err := b.quarantined(ctx, user, s.Mailbox, f, time.Time{})
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	u, err := b.upstreamURL(s)
	if err != nil {
		return 0, err
	}
	l, err := b.dialGuarded(ctx, b.dialConfig(u))
	if err != nil {
		return 0, err
	}
	m := &maildrop{b: b, l: l, session: "restore", upstream: u.String(), user: user, mailbox: s.Mailbox, policy: s.Policy}
	defer m.Close()
	if err := m.exchange(ctx, "login", func() error { return login(m) }); err != nil {
		return 0, fmt.Errorf("upstream login for %s: %w", user, err)
	}
	m.l.caps = nil
	if m.caps = m.imap().Caps(); m.caps == nil {
		return 0, errors.New("upstream: no capabilities after login")
	}
	return m.restoreRows(ctx, rows)
}

// QueueRestore queues a restore of user's quarantined messages for the
// user's next login, and returns how many messages it selects now.
func (b *Backend) QueueRestore(ctx context.Context, user string, f RestoreFilter) (id int64, n int, err error) {
	if b.opts.State == nil {
		return 0, 0, errors.New("restore needs a store")
	}
	s := b.settings(user)
	rows, err := b.quarantined(ctx, user, s.Mailbox, f, time.Time{})
	if err != nil {
		return 0, 0, err
	}
	id, err = b.opts.State.QueueRestore(ctx, Restore{
		User: policy.NormalizeName(user), Since: f.Since, MessageID: trimMessageID(f.MessageID), JournalID: f.JournalID,
		RequestedAt: b.now(),
	})
	if err != nil {
		return 0, 0, fmt.Errorf("store: queueing the restore: %w", err)
	}
	return id, len(rows), nil
}

// noteCopyUID records what a MOVE or COPY answered with COPYUID (UIDPLUS):
// which new UID each moved message got in the destination.
func (m *maildrop) noteCopyUID(uidValidity uint32, src, dst imap.NumSet) {
	s, ok1 := src.(imap.UIDSet)
	d, ok2 := dst.(imap.UIDSet)
	if uidValidity == 0 || !ok1 || !ok2 {
		return
	}
	from, ok1 := s.Nums()
	to, ok2 := d.Nums()
	if !ok1 || !ok2 || len(from) != len(to) {
		return
	}
	if m.copied == nil {
		m.copied = make(map[uint32]copiedUID, len(from))
	}
	for i := range from {
		m.copied[uint32(from[i])] = copiedUID{uidValidity: uidValidity, uid: uint32(to[i])}
	}
}

// copiedUID is where a message went: its UID in the destination mailbox.
type copiedUID struct{ uidValidity, uid uint32 }

// keepUIDLs gives restored messages back the UIDLs clients saw before the
// quarantine, where the store remembers UIDLs (Options.UIDLs) and the
// server told the new UIDs (COPYUID): the remembered record moves to the
// message's new UID, so leave-on-server clients do not download it again.
// A failure only costs that download, so it is logged.
func (m *maildrop) keepUIDLs(ctx context.Context, qUIDs []uint32, rows []JournalEntry) {
	st := m.b.opts.UIDLs
	if st == nil || len(m.copied) == 0 {
		return
	}
	key := uidlmap.Key(m.user, m.mailbox)
	recs, err := uidlsOf(ctx, st, key, rows)
	if err != nil {
		m.warn().Err(err).Msg("restore: UIDLs not kept")
		return
	}
	var put []uidlmap.Record
	for i, r := range rows {
		to, ok := m.copied[qUIDs[i]]
		if !ok {
			continue
		}
		for _, rec := range recs {
			if rec.UIDValidity == r.UIDValidity && rec.UID == r.UID {
				rec.UIDValidity, rec.UID = to.uidValidity, to.uid
				put = append(put, rec)
				break
			}
		}
	}
	if len(put) == 0 {
		return
	}
	if err := st.PutUIDLs(ctx, key, put); err != nil {
		m.warn().Err(err).Msg("restore: UIDLs not kept")
	}
}

// uidlsOf reads the UIDL records of rows' messages: just those where the
// store can look them up (NearStore), else the whole map.
func uidlsOf(ctx context.Context, st uidlmap.Store, key string, rows []JournalEntry) ([]uidlmap.Record, error) {
	ns, ok := st.(uidlmap.NearStore)
	if !ok {
		return st.UIDLMap(ctx, key)
	}
	byValidity := map[uint32][]uint32{}
	for _, r := range rows {
		byValidity[r.UIDValidity] = append(byValidity[r.UIDValidity], r.UID)
	}
	var out []uidlmap.Record
	for v, uids := range byValidity {
		recs, err := ns.UIDLsFor(ctx, key, v, uids, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	return out, nil
}
