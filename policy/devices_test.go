package policy

import (
	"slices"
	"testing"
	"time"
)

func TestSplitDevice(t *testing.T) {
	for _, tc := range []struct {
		in, sep, user, device string
	}{
		{"alice@example.com#phone", "#", "alice@example.com", "phone"},
		{"alice@example.com#Phone", "#", "alice@example.com", "phone"},
		{"alice@example.com", "#", "alice@example.com", ""},
		{"alice@example.com#", "#", "alice@example.com", ""},
		{"a#b@example.com#desk", "#", "a#b@example.com", "desk"},
		{"#phone", "#", "#phone", ""}, // no user before the separator
		{"alice@example.com#phone", "", "alice@example.com#phone", ""},
		{"alice@example.com+phone", "+", "alice@example.com", "phone"},
		{"alice@example.com::tab", "::", "alice@example.com", "tab"},
	} {
		u, d := SplitDevice(tc.in, tc.sep)
		if u != tc.user || d != tc.device {
			t.Errorf("SplitDevice(%q, %q) = %q, %q; want %q, %q", tc.in, tc.sep, u, d, tc.user, tc.device)
		}
	}
}

func TestDevicesHidden(t *testing.T) {
	d := Devices{Device: "phone", Done: Ledger{"phone": {7, 3, 7}, "desk": {4}}}
	if got := d.Hidden(); !slices.Equal(got, []uint32{3, 7}) {
		t.Errorf("Hidden = %v, want [3 7]", got)
	}
	d.Device = "tablet"
	if got := d.Hidden(); got != nil {
		t.Errorf("Hidden for a device that did nothing = %v, want none", got)
	}
}

// TestMakeDevicePlan: the mailbox holds UIDs 1..5; phone is this session,
// desk and tablet are other devices. present is always 1..5.
func TestMakeDevicePlan(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	fresh := now.Add(-time.Hour)
	stale := now.Add(-31 * 24 * time.Hour) // past the default 30 days
	present := []uint32{1, 2, 3, 4, 5}
	honor := Policy{Delete: Honor, Action: Action{Kind: Expunge}, MarkSeen: true}
	leave := Policy{Delete: Leave, Action: Action{Kind: Expunge}, MarkSeen: true}
	onDL := Policy{Delete: OnDownload, Action: Action{Kind: Flag}}
	tests := []struct {
		name       string
		p          Policy
		known      []DeviceSeen
		done       Ledger
		expiry     time.Duration
		del, retr  []uint32
		wantApply  []uint32
		wantDone   []uint32
		wantSeen   []uint32
		wantAction Action
	}{
		{name: "only device: DELE applies at once", p: honor,
			known: []DeviceSeen{{"phone", fresh}}, del: []uint32{2}, retr: []uint32{1},
			wantApply: []uint32{2}, wantDone: []uint32{2}, wantSeen: []uint32{1}},
		{name: "first login of a device: unknown devices hold nothing", p: honor,
			del: []uint32{2}, wantApply: []uint32{2}, wantDone: []uint32{2}},
		{name: "desk active and not done: phone's DELE is only recorded", p: honor,
			known: []DeviceSeen{{"phone", fresh}, {"desk", fresh}}, del: []uint32{2},
			wantDone: []uint32{2}},
		{name: "desk already deleted it: phone's DELE completes it", p: honor,
			known: []DeviceSeen{{"desk", fresh}}, done: Ledger{"desk": {2, 3}}, del: []uint32{2},
			wantApply: []uint32{2}, wantDone: []uint32{2}},
		{name: "desk past expiry holds nothing back", p: honor,
			known: []DeviceSeen{{"desk", stale}}, del: []uint32{2},
			wantApply: []uint32{2}, wantDone: []uint32{2}},
		{name: "custom expiry keeps a 31-day-old device active", p: honor, expiry: 60 * 24 * time.Hour,
			known: []DeviceSeen{{"desk", stale}}, del: []uint32{2}, wantDone: []uint32{2}},
		{name: "earlier DELE of phone applied once desk expired, with no new DELE", p: honor,
			known: []DeviceSeen{{"desk", stale}}, done: Ledger{"phone": {4}},
			wantApply: []uint32{4}},
		{name: "earlier DELE of phone still held by an active desk", p: honor,
			known: []DeviceSeen{{"desk", fresh}}, done: Ledger{"phone": {4}}},
		{name: "a UID no longer in the snapshot is never applied", p: honor,
			known: []DeviceSeen{{"desk", fresh}}, done: Ledger{"phone": {9}, "desk": {9}}},
		{name: "three devices: all must be done", p: honor,
			known: []DeviceSeen{{"desk", fresh}, {"tablet", fresh}}, done: Ledger{"desk": {1, 2}, "tablet": {2}},
			del: []uint32{1, 2}, wantApply: []uint32{2}, wantDone: []uint32{1, 2}},
		{name: "leave never applies, records DELEs", p: leave,
			known: []DeviceSeen{{"desk", stale}}, done: Ledger{"desk": {1}}, del: []uint32{1, 3}, retr: []uint32{5},
			wantDone: []uint32{1, 3}, wantSeen: []uint32{5}},
		{name: "on-download counts downloads as done", p: onDL,
			known: []DeviceSeen{{"desk", fresh}}, done: Ledger{"desk": {5}}, del: []uint32{1}, retr: []uint32{5, 4},
			wantApply: []uint32{5}, wantDone: []uint32{1, 4, 5}, wantAction: Action{Kind: Flag}},
		{name: "honor: a download is not done", p: honor,
			known: []DeviceSeen{{"desk", fresh}}, done: Ledger{"desk": {5}}, retr: []uint32{5},
			wantSeen: []uint32{5}},
		{name: "this device listed in Known counts once", p: honor,
			known: []DeviceSeen{{"phone", stale}, {"phone", fresh}}, del: []uint32{3},
			wantApply: []uint32{3}, wantDone: []uint32{3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Devices{Device: "phone", Known: tc.known, Done: tc.done, Now: now, Expiry: tc.expiry}
			got := MakeDevicePlan(tc.p, d, present, tc.del, tc.retr)
			if !slices.Equal(got.Apply, tc.wantApply) {
				t.Errorf("Apply = %v, want %v", got.Apply, tc.wantApply)
			}
			if !slices.Equal(got.Done, tc.wantDone) {
				t.Errorf("Done = %v, want %v", got.Done, tc.wantDone)
			}
			if !slices.Equal(got.Seen, tc.wantSeen) {
				t.Errorf("Seen = %v, want %v", got.Seen, tc.wantSeen)
			}
			want := tc.wantAction
			if want == (Action{}) {
				want = tc.p.Action
			}
			if got.Action != want {
				t.Errorf("Action = %v, want %v", got.Action, want)
			}
			if got.Empty() != (len(tc.wantApply)+len(tc.wantDone)+len(tc.wantSeen) == 0) {
				t.Errorf("Empty = %v", got.Empty())
			}
		})
	}
}

// TestMakeDevicePlanAlone: a device alone on its mailbox decides exactly
// like MakePlan, for every policy and scenario of the plain table.
func TestMakeDevicePlanAlone(t *testing.T) {
	present := []uint32{10, 20, 30}
	for _, p := range []DeletePolicy{Honor, Leave, OnDownload} {
		for _, sc := range scenarios {
			pol := Policy{Delete: p, Action: Action{Kind: Expunge}, MarkSeen: true}
			want := MakePlan(pol, sc.deleted, sc.retrieved)
			got := MakeDevicePlan(pol, Devices{Device: "x", Now: time.Now()}, present, sc.deleted, sc.retrieved)
			if !slices.Equal(got.Apply, want.Apply) || !slices.Equal(got.Seen, want.Seen) {
				t.Errorf("%v/%s: device plan %+v, plain plan %+v", p, sc.name, got.Plan, want)
			}
		}
	}
}

func TestParseQuarantine(t *testing.T) {
	a, err := ParseAction("quarantine")
	if err != nil || a.Kind != Quarantine || a.Mailbox != DefaultQuarantineMailbox || !a.Moves() {
		t.Fatalf("ParseAction(quarantine) = %+v, %v", a, err)
	}
	if a.String() != "quarantine" {
		t.Errorf("String = %q", a.String())
	}
	if (Action{Kind: Flag}).Moves() || (Action{Kind: Expunge}).Moves() || !(Action{Kind: Move, Mailbox: "x"}).Moves() {
		t.Error("Moves wrong")
	}
}
