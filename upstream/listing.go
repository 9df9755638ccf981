package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

// snapshot brings the listing up to what SELECT reported, from the cache
// (docs/design.md#caches) where the SELECT data prove the cached entry still exact, and
// by listing otherwise:
//
//   - Fresh: nothing is fetched.
//   - Append: UID FETCH <old UIDNEXT>:* (UID RFC822.SIZE FLAGS), merged
//     with cache.Entry.Extend.
//   - Changed (CONDSTORE): the same FETCH of 1:* with CHANGEDSINCE the old
//     HIGHESTMODSEQ: one round trip that returns only the messages whose
//     flags changed and the new ones. RFC822.SIZE of a changed old message
//     is cheap for the server (it is in its index) and lets Extend check it.
//   - Full, or any incremental result that does not add up: UID FETCH 1:*.
//
// Without CONDSTORE a flag change on a listed message moves none of
// UIDNEXT, EXISTS or HIGHESTMODSEQ, so another session's $POP3Deleted (the
// flag action) would go unseen: every listing that did not come whole from
// this login's FETCH 1:* has its hidden set recomputed by the server with
// one UID SEARCH KEYWORD $POP3Deleted. \Deleted set by others needs no such
// care: the only code that depends on it (expunge without UIDPLUS) asks the
// server at QUIT.
//
// fetched reports whether anything was asked of the server.
func (m *maildrop) snapshot(ctx context.Context, sel *imap.SelectData) (fetched bool, err error) {
	uidNext, n, hms := uint32(sel.UIDNext), sel.NumMessages, sel.HighestModSeq
	if m.b.opts.noCondStore {
		hms = 0
	}
	m.key = cache.Key{Upstream: m.upstream, User: m.user, Mailbox: m.mailbox, UIDValidity: sel.UIDValidity}
	c := m.b.opts.Cache
	var old *cache.Entry
	if c != nil && uidNext != 0 {
		// Without UIDNEXT nothing can be revalidated (nor cached).
		m.cacheable = true
		old, _ = c.Get(m.key)
	}
	decision := old.Decide(uidNext, n, hms)

	var e *cache.Entry
	switch decision {
	case cache.Fresh:
		e = old
	case cache.Append, cache.Changed:
		fetched = true
		if e, err = m.revalidate(old, decision, uidNext, n, hms); err != nil {
			return true, err
		}
	}
	if e != nil && hms == 0 && len(e.Messages) > 0 {
		fetched = true
		if e, err = m.searchHidden(e); err != nil {
			return true, err
		}
	}
	if e == nil {
		decision = cache.Full
		fetched = fetched || n > 0
		if e, err = m.listAll(uidNext, n, hms); err != nil {
			return true, err
		}
		// The UIDLs settled in the cached listing of this state stay
		// settled: remember then only looks at the new messages.
		e = e.InheritUIDLs(old)
	}
	m.debug().Str("cache", decision.String()).Uint32("exists", n).Msg("listing")
	if e, err = m.remember(ctx, e); err != nil {
		return true, err
	}
	if c != nil && m.cacheable && e != old {
		e = c.Put(m.key, e)
	}
	if c != nil && m.cacheable {
		m.entry = e // for afterUpdate
	}
	m.setMessages(e)
	return fetched, nil
}

// revalidate fetches what changed since old for an Append or Changed
// decision and returns the extended entry, or nil when the result does not
// add up and a full listing is needed.
func (m *maildrop) revalidate(old *cache.Entry, d cache.Revalidation, uidNext, n uint32, hms uint64) (*cache.Entry, error) {
	if n == 0 {
		// Nothing to fetch (and Dovecot may answer a FETCH in an empty
		// mailbox with BAD): the mailbox is empty.
		e, err := cache.NewEntry(nil, uidNext, 0, hms)
		if err != nil {
			return nil, nil
		}
		e.Listed = old.Listed
		return e, nil
	}
	set := imap.UIDSet{imap.UIDRange{Start: imap.UID(old.UIDNext), Stop: 0}}
	var since uint64
	if d == cache.Changed {
		set, since = imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, old.HighestModSeq
	}
	msgs, err := m.fetchListing(set, since)
	if err != nil {
		return nil, fmt.Errorf("listing changes %v: %w", set, err)
	}
	e, ok := old.Extend(msgs, uidNext, n, hms)
	if !ok {
		m.debug().Str("cache", d.String()).Msg("cached listing does not add up; listing in full")
		return nil, nil
	}
	return e, nil
}

// searchHidden returns e with its hidden set as the server has it now. A
// server that refuses the SEARCH (NO or BAD) gets a full listing: nil.
func (m *maildrop) searchHidden(e *cache.Entry) (*cache.Entry, error) {
	var opts *imap.SearchOptions
	if m.caps.Has(imap.CapESearch) {
		// UID ranges rather than every UID: a flag-action mailbox keeps
		// its hidden messages for ever.
		opts = &imap.SearchOptions{ReturnAll: true}
	}
	data, err := m.imap().UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{policy.DeletedKeyword}}, opts).Wait()
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			m.debug().Err(err).Msg("UID SEARCH KEYWORD refused; listing in full")
			return nil, nil
		}
		return nil, fmt.Errorf("UID SEARCH KEYWORD %s: %w", policy.DeletedKeyword, err)
	}
	uids := data.AllUIDs()
	hidden := make([]uint32, len(uids))
	for i, uid := range uids {
		hidden[i] = uint32(uid)
	}
	return e.WithHidden(hidden), nil
}

// listAll takes the listing with UID FETCH 1:* (UID RFC822.SIZE FLAGS):
// sequence numbers would shift under other clients' expunges. An empty
// mailbox is not fetched: Dovecot answers a FETCH there with BAD. The
// result is cacheable only when it matches the SELECT data (nothing came
// or went in between).
func (m *maildrop) listAll(uidNext, n uint32, hms uint64) (*cache.Entry, error) {
	var msgs []cache.Message
	if n > 0 {
		var err error
		if msgs, err = m.fetchListing(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, 0); err != nil {
			return nil, err
		}
	}
	e, err := cache.NewEntry(msgs, uidNext, n, hms)
	if err == nil {
		return e, nil
	}
	m.cacheable = false
	m.debug().Err(err).Msg("listing not cached")
	slices.SortFunc(msgs, func(a, b cache.Message) int { return cmp.Compare(a.UID, b.UID) })
	msgs = slices.CompactFunc(msgs, func(a, b cache.Message) bool { return a.UID == b.UID })
	return &cache.Entry{UIDNext: uidNext, NumMessages: uint32(len(msgs)), HighestModSeq: hms, Messages: msgs}, nil
}

// fetchListing fetches UID, size and flags for set, with CHANGEDSINCE
// since when it is not 0.
//
// go-imap routes a FETCH carrying one of our UIDs to our command even when
// it is another client's unsolicited flag update, and then drops the real
// response as a duplicate: the UIDs whose response lacked the size or the
// flags are asked for again, by UID and without CHANGEDSINCE.
func (m *maildrop) fetchListing(set imap.UIDSet, since uint64) ([]cache.Message, error) {
	msgs, partial, err := m.fetchOnce(set, since)
	if err != nil || len(partial) == 0 {
		return msgs, err
	}
	more, still, err := m.fetchOnce(imap.UIDSetNum(partial...), 0)
	if err != nil {
		return nil, err
	}
	if len(still) > 0 {
		return nil, fmt.Errorf("no size or flags for UIDs %v", still)
	}
	return append(msgs, more...), nil
}

// fetchOnce is one UID FETCH of fetchListing.
func (m *maildrop) fetchOnce(set imap.UIDSet, since uint64) (msgs []cache.Message, partial []imap.UID, err error) {
	cmd := m.imap().Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true, Flags: true, ChangedSince: since})
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var (
			l                 cache.Message
			hasSize, hasFlags bool
		)
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				l.UID = uint32(item.UID)
			case imapclient.FetchItemDataRFC822Size:
				l.Size, hasSize = item.Size, true
			case imapclient.FetchItemDataFlags:
				hasFlags = true
				for _, f := range item.Flags {
					// imapmemserver lower-cases keywords; IMAP flags
					// are case-insensitive anyway.
					l.Hidden = l.Hidden || strings.EqualFold(string(f), policy.DeletedKeyword)
				}
			}
		}
		switch {
		case l.UID == 0:
		case hasSize && hasFlags:
			msgs = append(msgs, l)
		default:
			partial = append(partial, imap.UID(l.UID))
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, nil, fmt.Errorf("UID FETCH %v: %w", set, err)
	}
	return msgs, partial, nil
}

// afterUpdate keeps the cache exact after the session's own QUIT update:
// the entry taken at login minus what was expunged or moved, or with
// $POP3Deleted on what was flagged. \Seen is not in the listing, so an
// update that only marks seen changes nothing. A failed update may have
// done part of its work: the entry is dropped.
func (m *maildrop) afterUpdate(action policy.Action, applied []uint32, err error) {
	c := m.b.opts.Cache
	if c == nil || !m.cacheable || m.entry == nil {
		return
	}
	switch {
	case err != nil:
		c.Remove(m.key)
	case len(applied) == 0:
	case action.Kind == policy.Expunge || action.Moves():
		c.Put(m.key, m.entry.Without(applied))
	case action.Kind == policy.Flag:
		c.Put(m.key, m.entry.Hide(applied))
	default:
		c.Remove(m.key)
	}
}

// setMessages numbers the visible messages of e, with the remembered UIDL
// of a message where the state store gave one and the derived one
// elsewhere. The UIDLs of the whole
// maildrop share one string: one allocation instead of one per message,
// which matters for a 50,000-message left-on-server mailbox polled every
// minute.
func (m *maildrop) setMessages(e *cache.Entry) {
	m.setPresent(e)
	n := 0
	remembered := false // some UIDL comes from the state store
	for _, msg := range e.Messages {
		if !msg.Hidden && !m.hidden(msg.UID) {
			n++
			remembered = remembered || msg.UIDL != ""
		}
	}
	m.msgUIDs = make([]imap.UID, 0, n)
	m.infos = make([]pop3server.MessageInfo, n)
	if n == 0 {
		return
	}
	f := m.b.uidl
	fixed := f.fixedLen() // the default format's UIDLs are all 16 octets
	if remembered {
		fixed = 0
	}
	var ends []int
	if fixed == 0 {
		ends = make([]int, 0, n)
	}
	blob := make([]byte, 0, n*f.maxLen())
	for _, msg := range e.Messages {
		if msg.Hidden || m.hidden(msg.UID) {
			continue
		}
		if msg.UIDL != "" {
			blob = append(blob, msg.UIDL...)
		} else {
			blob = f.append(blob, msg.UID, m.uidValidity)
		}
		if fixed == 0 {
			ends = append(ends, len(blob))
		}
		m.infos[len(m.msgUIDs)].Size = msg.Size
		m.msgUIDs = append(m.msgUIDs, imap.UID(msg.UID))
	}
	uidls := string(blob)
	start := 0
	for i := range m.infos {
		end := start + fixed
		if fixed == 0 {
			end = ends[i]
		}
		m.infos[i].UIDL = uidls[start:end]
		start = end
	}
}
