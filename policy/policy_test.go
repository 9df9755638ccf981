package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Message 10 is only DELE'd, 20 only RETR'd in full, 30 both; TOP never
// reaches MakePlan, so a TOP-only message is in neither list.
var scenarios = []struct {
	name      string
	deleted   []uint32
	retrieved []uint32
}{
	{"deleted only", []uint32{10}, nil},
	{"retrieved only", nil, []uint32{20}},
	{"both", []uint32{30}, []uint32{30}},
	{"TOP only", nil, nil},
	{"nothing", []uint32{}, []uint32{}},
	{"mixed", []uint32{10, 30}, []uint32{30, 20}},
}

// wantApply is docs/policy.md's policy table, cell by cell: which UIDs get the
// delete action for each policy and scenario.
var wantApply = map[DeletePolicy]map[string][]uint32{
	Honor: {
		"deleted only":   {10},
		"retrieved only": nil,
		"both":           {30},
		"TOP only":       nil,
		"nothing":        nil,
		"mixed":          {10, 30},
	},
	Leave: {
		"deleted only":   nil,
		"retrieved only": nil,
		"both":           nil,
		"TOP only":       nil,
		"nothing":        nil,
		"mixed":          nil,
	},
	OnDownload: {
		"deleted only":   {10},
		"retrieved only": {20},
		"both":           {30},
		"TOP only":       nil,
		"nothing":        nil,
		"mixed":          {10, 20, 30},
	},
}

// wantSeen: --mark-seen marks what was retrieved in full, whatever the
// policy; TOP never marks.
var wantSeen = map[string][]uint32{
	"deleted only":   nil,
	"retrieved only": {20},
	"both":           {30},
	"TOP only":       nil,
	"nothing":        nil,
	"mixed":          {20, 30},
}

var actions = []Action{{Kind: Expunge}, {Kind: Flag}, {Kind: Move, Mailbox: "Trash"}}

func TestMakePlanEveryCell(t *testing.T) {
	for _, dp := range []DeletePolicy{Honor, Leave, OnDownload} {
		for _, sc := range scenarios {
			for _, markSeen := range []bool{true, false} {
				for _, act := range actions {
					name := fmt.Sprintf("%v/%s/seen=%v/%v", dp, sc.name, markSeen, act)
					t.Run(name, func(t *testing.T) {
						p := Policy{Delete: dp, Action: act, MarkSeen: markSeen}
						got := MakePlan(p, sc.deleted, sc.retrieved)
						want := Plan{Apply: wantApply[dp][sc.name], Action: act}
						if markSeen {
							want.Seen = wantSeen[sc.name]
						}
						checkPlan(t, got, want)
					})
				}
			}
		}
	}
}

func checkPlan(t *testing.T, got, want Plan) {
	t.Helper()
	if !slices.Equal(got.Apply, want.Apply) {
		t.Errorf("Apply = %v, want %v", got.Apply, want.Apply)
	}
	if !slices.Equal(got.Seen, want.Seen) {
		t.Errorf("Seen = %v, want %v", got.Seen, want.Seen)
	}
	if got.Action != want.Action {
		t.Errorf("Action = %v, want %v", got.Action, want.Action)
	}
	if got.Empty() != (len(want.Apply) == 0 && len(want.Seen) == 0) {
		t.Errorf("Empty() = %v for %+v", got.Empty(), got)
	}
}

func TestMakePlanDuplicatesAndOrder(t *testing.T) {
	deleted := []uint32{9, 3, 9, 1, 3}
	retrieved := []uint32{7, 3, 7, 2}
	delCopy, retCopy := slices.Clone(deleted), slices.Clone(retrieved)

	got := MakePlan(Policy{Delete: OnDownload, Action: Action{Kind: Flag}, MarkSeen: true}, deleted, retrieved)
	checkPlan(t, got, Plan{
		Apply:  []uint32{1, 2, 3, 7, 9},
		Seen:   []uint32{2, 3, 7},
		Action: Action{Kind: Flag},
	})
	got = MakePlan(Policy{Delete: Honor, Action: Action{Kind: Expunge}}, deleted, retrieved)
	checkPlan(t, got, Plan{Apply: []uint32{1, 3, 9}, Action: Action{Kind: Expunge}})

	// The caller's slices are its own: MakePlan must not sort them in place.
	if !slices.Equal(deleted, delCopy) || !slices.Equal(retrieved, retCopy) {
		t.Errorf("MakePlan modified its input: %v %v", deleted, retrieved)
	}
}

func TestMakePlanDoesNotAlias(t *testing.T) {
	deleted := make([]uint32, 1, 8)
	deleted[0] = 5
	pl := MakePlan(Policy{Delete: OnDownload}, deleted, []uint32{6})
	pl.Apply[0] = 99
	if deleted[0] != 5 || deleted[:2][1] != 0 {
		t.Errorf("plan aliases the input slice: %v", deleted[:2])
	}
}

func TestExpire(t *testing.T) {
	for _, tc := range []struct {
		p    DeletePolicy
		want string
	}{{Honor, "NEVER"}, {Leave, "NEVER"}, {OnDownload, "0"}} {
		for _, act := range actions {
			if got := (Policy{Delete: tc.p, Action: act}).Expire(); got != tc.want {
				t.Errorf("%v/%v Expire() = %q, want %q", tc.p, act, got, tc.want)
			}
		}
	}
}

func TestDefault(t *testing.T) {
	want := Policy{Delete: Honor, Action: Action{Kind: Expunge}, MarkSeen: true}
	if Default != want {
		t.Errorf("Default = %+v, want %+v", Default, want)
	}
}

func TestParseDeletePolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want DeletePolicy
	}{{"honor", Honor}, {"leave", Leave}, {"on-download", OnDownload}} {
		got, err := ParseDeletePolicy(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDeletePolicy(%q) = %v, %v", tc.in, got, err)
		}
		if got.String() != tc.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
	for _, in := range []string{"", "Honor", "x", "on_download", "ondownload", " honor", "leave\n"} {
		if _, err := ParseDeletePolicy(in); err == nil {
			t.Errorf("ParseDeletePolicy(%q) succeeded", in)
		} else if !strings.Contains(err.Error(), "want honor, leave or on-download") {
			t.Errorf("ParseDeletePolicy(%q) error %q does not list the choices", in, err)
		}
	}
	if s := DeletePolicy(7).String(); s != "DeletePolicy(7)" {
		t.Errorf("String() of unknown = %q", s)
	}
}

func TestParseAction(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Action
	}{
		{"expunge", Action{Kind: Expunge}},
		{"flag", Action{Kind: Flag}},
		{"move:Trash", Action{Kind: Move, Mailbox: "Trash"}},
		{"move:INBOX/Old Mail", Action{Kind: Move, Mailbox: "INBOX/Old Mail"}},
		{"move:Papierkorb/Gelöscht", Action{Kind: Move, Mailbox: "Papierkorb/Gelöscht"}},
		{"move:move:x", Action{Kind: Move, Mailbox: "move:x"}},
	} {
		got, err := ParseAction(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseAction(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if got.String() != tc.in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
	for _, tc := range []struct{ in, wantErr string }{
		{"", "unknown delete action"},
		{"Expunge", "unknown delete action"},
		{"mvoe:Trash", "unknown delete action"},
		{"move", "unknown delete action"},
		{"move:", "names no mailbox"},
		{"move:   ", "names no mailbox"},
		{"move:Trash\r\nA1 LOGOUT", "control character"},
		{"move:Trash\n", "control character"},
		{"move:Tr\x00ash", "control character"},
		{"move:Tr\tash", "control character"},
	} {
		_, err := ParseAction(tc.in)
		if err == nil {
			t.Errorf("ParseAction(%q) succeeded", tc.in)
		} else if !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseAction(%q) error %q, want it to contain %q", tc.in, err, tc.wantErr)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("ParseAction(%q) error is not one line: %q", tc.in, err)
		}
	}
	if s := (Action{Kind: 9}).String(); s != "Action(9)" {
		t.Errorf("String() of unknown = %q", s)
	}
}
