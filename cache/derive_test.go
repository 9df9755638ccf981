package cache

import (
	"slices"
	"testing"
	"time"
)

func TestWithHidden(t *testing.T) {
	listed := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	e := &Entry{UIDNext: 6, NumMessages: 3, HighestModSeq: 0, Messages: msgs(1, 3, 5), Listed: listed}
	e.Messages[1].Hidden = true
	before := slices.Clone(e.Messages)

	if got := e.WithHidden([]uint32{3}); got != e {
		t.Errorf("unchanged hidden set made a new entry")
	}
	// 9 is not listed (it arrived after SELECT): ignored. Unsorted input.
	got := e.WithHidden([]uint32{9, 5, 1})
	if got == e {
		t.Fatal("changed hidden set returned the same entry")
	}
	want := []Message{{UID: 1, Size: 100, Hidden: true}, {UID: 3, Size: 300, Hidden: false}, {UID: 5, Size: 500, Hidden: true}}
	if !slices.Equal(got.Messages, want) || got.UIDNext != 6 || got.NumMessages != 3 || !got.Listed.Equal(listed) {
		t.Errorf("WithHidden = %+v", got)
	}
	if !slices.Equal(e.Messages, before) {
		t.Errorf("WithHidden modified the entry: %v", e.Messages)
	}
	if got := e.WithHidden(nil); got.Messages[1].Hidden {
		t.Errorf("empty hidden set kept UID 3 hidden")
	}
	var nilEntry *Entry
	if nilEntry.WithHidden([]uint32{1}) != nil || nilEntry.Hide(nil) != nil || nilEntry.Without(nil) != nil {
		t.Error("nil entry derived something")
	}
}

func TestHideAndWithout(t *testing.T) {
	e := &Entry{UIDNext: 8, NumMessages: 4, HighestModSeq: 40, Messages: msgs(1, 3, 5, 7)}
	before := slices.Clone(e.Messages)

	h := e.Hide([]uint32{7, 3, 99})
	if want := []Message{{UID: 1, Size: 100, Hidden: false}, {UID: 3, Size: 300, Hidden: true}, {UID: 5, Size: 500, Hidden: false}, {UID: 7, Size: 700, Hidden: true}}; !slices.Equal(h.Messages, want) {
		t.Errorf("Hide = %v", h.Messages)
	}
	w := e.Without([]uint32{5, 1, 99})
	if want := msgs(3, 7); !slices.Equal(w.Messages, want) || w.NumMessages != 2 || w.UIDNext != 8 || w.HighestModSeq != 40 {
		t.Errorf("Without = %+v", w)
	}
	if !slices.Equal(e.Messages, before) || e.NumMessages != 4 {
		t.Errorf("Hide/Without modified the entry: %+v", e)
	}
	// The result revalidates like any entry: same UIDNEXT and the lowered
	// count are Fresh; one more expunge by someone else is Full.
	if d := w.Decide(8, 2, 40); d != Fresh {
		t.Errorf("Decide after our expunge = %v, want fresh", d)
	}
	if d := w.Decide(8, 1, 41); d != Full {
		t.Errorf("Decide after a further expunge = %v, want full", d)
	}
}

// TestPutReturnsStored: entries derived later from the returned entry keep
// the age of the full listing.
func TestPutReturnsStored(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l, _ := NewListings(10)
	l.Now = func() time.Time { return now }
	e := mustEntry(t, msgs(1, 2), 3, 2, 0)
	stored := l.Put(k1, e)
	if stored == e || !stored.Listed.Equal(now) || !e.Listed.IsZero() {
		t.Fatalf("Put returned %+v for %+v", stored, e)
	}
	if got, _ := l.Get(k1); got != stored {
		t.Error("Get does not return the entry Put returned")
	}
	if !stored.Without([]uint32{1}).Listed.Equal(now) || !stored.Hide([]uint32{2}).Listed.Equal(now) {
		t.Error("derived entries lost Listed")
	}
	var nl *Listings
	if nl.Put(k1, e) != e {
		t.Error("nil Listings.Put does not return the entry")
	}
}

// TestRememberedUIDLsSurvive checks that the UIDLs remembered with a state
// store and the Assigned mark survive every derivation and Extend: a lost
// one would show a message under another UIDL.
func TestRememberedUIDLsSurvive(t *testing.T) {
	e := &Entry{UIDNext: 4, NumMessages: 3, Assigned: 4, Messages: []Message{
		{UID: 1, Size: 10, UIDL: "old-1"}, {UID: 2, Size: 10}, {UID: 3, Size: 10, UIDL: "old-3"},
	}}
	ext, ok := e.Extend([]Message{{UID: 4, Size: 5}}, 5, 4, 0)
	if !ok {
		t.Fatal("Extend failed")
	}
	for name, got := range map[string]*Entry{
		"Extend": ext, "Without": e.Without([]uint32{2}), "Hide": e.Hide([]uint32{2}), "WithHidden": e.WithHidden([]uint32{1}),
	} {
		if got.Assigned != 4 || got.Messages[0].UIDL != "old-1" || got.Messages[len(got.Messages)-1].UIDL == "old-1" {
			t.Errorf("%s: %+v", name, got)
		}
	}
	if ext.Messages[2].UIDL != "old-3" || ext.Messages[3].UIDL != "" {
		t.Errorf("Extend: %+v", ext.Messages)
	}
}

func TestInheritUIDLs(t *testing.T) {
	old := &Entry{UIDNext: 5, NumMessages: 3, Assigned: 5, Messages: []Message{
		{UID: 1, Size: 1, UIDL: "a"}, {UID: 2, Size: 1}, {UID: 4, Size: 1, UIDL: "d"},
	}}
	// UID 2 expunged by another client, 5 and 6 new.
	full := &Entry{UIDNext: 7, NumMessages: 4, Messages: []Message{{UID: 1, Size: 1}, {UID: 4, Size: 1}, {UID: 5, Size: 1}, {UID: 6, Size: 1}}}
	got := full.InheritUIDLs(old)
	if got.Assigned != 5 || got.Messages[0].UIDL != "a" || got.Messages[1].UIDL != "d" || got.Messages[2].UIDL != "" || full.Messages[0].UIDL != "" {
		t.Fatalf("%+v", got)
	}
	// A UID below the mark that old did not list: not old's state.
	odd := &Entry{UIDNext: 7, NumMessages: 1, Messages: []Message{{UID: 3, Size: 1}}}
	if got := odd.InheritUIDLs(old); got != odd || got.Assigned != 0 {
		t.Fatalf("inherited into another state: %+v", got)
	}
	if got := full.InheritUIDLs(nil); got != full {
		t.Fatal("nil old")
	}
}
