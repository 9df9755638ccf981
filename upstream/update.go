package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

// maxSetLen bounds the text of one UID set in a command: Dovecot refuses
// command lines over imap_max_line_length (64 KiB by default), and a
// left-on-server mailbox can have many scattered UIDs.
const maxSetLen = 8000

var (
	errUIDValidity    = errors.New("UIDVALIDITY changed during the session; nothing applied")
	errForeignDeleted = errors.New("other messages carry \\Deleted and the server lacks UIDPLUS; nothing expunged")
	errNoKeywords     = errors.New("mailbox does not store the $POP3Deleted keyword")
)

// Update applies the session's deletes and downloads according to the
// user's policy. It never touches a UID outside the snapshot.
//
// With a journal (journal.go) every message the policy applies gets a
// pending row before anything is sent upstream, and its outcome once the
// upstream has answered; when the rows cannot be written nothing is
// applied. With device views (devices.go) the device's ledger is written
// first, and the action is applied only to what every active device is
// done with. A dry run journals what would be applied and changes nothing.
func (m *maildrop) Update(ctx context.Context, marks pop3server.Marks) error {
	if m.body != nil {
		m.body.abort()
	}
	// Windows fetched ahead are answered before anything sent now, and
	// go-imap would hand a FETCH answer about one of their UIDs to them:
	// read them first (discarding the bodies; the session is ending).
	// A failure retires the connection, which what follows checks.
	_ = m.settleBatches(ctx, false)
	deleted, retrieved := m.uids(marks.Deleted), m.uids(marks.Retrieved)
	var dp policy.DevicePlan
	if m.viewsOn() {
		dp = policy.MakeDevicePlan(m.policy, m.devs, m.present, deleted, retrieved)
	} else {
		dp.Plan = policy.MakePlan(m.policy, deleted, retrieved)
	}
	if m.policy.DryRun {
		return m.dryRun(ctx, dp.Plan)
	}
	defer m.housekeep(ctx)
	var gone []uint32 // set once applied
	defer func() { m.forgetGone(ctx, gone) }()
	if dp.Empty() {
		return nil
	}
	plan := dp.Plan
	ids, err := m.journalApply(ctx, plan)
	if err != nil {
		m.warn().Err(err).Int("messages", len(plan.Apply)).Msg("journal not written; nothing applied")
		return pop3server.ErrUpdateFailed.Wrap(err)
	}
	if len(dp.Done) > 0 {
		if err := m.b.opts.State.MarkDone(ctx, m.ledgerKey(), m.device, m.uidValidity, dp.Done, m.b.now()); err != nil {
			err = fmt.Errorf("store: device ledger: %w", err)
			m.setOutcome(ctx, ids, OutcomeFailed)
			m.warn().Err(err).Msg("device ledger not written; nothing applied")
			return pop3server.ErrUpdateFailed.Wrap(err)
		}
	}
	if plan.Empty() {
		return nil
	}
	err = m.exchange(ctx, "update", func() error { return m.apply(plan) })
	m.setOutcome(ctx, ids, journalOutcome(err))
	m.afterUpdate(plan.Action, plan.Apply, err)
	if err != nil {
		m.warn().Err(err).Str("action", plan.Action.String()).Int("messages", len(plan.Apply)).
			Msg("upstream update failed")
		return pop3server.ErrUpdateFailed.Wrap(err)
	}
	m.b.applied("seen", len(plan.Seen))
	m.b.applied(plan.Action.Kind.String(), len(plan.Apply))
	gone = plan.Apply
	return nil
}

// dryRun journals what plan would apply, with outcome dry-run, and sends
// nothing that changes the mailbox: not even \Seen. Device ledgers are
// not written either, so ending the dry run starts from the mailbox as it
// was, not with a backlog of deletes.
func (m *maildrop) dryRun(ctx context.Context, plan policy.Plan) error {
	if len(plan.Apply) == 0 {
		return nil
	}
	if err := m.usable(); err != nil {
		return pop3server.ErrUpdateFailed.Wrap(err)
	}
	ids, err := m.journalApply(ctx, plan)
	if err != nil {
		m.warn().Err(err).Msg("dry run: journal not written")
		return pop3server.ErrUpdateFailed.Wrap(err)
	}
	m.setOutcome(ctx, ids, OutcomeDryRun)
	m.logged(m.b.opts.Logger.Info()).Str("action", plan.Action.String()).Int("messages", len(plan.Apply)).
		Msg("dry run: nothing applied")
	return nil
}

// uids maps message numbers to UIDs, ignoring numbers out of range.
func (m *maildrop) uids(nums []int) []uint32 {
	out := make([]uint32, 0, len(nums))
	for _, n := range nums {
		if msg, err := m.message(n); err == nil {
			out = append(out, uint32(msg.uid))
		}
	}
	return out
}

func (m *maildrop) apply(plan policy.Plan) error {
	// SELECT again rather than STATUS: Dovecot answers STATUS on the
	// selected mailbox from the session's own view ([CLIENTBUG]), which
	// still shows the old UIDVALIDITY after the mailbox was recreated. A
	// SELECT of the selected mailbox deselects it without expunging
	// (RFC 3501 6.3.1) and reports the mailbox as it is now.
	sel, err := m.imap().Select(m.mailbox, nil).Wait()
	if err != nil {
		return fmt.Errorf("SELECT %q again: %w", m.mailbox, err)
	}
	if sel.UIDValidity != m.uidValidity {
		return fmt.Errorf("%w (%d at login, now %d)", errUIDValidity, m.uidValidity, sel.UIDValidity)
	}
	m.permanentFlags = sel.PermanentFlags
	if plan.Action.Kind == policy.Flag && len(plan.Apply) > 0 && !m.keepsKeyword() {
		return errNoKeywords
	}
	// Without UIDPLUS the expunge sequence may only run while ours are the
	// only \Deleted messages. Asking before anything is stored means a
	// refusal leaves the mailbox exactly as it was: no \Seen, no copies
	// in the move target that every retry would multiply. It also tells
	// which of ours were \Deleted already, to be left so if we back out.
	var deletedBefore []imap.UID
	if len(plan.Apply) > 0 && m.needsGuardedExpunge(plan.Action) {
		if deletedBefore, err = m.searchDeleted(); err != nil {
			return err
		}
		if foreign(deletedBefore, plan.Apply) {
			return errForeignDeleted
		}
	}
	if err := m.store(plan.Seen, imap.StoreFlagsAdd, imap.FlagSeen); err != nil {
		return err
	}
	if len(plan.Apply) == 0 {
		return nil
	}
	switch plan.Action.Kind {
	case policy.Expunge:
		return m.expunge(plan.Apply, deletedBefore)
	case policy.Flag:
		return m.store(plan.Apply, imap.StoreFlagsAdd, imap.FlagSeen, imap.Flag(policy.DeletedKeyword))
	case policy.Move, policy.Quarantine:
		return m.move(plan.Apply, plan.Action.Mailbox, deletedBefore)
	}
	return fmt.Errorf("unknown action %v", plan.Action)
}

// needsGuardedExpunge reports whether applying a ends in a plain EXPUNGE
// (no UIDPLUS, and for move no MOVE either).
func (m *maildrop) needsGuardedExpunge(a policy.Action) bool {
	switch a.Kind {
	case policy.Expunge:
		return !m.caps.Has(imap.CapUIDPlus)
	case policy.Move, policy.Quarantine:
		return !m.caps.Has(imap.CapMove) && !m.caps.Has(imap.CapUIDPlus)
	}
	return false
}

// keepsKeyword reports whether PERMANENTFLAGS lets $POP3Deleted stick.
// Without PERMANENTFLAGS all flags are permanent (RFC 3501 7.1).
func (m *maildrop) keepsKeyword() bool {
	if m.permanentFlags == nil {
		return true
	}
	for _, f := range m.permanentFlags {
		if f == imap.FlagWildcard || strings.EqualFold(string(f), policy.DeletedKeyword) {
			return true
		}
	}
	return false
}

// store sends UID STORE uids ±FLAGS.SILENT (flags).
func (m *maildrop) store(uids []uint32, op imap.StoreFlagsOp, flags ...imap.Flag) error {
	for _, set := range uidSets(uids) {
		cmd := m.imap().Store(set, &imap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil)
		if err := cmd.Close(); err != nil {
			return fmt.Errorf("UID STORE %s %v: %w", storeOp(op), flags, err)
		}
	}
	return nil
}

func storeOp(op imap.StoreFlagsOp) string {
	switch op {
	case imap.StoreFlagsAdd:
		return "+FLAGS"
	case imap.StoreFlagsDel:
		return "-FLAGS"
	}
	return "FLAGS"
}

// expunge removes exactly uids. go-imap's helpers are not used: without
// UIDPLUS they end in a plain EXPUNGE, which would also remove messages
// other clients flagged \Deleted. Without UIDPLUS, before is what
// UID SEARCH DELETED found before anything was stored (apply asks).
func (m *maildrop) expunge(uids []uint32, before []imap.UID) error {
	if m.caps.Has(imap.CapUIDPlus) { // IMAP4rev2 implies it
		if err := m.store(uids, imap.StoreFlagsAdd, imap.FlagDeleted); err != nil {
			return err
		}
		for _, set := range uidSets(uids) {
			if err := m.imap().UIDExpunge(set).Close(); err != nil {
				return fmt.Errorf("UID EXPUNGE: %w", err)
			}
		}
		return nil
	}
	// Without UIDPLUS a plain EXPUNGE removes every \Deleted message: go
	// ahead only while ours are still the only ones after our STORE.
	if err := m.store(uids, imap.StoreFlagsAdd, imap.FlagDeleted); err != nil {
		return err
	}
	after, err := m.searchDeleted()
	if err != nil {
		return err
	}
	if !foreign(after, uids) {
		// Another client may flag a message between the SEARCH and the
		// EXPUNGE; without UIDPLUS no server offers anything tighter.
		if err := m.imap().Expunge().Close(); err != nil {
			return fmt.Errorf("EXPUNGE: %w", err)
		}
		return nil
	}
	// Someone flagged a message meanwhile: back out, sparing messages
	// that were \Deleted before our STORE.
	var ours []uint32
	for _, uid := range uids {
		if !slices.Contains(before, imap.UID(uid)) {
			ours = append(ours, uid)
		}
	}
	if err := m.store(ours, imap.StoreFlagsDel, imap.FlagDeleted); err != nil {
		return fmt.Errorf("%w; removing our \\Deleted again: %w", errForeignDeleted, err)
	}
	return errForeignDeleted
}

// searchDeleted returns the UIDs flagged \Deleted now.
func (m *maildrop) searchDeleted() ([]imap.UID, error) {
	found, err := m.imap().UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("UID SEARCH DELETED: %w", err)
	}
	return found.AllUIDs(), nil
}

// foreign reports whether found holds a UID outside ours (sorted).
func foreign(found []imap.UID, ours []uint32) bool {
	return slices.ContainsFunc(found, func(uid imap.UID) bool {
		_, ok := slices.BinarySearch(ours, uint32(uid))
		return !ok
	})
}

// move moves uids into mailbox, creating it when the server says it does
// not exist. Without MOVE: UID COPY, then the expunge sequence only once
// every copy succeeded.
func (m *maildrop) move(uids []uint32, mailbox string, deletedBefore []imap.UID) error {
	created := false
	retry := func(name string, f func() error) error {
		err := f()
		if err != nil && !created && hasCode(err, imap.ResponseCodeTryCreate, imap.ResponseCodeNonExistent) {
			created = true
			if cerr := m.imap().Create(mailbox, nil).Wait(); cerr != nil && !hasCode(cerr, imap.ResponseCodeAlreadyExists) {
				return fmt.Errorf("CREATE %q: %w (after %s: %w)", mailbox, cerr, name, err)
			}
			err = f()
		}
		if err != nil {
			return fmt.Errorf("%s %q: %w", name, mailbox, err)
		}
		return nil
	}
	sets := uidSets(uids)
	if m.caps.Has(imap.CapMove) { // IMAP4rev2 implies it
		// With MOVE in the capabilities Client.Move sends UID MOVE, never
		// its COPY/EXPUNGE fallback.
		for _, set := range sets {
			if err := retry("UID MOVE", func() error {
				data, err := m.imap().Move(set, mailbox).Wait()
				if err == nil {
					m.noteCopyUID(data.UIDValidity, data.SourceUIDs, data.DestUIDs)
				}
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	}
	for _, set := range sets {
		if err := retry("UID COPY", func() error {
			data, err := m.imap().Copy(set, mailbox).Wait()
			if err == nil {
				m.noteCopyUID(data.UIDValidity, data.SourceUIDs, data.DestUIDs)
			}
			return err
		}); err != nil {
			return err
		}
	}
	return m.expunge(uids, deletedBefore)
}

// uidSets packs sorted, unique UIDs into ranges, split so that no set's
// text exceeds maxSetLen.
func uidSets(uids []uint32) []imap.UIDSet {
	var (
		sets []imap.UIDSet
		cur  imap.UIDSet
		n    int
	)
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		r := imap.UIDRange{Start: imap.UID(uids[i]), Stop: imap.UID(uids[j])}
		l := len(strconv.FormatUint(uint64(uids[i]), 10)) + 1
		if j > i {
			l += len(strconv.FormatUint(uint64(uids[j]), 10)) + 1
		}
		if n+l > maxSetLen && len(cur) > 0 {
			sets = append(sets, cur)
			cur, n = nil, 0
		}
		cur = append(cur, r)
		n += l
		i = j + 1
	}
	if len(cur) > 0 {
		sets = append(sets, cur)
	}
	return sets
}
