package upstream

import (
	"context"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/policy"
)

// Journal outcomes (docs/policy.md, "The deletion journal"). A row is
// written with the store's "pending" before anything is sent upstream and
// gets one of these once the upstream has answered; a row still pending
// means the process died in between, and the message may or may not have
// been changed.
const (
	OutcomeApplied = "applied"
	OutcomeFailed  = "failed"
	OutcomeDryRun  = "dry-run"
	// OutcomeRestored and OutcomeExpired replace "applied" on a quarantine
	// row once its message left the quarantine mailbox; OutcomeMissing when
	// the message was no longer there to expire or restore.
	OutcomeRestored = "restored"
	OutcomeExpired  = "expired"
	OutcomeMissing  = "missing"
)

// Journal actions besides the delete actions' names (policy.Action).
const (
	// ActionRestore moves a message from quarantine back to the maildrop.
	ActionRestore = "restore"
	// ActionExpire expunges a message from quarantine after the
	// quarantine period.
	ActionExpire = "expire"
)

// journalOn reports whether this session journals its upstream changes:
// with a store configured explicitly, and always for a dry run and for
// quarantine, whose restores and expiry work from the journal.
func (m *maildrop) journalOn() bool {
	if m.b.opts.State == nil {
		return false
	}
	return m.b.opts.Passive || m.policy.DryRun || m.policy.Action.Kind == policy.Quarantine
}

// meta is what the journal records of a message besides its UID.
type meta struct {
	messageID, date string
	size            int64
}

// fetchMeta fetches Message-ID, Date and size of uids in the selected
// mailbox. ENVELOPE never sets \Seen. A UID missing from the answer was
// expunged by someone else meanwhile.
func (m *maildrop) fetchMeta(uids []uint32) (map[uint32]meta, error) {
	out := make(map[uint32]meta, len(uids))
	for _, set := range uidSets(uids) {
		if _, err := m.fetchMetaSet(set, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fetchMetaSet is one UID FETCH of fetchMeta, adding to out (a new map
// when nil).
func (m *maildrop) fetchMetaSet(set imap.UIDSet, out map[uint32]meta) (map[uint32]meta, error) {
	if out == nil {
		out = make(map[uint32]meta)
	}
	cmd := m.imap().Fetch(set, &imap.FetchOptions{UID: true, Envelope: true, RFC822Size: true})
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		buf, err := msg.Collect()
		if err != nil {
			cmd.Close()
			return nil, fmt.Errorf("UID FETCH %v (ENVELOPE): %w", set, err)
		}
		if buf.UID != 0 {
			out[uint32(buf.UID)] = metaOf(buf.Envelope, buf.RFC822Size)
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, fmt.Errorf("UID FETCH %v (ENVELOPE): %w", set, err)
	}
	return out, nil
}

func metaOf(env *imap.Envelope, size int64) meta {
	md := meta{size: size}
	if env != nil {
		md.messageID = env.MessageID
		if !env.Date.IsZero() {
			md.date = env.Date.UTC().Format(time.RFC3339)
		}
	}
	return md
}

// journalApply writes one pending row per UID the plan applies, before
// anything is applied. An error means nothing may be applied.
func (m *maildrop) journalApply(ctx context.Context, plan policy.Plan) ([]int64, error) {
	if !m.journalOn() || len(plan.Apply) == 0 {
		return nil, nil
	}
	var metas map[uint32]meta
	err := m.exchange(ctx, "fetch", func() (err error) {
		metas, err = m.fetchMeta(plan.Apply)
		return err
	})
	if err != nil {
		return nil, err
	}
	detail := ""
	if plan.Action.Moves() {
		detail = "to " + plan.Action.Mailbox
	}
	entries := make([]JournalEntry, 0, len(plan.Apply))
	for _, uid := range plan.Apply {
		md := metas[uid]
		entries = append(entries, m.journalRow(m.mailbox, m.uidValidity, uid, md, plan.Action.String(), detail))
	}
	return m.appendJournal(ctx, entries)
}

// journalRow is a journal row of this session.
func (m *maildrop) journalRow(mailbox string, uidValidity, uid uint32, md meta, action, detail string) JournalEntry {
	return JournalEntry{
		Time:        m.b.now(),
		User:        policy.NormalizeName(m.user),
		Device:      m.device,
		ClientAddr:  m.client,
		SessionID:   m.session,
		Mailbox:     mailbox,
		UIDValidity: uidValidity,
		UID:         uid,
		MessageID:   md.messageID,
		Date:        md.date,
		Size:        md.size,
		Policy:      m.policy.Delete.String(),
		Action:      action,
		Detail:      detail,
	}
}

func (m *maildrop) appendJournal(ctx context.Context, entries []JournalEntry) ([]int64, error) {
	ids, err := m.b.opts.State.AppendJournal(ctx, entries)
	if err != nil {
		return nil, fmt.Errorf("store: writing the journal: %w", err)
	}
	return ids, nil
}

// setOutcome records the upstream's answer for ids. The change is done
// (or not) whatever the store says now, so a failure is only logged: the
// rows stay pending, which the journal shows as "unknown".
func (m *maildrop) setOutcome(ctx context.Context, ids []int64, outcome string) {
	if len(ids) == 0 {
		return
	}
	if err := m.b.opts.State.SetJournalOutcome(context.WithoutCancel(ctx), ids, outcome); err != nil {
		m.warn().Err(err).Str("outcome", outcome).Int("entries", len(ids)).Msg("store: journal outcome not recorded")
	}
}

// journalOutcome is the journal outcome for an apply that returned err.
func journalOutcome(err error) string {
	if err != nil {
		return OutcomeFailed
	}
	return OutcomeApplied
}

// expiryDue reports whether key's quarantine is due for an expiry check:
// at most once an hour per maildrop and process, so a scanner polling
// every minute does not read its journal at every QUIT.
func (b *Backend) expiryDue(key string) bool {
	now := b.now()
	b.pruneMu.Lock()
	defer b.pruneMu.Unlock()
	if last, ok := b.expiryChecked.Get(key); ok && now.Sub(last) < time.Hour && !now.Before(last) {
		return false
	}
	b.expiryChecked.Add(key, now)
	return true
}

// pruneJournal deletes journal rows past the retention, at most once an
// hour per process, from whichever session gets there first.
func (b *Backend) pruneJournal(ctx context.Context) {
	if b.opts.State == nil {
		return
	}
	now := b.now()
	b.pruneMu.Lock()
	due := now.Sub(b.lastPrune) >= time.Hour
	if due {
		b.lastPrune = now
	}
	b.pruneMu.Unlock()
	if !due {
		return
	}
	n, err := b.opts.State.PruneJournal(ctx, now.Add(-b.opts.JournalRetention))
	if err != nil {
		b.opts.Logger.Warn().Err(err).Msg("store: pruning the journal failed")
		return
	}
	if n > 0 {
		b.opts.Logger.Info().Int64("entries", n).Dur("retention", b.opts.JournalRetention).Msg("journal pruned")
	}
}
