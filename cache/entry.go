// Package cache keeps maildrop listings (and optionally small bodies) in
// memory between POP3 sessions, so that a client polling an unchanged
// mailbox every minute costs one SELECT and no listing (docs/design.md#caches).
//
// It is pure: no I/O, no IMAP. The upstream layer asks an Entry what to
// fetch (Decide), builds a new Entry from what it fetched (NewEntry or
// Extend) and stores it. Entries are immutable once built; every change
// makes a new one, so a session can keep using the Entry it got at login
// while another session replaces it.
//
// Isolation: a Key carries the upstream, the exact login name and the
// mailbox, so one user's listing is never served to another. Keys hold no
// credentials, and nothing here caches a login result.
package cache

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Key names one mailbox state. UIDs and sizes are only meaningful within
// one UIDVALIDITY, so a new UIDVALIDITY is a new Key and the old entry
// simply ages out of the LRU.
type Key struct {
	// Upstream is the canonical upstream URL the session resolved to.
	Upstream string
	// User is the login name exactly as it was sent upstream. Do not fold
	// case here: two spellings may be two upstream accounts.
	User string
	// Mailbox is the IMAP mailbox name served as the maildrop.
	Mailbox string
	// UIDValidity is the mailbox's UIDVALIDITY from SELECT.
	UIDValidity uint32
}

// Message is one listed message.
type Message struct {
	UID  uint32
	Size int64 // RFC822.SIZE: the octets RETR delivers
	// Hidden is set when the message carries policy.DeletedKeyword: it is
	// kept in the listing (it still counts in SELECT's EXISTS) but is not
	// offered to POP3 clients.
	Hidden bool
	// UIDL is the UIDL remembered for the message (docs/migration.md) when
	// it is not the one --uidl-format derives; "" means the derived one,
	// which is every message's without a state store.
	UIDL string
}

// Entry is the listing of one mailbox state. Never modify an Entry or its
// Messages once built: it may be shared by concurrent sessions.
type Entry struct {
	// UIDNext, NumMessages and HighestModSeq are what SELECT reported when
	// the listing was taken. HighestModSeq is 0 without CONDSTORE.
	UIDNext       uint32
	NumMessages   uint32
	HighestModSeq uint64
	// Messages are every message of the mailbox, hidden ones included,
	// sorted by UID without duplicates; len(Messages) == NumMessages.
	Messages []Message
	// Listed is when the full listing this entry descends from was taken;
	// Extend keeps it, Listings.Put sets it when zero. Listings.MaxAge is
	// measured from it.
	Listed time.Time
	// Assigned is the UIDNEXT up to which UIDLs are settled with the state
	// store (remembered ones in Message.UIDL): only messages with a UID at
	// or above it still need one. 0 without a store; Extend and the
	// derivations keep it.
	Assigned uint32
}

// NewEntry builds an entry from a full listing (UID FETCH 1:* after
// SELECT). msgs is copied and sorted. It fails, and the listing should
// then be used for this session but not cached, when the listing does not
// match the SELECT data: a message arrived or left between SELECT and
// FETCH, or the server sent something inconsistent.
func NewEntry(msgs []Message, uidNext, numMessages uint32, highestModSeq uint64) (*Entry, error) {
	out := slices.Clone(msgs)
	slices.SortFunc(out, func(a, b Message) int { return cmp.Compare(a.UID, b.UID) })
	for i, m := range out {
		switch {
		case m.UID == 0:
			return nil, fmt.Errorf("cache: listing has UID 0")
		case m.UID >= uidNext:
			return nil, fmt.Errorf("cache: listing has UID %d, not below UIDNEXT %d", m.UID, uidNext)
		case m.Size < 0:
			return nil, fmt.Errorf("cache: UID %d has negative size %d", m.UID, m.Size)
		case i > 0 && out[i-1].UID == m.UID:
			return nil, fmt.Errorf("cache: listing has UID %d twice", m.UID)
		}
	}
	if len(out) != int(numMessages) {
		return nil, fmt.Errorf("cache: listing has %d messages, SELECT reported %d", len(out), numMessages)
	}
	return &Entry{UIDNext: uidNext, NumMessages: numMessages, HighestModSeq: highestModSeq, Messages: out}, nil
}
