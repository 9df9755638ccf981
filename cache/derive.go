package cache

import "slices"

// The upstream layer derives new entries from an entry it already holds
// when it learns something exact about the mailbox: the hidden set from
// UID SEARCH KEYWORD $POP3Deleted, or the result of its own QUIT update.
// Like Extend, each returns a new entry (keeping Listed) and leaves e alone.

// WithHidden returns e with Hidden set exactly on the UIDs in hidden
// (sorted or not) and cleared elsewhere. UIDs e does not list are ignored.
// When nothing changes it returns e itself, so the caller can tell by
// comparing pointers whether the cache needs a Put.
func (e *Entry) WithHidden(hidden []uint32) *Entry {
	if e == nil {
		return nil
	}
	set := sortedSet(hidden)
	changed := false
	for _, m := range e.Messages {
		if _, in := slices.BinarySearch(set, m.UID); in != m.Hidden {
			changed = true
			break
		}
	}
	if !changed {
		return e
	}
	out := e.clone()
	for i := range out.Messages {
		_, out.Messages[i].Hidden = slices.BinarySearch(set, out.Messages[i].UID)
	}
	return out
}

// Hide returns e with Hidden also set on uids: the bridge's own flag
// action (docs/policy.md) added $POP3Deleted to them.
func (e *Entry) Hide(uids []uint32) *Entry {
	if e == nil {
		return nil
	}
	set := sortedSet(uids)
	out := e.clone()
	for i := range out.Messages {
		if _, in := slices.BinarySearch(set, out.Messages[i].UID); in {
			out.Messages[i].Hidden = true
		}
	}
	return out
}

// Without returns e minus the messages uids, with NumMessages lowered to
// match: the bridge's own expunge or move removed them. UIDNext and
// HighestModSeq stay those of e's SELECT, which keeps Decide sound: UIDs
// below UIDNext can only disappear, so a later SELECT with the same UIDNEXT
// and the lowered count proves nobody else removed anything, and a moved
// HIGHESTMODSEQ sends the caller to CHANGEDSINCE e.HighestModSeq, which
// reports every flag change since.
func (e *Entry) Without(uids []uint32) *Entry {
	if e == nil {
		return nil
	}
	set := sortedSet(uids)
	out := e.clone()
	out.Messages = slices.DeleteFunc(out.Messages, func(m Message) bool {
		_, in := slices.BinarySearch(set, m.UID)
		return in
	})
	out.NumMessages = uint32(len(out.Messages))
	return out
}

// clone copies e with its own Messages.
func (e *Entry) clone() *Entry {
	out := *e
	out.Messages = slices.Clone(e.Messages)
	return &out
}

func sortedSet(uids []uint32) []uint32 {
	if slices.IsSorted(uids) {
		return uids
	}
	s := slices.Clone(uids)
	slices.Sort(s)
	return s
}

// InheritUIDLs returns e (a full listing of the same mailbox state) with
// the remembered UIDLs and the Assigned mark of old, the entry it
// replaces: every message of e below old.Assigned was in old (UIDs below
// old's UIDNEXT can only have left since), so its UIDL is settled. e is
// returned as it is when old has nothing settled.
func (e *Entry) InheritUIDLs(old *Entry) *Entry {
	if e == nil || old == nil || old.Assigned == 0 || e.Assigned != 0 {
		return e
	}
	out := e.clone()
	for i, m := range out.Messages {
		if m.UID >= old.Assigned {
			break
		}
		j, found := slices.BinarySearchFunc(old.Messages, m.UID, byUID)
		if !found {
			// Not in old, yet below its mark: not the state old
			// describes. Settle nothing.
			return e
		}
		out.Messages[i].UIDL = old.Messages[j].UIDL
	}
	out.Assigned = old.Assigned
	return out
}
