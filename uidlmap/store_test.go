package uidlmap

import (
	"slices"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/store"
)

// TestOnStore round-trips records through the SQLite store: every field
// the rematch needs comes back, and a UIDL is replaced, not duplicated.
func TestOnStore(t *testing.T) {
	s, err := store.Open(t.Context(), "sqlite::memory:", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := OnStore(s)
	a := Record{UIDL: "A", UIDValidity: 1, UID: 2, Fingerprint: Fingerprint{Size: 3, MessageID: "<m>", Date: "d", Hash: "h", Body: "b"}}
	b := Record{UIDL: "B", UIDValidity: 1, UID: 3}
	if err := m.PutUIDLs(t.Context(), Key("u", "INBOX"), []Record{a, b}); err != nil {
		t.Fatal(err)
	}
	a.UIDValidity, a.UID = 9, 1 // rematched
	if err := m.PutUIDLs(t.Context(), Key("u", "INBOX"), []Record{a}); err != nil {
		t.Fatal(err)
	}
	got, err := m.UIDLMap(t.Context(), Key("u", "INBOX"))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(x, y Record) int { return strings.Compare(x.UIDL, y.UIDL) })
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("got %+v", got)
	}
	if other, _ := m.UIDLMap(t.Context(), Key("u", "Other")); len(other) != 0 {
		t.Fatalf("another mailbox sees %+v", other)
	}
}
