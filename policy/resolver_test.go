package policy

import "testing"

func ptr[T any](v T) *T { return &v }

var base = Settings{
	Upstream: "imaps://imap.example.net:993",
	Mailbox:  "INBOX",
	Policy:   Default,
}

func testResolver() *Resolver {
	return &Resolver{
		Default: base,
		Domains: map[string]Override{
			"example.com": {
				Delete: ptr(Leave),
				Action: ptr(Action{Kind: Flag}),
			},
			"other.org": {
				Upstream: ptr("imap://mail.other.org:143"),
			},
		},
		Users: map[string]Override{
			"bob@example.com": {
				Delete: ptr(OnDownload),
				Action: ptr(Action{Kind: Move, Mailbox: "Trash"}),
			},
			"scanner": {MarkSeen: ptr(false)},
			// A user key that looks like a domain override must not
			// apply to the domain's other users.
			"example.com": {Mailbox: ptr("Wrong")},
		},
	}
}

func TestResolvePrecedence(t *testing.T) {
	r := testResolver()
	leaveFlag := Settings{Upstream: base.Upstream, Mailbox: "INBOX",
		Policy: Policy{Delete: Leave, Action: Action{Kind: Flag}, MarkSeen: true}}
	bob := Settings{Upstream: base.Upstream, Mailbox: "INBOX",
		Policy: Policy{Delete: OnDownload, Action: Action{Kind: Move, Mailbox: "Trash"}, MarkSeen: true}}
	for _, tc := range []struct {
		user string
		want Settings
	}{
		{"alice@nowhere.test", base},     // default only
		{"alice@example.com", leaveFlag}, // domain over default
		{"bob@example.com", bob},         // user over domain
		{"BOB@Example.COM", bob},         // case folded
		{"alice@EXAMPLE.com", leaveFlag}, // domain case folded
		{"bob@other.org", withUpstream(base, "imap://mail.other.org:143")},
		{"scanner", withMarkSeen(base, false)},      // user without @
		{"SCANNER", withMarkSeen(base, false)},      // ... case folded
		{"scanner@example.com", leaveFlag},          // not the bare "scanner"
		{"nobody", base},                            // no @, no override
		{"example.com", withMailbox(base, "Wrong")}, // user key only for that exact login
		{"x@y@example.com", leaveFlag},              // domain after the last @
		{"bob@", base},                              // empty domain
		{"", base},                                  // empty name
	} {
		if got := r.Resolve(tc.user); got != tc.want {
			t.Errorf("Resolve(%q) = %+v, want %+v", tc.user, got, tc.want)
		}
	}
}

func TestResolveEachFieldAlone(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Override
		want Settings
	}{
		{"none", Override{}, base},
		{"upstream", Override{Upstream: ptr("imap+insecure://127.0.0.1:1143")}, withUpstream(base, "imap+insecure://127.0.0.1:1143")},
		{"mailbox", Override{Mailbox: ptr("POP")}, withMailbox(base, "POP")},
		{"delete", Override{Delete: ptr(Leave)}, withPolicy(base, Policy{Delete: Leave, Action: Default.Action, MarkSeen: true})},
		{"action", Override{Action: ptr(Action{Kind: Move, Mailbox: "Archive"})}, withPolicy(base, Policy{Delete: Honor, Action: Action{Kind: Move, Mailbox: "Archive"}, MarkSeen: true})},
		{"mark-seen", Override{MarkSeen: ptr(false)}, withMarkSeen(base, false)},
	} {
		for _, level := range []string{"domain", "user"} {
			r := &Resolver{Default: base}
			if level == "domain" {
				r.Domains = map[string]Override{"d.test": tc.o}
			} else {
				r.Users = map[string]Override{"u@d.test": tc.o}
			}
			if got := r.Resolve("u@d.test"); got != tc.want {
				t.Errorf("%s override %s: got %+v, want %+v", level, tc.name, got, tc.want)
			}
			if got := r.Resolve("other@d2.test"); got != base {
				t.Errorf("%s override %s leaked to another user: %+v", level, tc.name, got)
			}
		}
	}
}

// A user override of one field keeps the domain's other fields.
func TestResolveLayersMerge(t *testing.T) {
	r := &Resolver{
		Default: base,
		Domains: map[string]Override{"d.test": {Mailbox: ptr("POP"), Delete: ptr(Leave)}},
		Users:   map[string]Override{"u@d.test": {Delete: ptr(OnDownload), MarkSeen: ptr(false)}},
	}
	want := Settings{Upstream: base.Upstream, Mailbox: "POP",
		Policy: Policy{Delete: OnDownload, Action: Default.Action, MarkSeen: false}}
	if got := r.Resolve("u@d.test"); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestResolveNilAndEmpty(t *testing.T) {
	var nilR *Resolver
	if got := nilR.Resolve("bob@example.com"); got != (Settings{Mailbox: "INBOX", Policy: Default}) {
		t.Errorf("nil Resolver: %+v", got)
	}
	empty := &Resolver{Default: base}
	if got := empty.Resolve("bob@example.com"); got != base {
		t.Errorf("empty maps: %+v", got)
	}
	emptyMaps := &Resolver{Default: base, Domains: map[string]Override{}, Users: map[string]Override{}}
	if got := emptyMaps.Resolve("bob"); got != base {
		t.Errorf("empty non-nil maps: %+v", got)
	}
}

func TestNormalizeName(t *testing.T) {
	if got := NormalizeName("Bob.Smith@Example.COM"); got != "bob.smith@example.com" {
		t.Errorf("NormalizeName = %q", got)
	}
}

func withUpstream(s Settings, u string) Settings { s.Upstream = u; return s }
func withMailbox(s Settings, m string) Settings  { s.Mailbox = m; return s }
func withPolicy(s Settings, p Policy) Settings   { s.Policy = p; return s }
func withMarkSeen(s Settings, b bool) Settings   { s.Policy.MarkSeen = b; return s }

func TestExplain(t *testing.T) {
	r := testResolver()
	for _, tc := range []struct {
		user string
		want map[string]Origin
	}{
		{"carol@nowhere.net", map[string]Origin{}},
		{"dave@Example.com", map[string]Origin{
			KeyPolicy: {LevelDomain, "example.com"}, KeyAction: {LevelDomain, "example.com"}}},
		{"bob@example.com", map[string]Origin{
			KeyPolicy: {LevelUser, "bob@example.com"}, KeyAction: {LevelUser, "bob@example.com"}}},
		{"scanner", map[string]Origin{KeyMarkSeen: {LevelUser, "scanner"}}},
	} {
		s, from := r.Explain(tc.user)
		if s != r.Resolve(tc.user) {
			t.Errorf("%s: Explain resolves %+v, Resolve %+v", tc.user, s, r.Resolve(tc.user))
		}
		for k, o := range from {
			want, ok := tc.want[k]
			if !ok {
				want = Origin{Level: LevelServer}
			}
			if o != want {
				t.Errorf("%s: %s from %+v, want %+v", tc.user, k, o, want)
			}
		}
		if len(from) != 8 {
			t.Errorf("%s: %d settings explained, want 8", tc.user, len(from))
		}
	}
}
