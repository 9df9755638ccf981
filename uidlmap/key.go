package uidlmap

import (
	"context"
	"errors"
)

// Key is the store key of one maildrop's UIDL map: the login name exactly
// as sent upstream and the IMAP mailbox served, and deliberately not the
// upstream server, so a user moved to another server keeps the UIDLs. A
// tab cannot occur in either (IMAP atoms and POP3 USER arguments exclude
// control characters), so two pairs never give one key.
func Key(user, mailbox string) string { return user + "\t" + mailbox }

// Record is what is remembered for one UIDL shown to clients: the message
// it was last shown for (UIDValidity and UID) and its fingerprint. A UIDL
// is unique within a key; a record outlives its message, so that its UIDL
// is never given to another message.
type Record struct {
	UIDL        string
	UIDValidity uint32
	UID         uint32
	Fingerprint
}

// Store is the durable UIDL map, implemented by the state store.
type Store interface {
	// UIDLMap returns every record of key, in no particular order.
	UIDLMap(ctx context.Context, key string) ([]Record, error)
	// PutUIDLs inserts or replaces records by UIDL.
	PutUIDLs(ctx context.Context, key string, recs []Record) error
}

// NearStore is a Store that can also read just the records that matter
// to new mail (store.Store.UIDLsFor); OnStore's is one.
type NearStore interface {
	Store
	// UIDLsFor returns the records of key naming one of uids under
	// uidValidity or holding one of uidls, in any order, maybe twice.
	UIDLsFor(ctx context.Context, key string, uidValidity uint32, uids []uint32, uidls []string) ([]Record, error)
}

// Parked returns r moved off its message: UIDValidity and UID 0 and no
// fingerprint, so it matches and names nothing, but its UIDL stays taken
// (a client may still hold it). uidl import parks what it replaces.
func Parked(r Record) Record { return Record{UIDL: r.UIDL} }

// ImportMarker is the record uidl import leaves in a mailbox's map once it
// is done: its UIDL has a space, which no POP3 UIDL has, so it is never
// shown, and it names no message.
const ImportMarker = "uidl import done"

// ErrInvalidUIDL is returned for a UIDL RFC 1939 does not allow.
var ErrInvalidUIDL = errors.New("uidlmap: a UIDL is 1..70 characters of 0x21..0x7E")

// MaxUIDLLen is the longest unique-id RFC 1939 allows.
const MaxUIDLLen = 70

// ValidUIDL reports whether s may be shown as a UIDL.
func ValidUIDL(s string) bool {
	if len(s) == 0 || len(s) > MaxUIDLLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
