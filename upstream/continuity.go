package upstream

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/uidlmap"
)

// UIDLObserver, when Options.Metrics also implements it, is told about
// every UIDL assignment that consulted the state store.
type UIDLObserver interface {
	// UIDLsAssigned reports one assignment: whether it was a rematch (a
	// UIDVALIDITY or server change) and how many messages kept a
	// remembered UIDL by fingerprint (matched), got a new one for want of
	// a candidate (fresh), or got a new one because their fingerprint was
	// shared (ambiguous).
	UIDLsAssigned(rematch bool, matched, fresh, ambiguous int)
}

// remember settles the UIDLs of the messages of e that have none yet
// (docs/migration.md): with Options.UIDLs set, every message listed for
// the first time is recorded in the store with its fingerprint, and a
// mailbox state new to the store (a UIDVALIDITY change, a move to another
// server) is matched to the remembered UIDLs. Only messages at or above
// e.Assigned are looked at, so a cached listing that is still fresh costs
// nothing here, and new mail costs a look-up of its own records
// (NearStore.UIDLsFor), one small fetch of the new messages' header
// fields and body prefix, and one write. The whole map is read for the
// first listing of a state, a rematch, or many new messages at once.
//
// Any store failure fails the login with [SYS/TEMP]: showing derived UIDLs
// instead could show a message under another UIDL than before.
func (m *maildrop) remember(ctx context.Context, e *cache.Entry) (*cache.Entry, error) {
	st := m.b.opts.UIDLs
	if st == nil || (e.Assigned != 0 && e.Assigned >= e.UIDNext) {
		// No store, or a steady-state poll: every UIDL is settled.
		return e, nil
	}
	var todo []uidlmap.Listed
	for _, msg := range e.Messages {
		if msg.UID >= e.Assigned {
			todo = append(todo, uidlmap.Listed{UID: msg.UID, Size: msg.Size})
		}
	}
	if len(todo) == 0 {
		return e, nil
	}
	key := uidlmap.Key(m.user, m.mailbox)
	v := m.uidValidity
	fresh := uidlmap.Fresh{
		Derive: func(uid uint32) string { return m.b.uidl.format(uid, v) },
		Sep:    m.b.uidlSep,
	}
	var (
		plan  *uidlmap.Plan
		res   uidlmap.Result
		fps   map[uint32]uidlmap.Fingerprint
		later []uint32 // UIDs (ascending) left to record at a later login
	)
	if ns, ok := st.(uidlmap.NearStore); ok && appendOnly(e, len(todo)) {
		// New mail in a known state: read only the records that could
		// concern it, not a large mailbox's whole map.
		uids := make([]uint32, len(todo))
		var uidls []string
		for i, msg := range todo {
			uids[i] = msg.UID
			uidls = append(uidls, uidlmap.Candidates(fresh.Derive(msg.UID), fresh.Sep, appendSuffixes)...)
		}
		recs, err := ns.UIDLsFor(ctx, key, v, uids, uidls)
		if err != nil {
			return nil, pop3server.ErrTemporary.Wrap(fmt.Errorf("reading UIDLs: %w", err))
		}
		plan = uidlmap.NewAppendPlan(recs, v, todo, appendSuffixes)
		if fps, err = m.fingerprints(plan.Need); err != nil {
			return nil, err
		}
		res = plan.Assign(fps, fresh)
	}
	if plan == nil || res.Incomplete {
		recs, err := st.UIDLMap(ctx, key)
		if err != nil {
			return nil, pop3server.ErrTemporary.Wrap(fmt.Errorf("reading the UIDL map: %w", err))
		}
		plan = uidlmap.NewPlan(recs, v, todo)
		need := plan.Need
		if chunk := m.b.recordChunk(); !plan.Rematch && len(need) > chunk {
			// The first recording of a large mailbox: its UIDLs are
			// the derived ones whatever is recorded, so record a chunk
			// per login and stay within the login timeout.
			need, later = need[:chunk], need[chunk:]
		}
		if fps == nil {
			if fps, err = m.fingerprints(need); err != nil {
				return nil, err
			}
		}
		res = plan.Assign(fps, fresh)
	}
	if len(later) > 0 {
		// Not recorded yet: the messages left for a later login, unless
		// their UIDL is not the derived one (a collision gave them a
		// suffix), which must be remembered now.
		put := res.Put[:0:0]
		for _, r := range res.Put {
			if r.UID < later[0] || r.UIDL != fresh.Derive(r.UID) {
				put = append(put, r)
			}
		}
		m.debug().Int("recorded", len(put)).Int("later", len(later)).Msg("uidl map: recording a large mailbox in chunks")
		res.Put = put
	}
	if len(res.Put) > 0 {
		if err := st.PutUIDLs(ctx, key, res.Put); err != nil {
			return nil, pop3server.ErrTemporary.Wrap(fmt.Errorf("storing UIDLs: %w", err))
		}
	}
	if plan.Rematch {
		m.b.opts.Logger.Info().Str("session", m.session).Str("user", m.user).Str("mailbox", m.mailbox).
			Uint32("uidvalidity", v).Int("matched", res.Matched).Int("fresh", res.Fresh).
			Int("ambiguous", res.Ambiguous).Int("kept", res.Kept).Msg("uidl rematch")
	}
	if o, ok := m.b.opts.Metrics.(UIDLObserver); ok {
		o.UIDLsAssigned(plan.Rematch, res.Matched, res.Fresh, res.Ambiguous)
	}

	out := *e
	out.Messages = make([]cache.Message, len(e.Messages))
	copy(out.Messages, e.Messages)
	uidls := make(map[uint32]string, len(res.UIDLs))
	for i, msg := range res.Messages {
		uidls[msg.UID] = res.UIDLs[i]
	}
	for i, msg := range out.Messages {
		if u, ok := uidls[msg.UID]; ok {
			if u == m.b.uidl.format(msg.UID, v) {
				u = "" // derived: setMessages makes it, and it costs no memory
			}
			out.Messages[i].UIDL = u
		}
	}
	out.Assigned = e.UIDNext
	if len(later) > 0 {
		out.Assigned = later[0] // the next login records from there
	}
	return &out, nil
}

// firstRecordChunk is how many messages the first recording of a
// mailbox fingerprints per login (one header-and-body-prefix fetch each,
// about 5 s for 50,000 messages on a loaded Dovecot): a very large
// mailbox is recorded over several logins rather than past the login
// timeout. A rematch is never cut: it needs every fingerprint.
const firstRecordChunk = 50_000

func (b *Backend) recordChunk() int {
	if b.opts.uidlChunk > 0 {
		return b.opts.uidlChunk
	}
	return firstRecordChunk
}

// appendSuffixes is how many suffixed variants of a taken UIDL new mail
// looks up before it reads the whole map; appendMax is the most new
// messages looked up one by one.
const (
	appendSuffixes = 3
	appendMax      = 500
)

// appendOnly reports whether e's new messages (at or above e.Assigned) are
// new mail in a mailbox state the map knows: some of e's messages were
// given UIDLs in this state before (so no rematch is due), and there are
// not so many new ones that reading the whole map is cheaper.
func appendOnly(e *cache.Entry, n int) bool {
	if e.Assigned == 0 || n > appendMax {
		return false
	}
	return len(e.Messages) > 0 && e.Messages[0].UID < e.Assigned
}

// fingerprints fetches the header fields that identify messages (see
// uidlmap.HeaderFields) for uids in one UID FETCH. A message the server
// does not answer for (expunged meanwhile) is left out: it then gets a
// fresh UIDL, never a remembered one.
func (m *maildrop) fingerprints(uids []uint32) (map[uint32]uidlmap.Fingerprint, error) {
	out := make(map[uint32]uidlmap.Fingerprint, len(uids))
	if len(uids) == 0 {
		return out, nil
	}
	set := make([]imap.UID, len(uids))
	for i, u := range uids {
		set[i] = imap.UID(u)
	}
	// The header fields, and the body's first octets (which tell apart
	// generated messages whose header fields are all the same).
	cmd := m.imap().Fetch(imap.UIDSetNum(set...), &imap.FetchOptions{
		UID: true,
		BodySection: []*imap.FetchItemBodySection{{
			Specifier: imap.PartSpecifierHeader, HeaderFields: uidlmap.HeaderFields, Peek: true,
		}, {
			Specifier: imap.PartSpecifierText, Peek: true, Partial: &imap.SectionPartial{Size: uidlmap.BodyPrefix},
		}},
	})
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var (
			uid        uint32
			fp         uidlmap.Fingerprint
			body       string
			hdrOK, bOK bool
		)
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = uint32(item.UID)
			case imapclient.FetchItemDataBodySection:
				if item.Section == nil {
					continue
				}
				var err error
				switch {
				case item.Section.Specifier == imap.PartSpecifierText:
					// NIL: no body at all, which hashes as empty.
					var r io.Reader = strings.NewReader("")
					if item.Literal != nil {
						r = item.Literal
					}
					body, err = uidlmap.HashBody(r)
					bOK = err == nil
				case item.Literal != nil:
					fp, err = uidlmap.Parse(item.Literal, 0)
					hdrOK = err == nil
				}
			}
		}
		if uid != 0 && hdrOK && bOK {
			fp.Body = body
			out[uid] = fp
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, pop3server.ErrTemporary.Wrap(fmt.Errorf("UID FETCH header fields: %w", err))
	}
	return out, nil
}

// uidlSuffixSep picks the character that makes a taken UIDL unique: one
// the format can never produce (not in its literal text; derived numbers
// are decimal or hex digits), so a suffixed UIDL never equals a UIDL
// derived later.
func uidlSuffixSep(f uidlFormat) byte {
	var literal strings.Builder
	for _, p := range f {
		literal.WriteString(p.text)
	}
	lit := literal.String()
	for _, c := range []byte("~!_+=:#") {
		if strings.IndexByte(lit, c) < 0 {
			return c
		}
	}
	for c := byte(0x21); c <= 0x7e; c++ {
		hexDigit := (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
		if !hexDigit && strings.IndexByte(lit, c) < 0 {
			return c
		}
	}
	// A format of 70 characters cannot hold all 72 candidates.
	return '~'
}

// MailboxFingerprints is a maildrop as uidl import sees it.
type MailboxFingerprints struct {
	// Mailbox is the IMAP mailbox the user's POP3 sessions are served
	// from; with the user's login name it makes the UIDL map's key.
	Mailbox     string
	UIDValidity uint32
	// Messages are the messages a POP3 session would list, by UID.
	Messages []uidlmap.Listed
	// Fingerprints are theirs; a message the server did not answer for
	// is missing.
	Fingerprints map[uint32]uidlmap.Fingerprint
}

// Fingerprint logs in as username, as a POP3 session would, and
// fingerprints every message the session would list, for uidl import
// (docs/migration.md). It stores nothing: call it on a Backend without
// Options.UIDLs.
func (b *Backend) Fingerprint(ctx context.Context, username, password string) (*MailboxFingerprints, error) {
	if b.opts.UIDLs != nil {
		return nil, fmt.Errorf("upstream: Fingerprint on a backend that remembers UIDLs")
	}
	mb, err := b.Login(ctx, pop3server.ConnInfo{SessionID: "uidl-import"}, username, password)
	if err != nil {
		return nil, err
	}
	m := mb.(*maildrop)
	defer m.Close()
	out := &MailboxFingerprints{Mailbox: m.mailbox, UIDValidity: m.uidValidity}
	uids := make([]uint32, len(m.msgUIDs))
	for i, uid := range m.msgUIDs {
		uids[i] = uint32(uid)
		out.Messages = append(out.Messages, uidlmap.Listed{UID: uint32(uid), Size: m.infos[i].Size})
	}
	err = m.exchange(ctx, "fetch", func() error {
		var err error
		out.Fingerprints, err = m.fingerprints(uids)
		return err
	})
	if err != nil {
		return nil, err
	}
	for uid, fp := range out.Fingerprints {
		if i, ok := slices.BinarySearch(uids, uid); ok {
			fp.Size = m.infos[i].Size
			out.Fingerprints[uid] = fp
		}
	}
	return out, nil
}

// MailboxFor is the IMAP mailbox username's POP3 sessions are served from
// (--mailbox, or the user's override).
func (b *Backend) MailboxFor(username string) string { return b.settings(username).Mailbox }
