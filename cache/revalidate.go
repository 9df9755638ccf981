package cache

import (
	"cmp"
	"fmt"
	"slices"
)

// Revalidation is what a login must fetch to bring a cached Entry up to
// the mailbox state its SELECT reported.
type Revalidation int

const (
	// Full: list the mailbox again (UID FETCH 1:* (UID RFC822.SIZE FLAGS))
	// and replace the entry with NewEntry. Always safe.
	Full Revalidation = iota
	// Fresh: nothing changed that the listing can show; use the entry.
	Fresh
	// Append: new mail arrived, none can be shown to have left. Fetch
	// UID FETCH <e.UIDNext>:* (UID RFC822.SIZE FLAGS) and call Extend.
	// Only returned without CONDSTORE (see the package trade-off below).
	Append
	// Changed: CONDSTORE is on and HIGHESTMODSEQ moved (flags changed,
	// maybe new mail). Fetch UID FETCH 1:* (UID RFC822.SIZE FLAGS)
	// (CHANGEDSINCE e.HighestModSeq) and call Extend. A caller that does
	// not implement CHANGEDSINCE treats Changed as Full.
	Changed
)

func (r Revalidation) String() string {
	switch r {
	case Full:
		return "full"
	case Fresh:
		return "fresh"
	case Append:
		return "append"
	case Changed:
		return "changed"
	}
	return fmt.Sprintf("Revalidation(%d)", int(r))
}

// Decide compares the entry with a new SELECT's UIDNEXT, EXISTS and
// HIGHESTMODSEQ (0 without CONDSTORE). A nil entry decides Full.
//
// Without QRESYNC nothing reports which messages left, so an expunge is
// inferred from the counts: UIDs only grow, so with UIDNEXT unchanged the
// count can only fall by expunges, and Extend checks after the fetch that
// old count + new messages == new count.
//
// Trade-off without CONDSTORE: a flag change on an already-listed message
// (another session's flag action setting $POP3Deleted) changes none of
// the three values, so it is only seen on the next full listing; bound
// that with Listings.MaxAge. The bridge's own QUIT updates must Remove (or
// replace) the entry. With CONDSTORE every flag change moves
// HIGHESTMODSEQ and is caught by Changed.
func (e *Entry) Decide(uidNext, numMessages uint32, highestModSeq uint64) Revalidation {
	if e == nil {
		return Full
	}
	condstore := e.HighestModSeq != 0 && highestModSeq != 0
	if (e.HighestModSeq == 0) != (highestModSeq == 0) {
		// CONDSTORE appeared or vanished between logins: the values are
		// not comparable, so be safe.
		return Full
	}
	switch {
	case uidNext < e.UIDNext || highestModSeq < e.HighestModSeq:
		// Counters that only grow went back: the server is not the one
		// (or not in the state) we listed.
		return Full
	case uidNext == e.UIDNext && numMessages == e.NumMessages:
		if highestModSeq == e.HighestModSeq {
			return Fresh
		}
		return Changed // condstore is true here
	case uidNext == e.UIDNext:
		return Full // count changed without new UIDs: an expunge
	case numMessages <= e.NumMessages:
		return Full // new UIDs but no more messages: an expunge too
	case condstore:
		return Changed
	}
	return Append
}

// Extend returns a new entry: e merged with msgs, fetched for an Append or
// Changed decision, and the new SELECT values. e is not modified; the new
// entry keeps e.Listed and e.Assigned.
//
// msgs may contain messages already listed (a "<UIDNEXT>:*" range always
// returns the last message; CHANGEDSINCE returns changed old ones): their
// Hidden is updated. ok is false, and the caller must do a full listing,
// when the result does not add up: a message count other than
// numMessages (an expunge also happened), an old UID the entry does not
// know, a size that changed, a UID at or above uidNext, or counters that
// went back.
func (e *Entry) Extend(msgs []Message, uidNext, numMessages uint32, highestModSeq uint64) (*Entry, bool) {
	if e == nil || uidNext < e.UIDNext || highestModSeq < e.HighestModSeq {
		return nil, false
	}
	out := slices.Clone(e.Messages)
	var added []Message
	for _, m := range msgs {
		if m.UID == 0 || m.UID >= uidNext || m.Size < 0 {
			return nil, false
		}
		if m.UID < e.UIDNext {
			i, found := slices.BinarySearchFunc(out, m.UID, byUID)
			if !found || out[i].Size != m.Size {
				return nil, false
			}
			out[i].Hidden = m.Hidden
			continue
		}
		added = append(added, m)
	}
	// Servers may repeat a FETCH item for the same message (unsolicited
	// flag updates): the last one wins, but its size cannot differ.
	slices.SortStableFunc(added, func(a, b Message) int { return cmp.Compare(a.UID, b.UID) })
	for i, m := range added {
		if i+1 < len(added) && added[i+1].UID == m.UID {
			if added[i+1].Size != m.Size {
				return nil, false
			}
			continue
		}
		out = append(out, m)
	}
	if len(out) != int(numMessages) {
		return nil, false
	}
	return &Entry{
		UIDNext:       uidNext,
		NumMessages:   numMessages,
		HighestModSeq: highestModSeq,
		Messages:      out,
		Listed:        e.Listed,
		Assigned:      e.Assigned,
	}, true
}

func byUID(m Message, uid uint32) int { return cmp.Compare(m.UID, uid) }
