package cache

import (
	"cmp"
	"slices"
	"strings"
	"testing"
)

func msgs(uids ...uint32) []Message {
	out := make([]Message, len(uids))
	for i, u := range uids {
		out[i] = Message{UID: u, Size: int64(u) * 100}
	}
	return out
}

func mustEntry(t *testing.T, m []Message, uidNext, n uint32, hms uint64) *Entry {
	t.Helper()
	e, err := NewEntry(m, uidNext, n, hms)
	if err != nil {
		t.Fatalf("NewEntry: %v", err)
	}
	return e
}

func TestNewEntry(t *testing.T) {
	in := []Message{{UID: 7, Size: 1}, {UID: 3, Size: 2, Hidden: true}, {UID: 5, Size: 3}}
	e := mustEntry(t, in, 8, 3, 0)
	if !slices.IsSortedFunc(e.Messages, func(a, b Message) int { return cmp.Compare(a.UID, b.UID) }) {
		t.Errorf("not sorted: %v", e.Messages)
	}
	if in[0].UID != 7 {
		t.Errorf("NewEntry sorted its input in place")
	}
	in[1].Size = 999
	if e.Messages[0] != (Message{UID: 3, Size: 2, Hidden: true}) {
		t.Errorf("entry aliases input: %v", e.Messages)
	}
	if e, err := NewEntry(nil, 1, 0, 0); err != nil || len(e.Messages) != 0 {
		t.Errorf("empty mailbox: %v, %v", e, err)
	}

	for _, tc := range []struct {
		name    string
		m       []Message
		uidNext uint32
		n       uint32
		want    string
	}{
		{"count below EXISTS", msgs(1, 2), 3, 3, "2 messages, SELECT reported 3"},
		{"count above EXISTS", msgs(1, 2), 3, 1, "2 messages, SELECT reported 1"},
		{"UID at UIDNEXT", msgs(1, 3), 3, 2, "UID 3, not below UIDNEXT 3"},
		{"UID 0", msgs(0, 1), 3, 2, "UID 0"},
		{"duplicate", msgs(2, 2), 3, 2, "UID 2 twice"},
		{"negative size", []Message{{UID: 1, Size: -1}}, 3, 1, "negative size"},
	} {
		if _, err := NewEntry(tc.m, tc.uidNext, tc.n, 0); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestDecide(t *testing.T) {
	// Listed: UIDs 1..5 (UIDNEXT 6), 5 messages.
	plain := &Entry{UIDNext: 6, NumMessages: 5, Messages: msgs(1, 2, 3, 4, 5)}
	cs := &Entry{UIDNext: 6, NumMessages: 5, HighestModSeq: 100, Messages: msgs(1, 2, 3, 4, 5)}
	for _, tc := range []struct {
		name    string
		e       *Entry
		uidNext uint32
		n       uint32
		hms     uint64
		want    Revalidation
	}{
		{"nil entry", nil, 6, 5, 0, Full},
		{"unchanged", plain, 6, 5, 0, Fresh},
		{"new mail", plain, 8, 7, 0, Append},
		{"new mail and expunge, count still grew", plain, 9, 6, 0, Append}, // Extend catches it
		{"new mail and expunge, same count", plain, 8, 5, 0, Full},
		{"new mail and expunges, count fell", plain, 8, 4, 0, Full},
		{"expunge", plain, 6, 4, 0, Full},
		{"count grew without UIDs", plain, 6, 6, 0, Full},
		{"UIDNEXT went back", plain, 5, 5, 0, Full},
		{"CONDSTORE appeared", plain, 6, 5, 1, Full},
		{"CONDSTORE vanished", cs, 6, 5, 0, Full},
		{"condstore unchanged", cs, 6, 5, 100, Fresh},
		{"condstore flag change", cs, 6, 5, 101, Changed},
		{"condstore new mail", cs, 7, 6, 102, Changed},
		{"condstore expunge", cs, 6, 4, 103, Full},
		{"condstore new mail and expunge, same count", cs, 7, 5, 104, Full},
		{"condstore modseq went back", cs, 6, 5, 99, Full},
		{"condstore modseq went back with new mail", cs, 7, 6, 99, Full},
	} {
		if got := tc.e.Decide(tc.uidNext, tc.n, tc.hms); got != tc.want {
			t.Errorf("%s: Decide = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRevalidationString(t *testing.T) {
	for r, s := range map[Revalidation]string{Full: "full", Fresh: "fresh", Append: "append", Changed: "changed", 9: "Revalidation(9)"} {
		if r.String() != s {
			t.Errorf("%d.String() = %q, want %q", int(r), r.String(), s)
		}
	}
}

func TestExtend(t *testing.T) {
	old := &Entry{UIDNext: 6, NumMessages: 3, HighestModSeq: 0, Messages: msgs(1, 3, 5)}
	old.Messages[1].Hidden = true
	oldCopy := *old
	oldMsgs := slices.Clone(old.Messages)

	// Append: UID FETCH 6:* returns 6 and 9 (7 and 8 came and went before
	// we looked, which is fine: the count says so).
	got, ok := old.Extend([]Message{{UID: 9, Size: 90}, {UID: 6, Size: 60, Hidden: true}}, 10, 5, 0)
	if !ok {
		t.Fatal("Extend failed")
	}
	want := []Message{{UID: 1, Size: 100, Hidden: false}, {UID: 3, Size: 300, Hidden: true}, {UID: 5, Size: 500, Hidden: false}, {UID: 6, Size: 60, Hidden: true}, {UID: 9, Size: 90, Hidden: false}}
	if !slices.Equal(got.Messages, want) || got.UIDNext != 10 || got.NumMessages != 5 {
		t.Errorf("Extend = %+v", got)
	}

	// Immutability: the old entry and its slice are untouched.
	if old.UIDNext != oldCopy.UIDNext || old.NumMessages != oldCopy.NumMessages || !slices.Equal(old.Messages, oldMsgs) {
		t.Errorf("Extend modified the old entry: %+v", old)
	}
	got.Messages[0].Hidden = true
	if old.Messages[0].Hidden {
		t.Error("new entry shares its Messages array with the old one")
	}
}

func TestExtendMergesKnownMessages(t *testing.T) {
	old := &Entry{UIDNext: 6, NumMessages: 3, HighestModSeq: 50, Messages: msgs(1, 3, 5)}
	// CHANGEDSINCE 50: UID 3 got $POP3Deleted elsewhere, 6 is new, and the
	// server repeated 6 with changed flags.
	in := []Message{
		{UID: 3, Size: 300, Hidden: true},
		{UID: 6, Size: 60},
		{UID: 6, Size: 60, Hidden: true},
	}
	got, ok := old.Extend(in, 7, 4, 60)
	if !ok {
		t.Fatal("Extend failed")
	}
	want := []Message{{UID: 1, Size: 100, Hidden: false}, {UID: 3, Size: 300, Hidden: true}, {UID: 5, Size: 500, Hidden: false}, {UID: 6, Size: 60, Hidden: true}}
	if !slices.Equal(got.Messages, want) || got.HighestModSeq != 60 {
		t.Errorf("Extend = %+v", got)
	}
	if old.Messages[1].Hidden {
		t.Error("old entry changed")
	}

	// "<UIDNEXT>:*" with nothing new returns the last old message.
	same, ok := old.Extend(msgs(5), 6, 3, 51)
	if !ok || !slices.Equal(same.Messages, old.Messages) {
		t.Errorf("re-listing the last message: %v %+v", ok, same)
	}
}

func TestExtendMismatch(t *testing.T) {
	old := &Entry{UIDNext: 6, NumMessages: 3, HighestModSeq: 50, Messages: msgs(1, 3, 5)}
	for _, tc := range []struct {
		name    string
		in      []Message
		uidNext uint32
		n       uint32
		hms     uint64
	}{
		{"expunge hidden by append: count short", msgs(6, 7), 8, 4, 50},
		{"count too high", msgs(6), 7, 5, 50},
		{"unknown old UID", msgs(2, 6), 7, 5, 50},
		{"size of old message changed", []Message{{UID: 3, Size: 1}, {UID: 6, Size: 600}}, 7, 4, 50},
		{"UID at new UIDNEXT", msgs(7), 7, 4, 50},
		{"UID 0", msgs(0, 6), 7, 4, 50},
		{"negative size", []Message{{UID: 6, Size: -5}}, 7, 4, 50},
		{"repeated new UID with another size", []Message{{UID: 6, Size: 1}, {UID: 6, Size: 2}}, 7, 4, 50},
		{"UIDNEXT went back", nil, 5, 3, 50},
		{"modseq went back", msgs(6), 7, 4, 49},
	} {
		if e, ok := old.Extend(tc.in, tc.uidNext, tc.n, tc.hms); ok || e != nil {
			t.Errorf("%s: Extend = %+v, %v; want nil, false", tc.name, e, ok)
		}
	}
	var nilEntry *Entry
	if _, ok := nilEntry.Extend(msgs(1), 2, 1, 0); ok {
		t.Error("nil entry extended")
	}
	if !slices.Equal(old.Messages, msgs(1, 3, 5)) {
		t.Errorf("failed Extend modified the entry: %v", old.Messages)
	}
}
