package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/policy"
)

func TestFileOverrides(t *testing.T) {
	file := writeFile(t, `upstream: imaps://imap.example.net
delete-policy: honor
domains:
  Example.COM:
    delete-policy: leave
    delete-action: flag
  other.org:
    upstream: imap://mail.other.org
    mailbox: POP
    mark-seen: false
  empty.test:
users:
  Bob@Example.com:
    delete-policy: on-download
    delete-action: move:Trash
  scanner: {mark-seen: false}
`)
	c := mustLoad(t, []string{"--config", file}, nil)
	r := c.Resolver()
	def := policy.Settings{Upstream: "imaps://imap.example.net:993", Mailbox: "INBOX", Policy: policy.Default}
	for _, tc := range []struct {
		user string
		want policy.Settings
	}{
		{"alice@nowhere.test", def},
		{"alice@example.com", policy.Settings{Upstream: def.Upstream, Mailbox: "INBOX",
			Policy: policy.Policy{Delete: policy.Leave, Action: policy.Action{Kind: policy.Flag}, MarkSeen: true}}},
		{"bob@example.com", policy.Settings{Upstream: def.Upstream, Mailbox: "INBOX",
			Policy: policy.Policy{Delete: policy.OnDownload, Action: policy.Action{Kind: policy.Move, Mailbox: "Trash"}, MarkSeen: true}}},
		{"BOB@EXAMPLE.COM", policy.Settings{Upstream: def.Upstream, Mailbox: "INBOX",
			Policy: policy.Policy{Delete: policy.OnDownload, Action: policy.Action{Kind: policy.Move, Mailbox: "Trash"}, MarkSeen: true}}},
		{"carol@other.org", policy.Settings{Upstream: "imap://mail.other.org:143", Mailbox: "POP",
			Policy: policy.Policy{Delete: policy.Honor, Action: policy.Action{Kind: policy.Expunge}, MarkSeen: false}}},
		{"x@empty.test", def},
		{"scanner", policy.Settings{Upstream: def.Upstream, Mailbox: "INBOX",
			Policy: policy.Policy{Delete: policy.Honor, Action: policy.Action{Kind: policy.Expunge}, MarkSeen: false}}},
	} {
		if got := r.Resolve(tc.user); got != tc.want {
			t.Errorf("Resolve(%q) = %+v, want %+v", tc.user, got, tc.want)
		}
	}
	// The resolver follows the effective server default, whatever its source.
	c = mustLoad(t, []string{"--config", file, "--mailbox", "Mail"}, env{"POPBRIDGE_DELETE_POLICY": "leave"})
	if got := c.Resolver().Resolve("alice@nowhere.test"); got.Mailbox != "Mail" || got.Policy.Delete != policy.Leave {
		t.Errorf("resolver default = %+v", got)
	}
	// Resolver maps are copies: changing them does not change the Config.
	c.Resolver().Users["mallory"] = policy.Override{}
	if _, ok := c.Users["mallory"]; ok {
		t.Error("Resolver shares its maps with the Config")
	}
}

func TestFileForms(t *testing.T) {
	// Lists as sequences or strings, null values, anchors, an empty file.
	file := writeFile(t, `upstream: imaps://h
proxy-protocol: &nets [10.0.0.0/8, "192.0.2.1"]
client-workarounds: outlook-no-nuls, oe-ns-eoh
listen:
listen-tls: ":995"
tls-cert: c
tls-key: k
users:
  a@b: ~
`)
	c := mustLoad(t, []string{"--config", file}, nil)
	if len(c.ProxyProtocol) != 2 || len(c.ClientWorkarounds.Names()) != 2 || c.Listen != "" {
		t.Errorf("got %v %v %q", c.ProxyProtocol, c.ClientWorkarounds, c.Listen)
	}
	if _, ok := c.Users["a@b"]; !ok {
		t.Error("null override dropped")
	}
	for _, content := range []string{"", "# only a comment\n", "---\n", "~\n"} {
		mustLoad(t, []string{"--demo", "--config", writeFile(t, content)}, nil)
	}
}

func TestFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		want    string // after "config FILE:"
	}{
		{"unknown top-level key", "upstream: imaps://h\nlisen: :110\n",
			`2: lisen: unknown key`},
		{"unknown key in users", "upstream: imaps://h\nusers:\n  bob@example.com:\n    delete-policy: leave\n    mark_seen: false\n",
			`5: users."bob@example.com".mark_seen: unknown key (an override sets only`},
		{"unknown key in domains", "upstream: imaps://h\ndomains:\n  example.com:\n    listen: :110\n",
			`4: domains."example.com".listen: unknown key`},
		{"bad action in users", "upstream: imaps://h\nusers:\n  bob@example.com:\n    delete-action: mvoe:Trash\n",
			`4: users."bob@example.com".delete-action: unknown delete action "mvoe:Trash" (want expunge, flag, move:MAILBOX or quarantine)`},
		{"move without mailbox in domains", "upstream: imaps://h\ndomains:\n  d.test:\n    delete-action: 'move:'\n",
			`4: domains."d.test".delete-action: delete action "move:" names no mailbox`},
		{"bad policy in domains", "upstream: imaps://h\ndomains:\n  d.test: {delete-policy: never}\n",
			`3: domains."d.test".delete-policy: unknown delete policy "never"`},
		{"bad upstream in users", "upstream: imaps://h\nusers:\n  u:\n    upstream: pop3://x\n",
			`4: users."u".upstream: URL "pop3://x": unknown scheme`},
		{"bad mailbox in users", "upstream: imaps://h\nusers:\n  u:\n    mailbox: \"\"\n",
			`4: users."u".mailbox: mailbox name is empty`},
		{"bad bool in users", "upstream: imaps://h\nusers:\n  u:\n    mark-seen: yes\n",
			`4: users."u".mark-seen: invalid boolean "yes"`},
		{"null in override", "upstream: imaps://h\nusers:\n  u:\n    mark-seen:\n",
			`4: users."u".mark-seen: want a single value, got nothing`},
		{"list in override", "upstream: imaps://h\nusers:\n  u:\n    mailbox: [a, b]\n",
			`4: users."u".mailbox: want a single value, got a list`},
		{"override not a mapping", "upstream: imaps://h\nusers:\n  u: leave\n",
			`3: users."u": want a mapping of settings, got "leave"`},
		{"users not a mapping", "upstream: imaps://h\nusers:\n  - bob\n",
			`3: users: want a mapping of names to overrides, got a list`},
		{"domain with @", "upstream: imaps://h\ndomains:\n  bob@example.com: {}\n",
			`3: domains."bob@example.com": a domain has no '@'`},
		{"user with leading @", "upstream: imaps://h\nusers:\n  \"@example.com\": {}\n",
			`3: users."@example.com": a login name neither starts nor ends with '@'`},
		{"user with space", "upstream: imaps://h\nusers:\n  \"bob smith\": {}\n",
			`3: users."bob smith": name must be non-empty`},
		{"folded duplicate user", "upstream: imaps://h\nusers:\n  bob@example.com: {}\n  BOB@example.com: {}\n",
			`4: users."BOB@example.com": same name as "bob@example.com"`},
		{"duplicate key", "upstream: imaps://h\nmailbox: A\nmailbox: B\n",
			`3: mailbox: duplicate key (first on line 2)`},
		{"duplicate override key", "upstream: imaps://h\nusers:\n  u:\n    mailbox: A\n    mailbox: B\n",
			`5: users."u".mailbox: duplicate key (first on line 4)`},
		{"config in file", "config: /etc/other.yaml\n",
			`1: config: not allowed in the config file`},
		{"list for scalar", "upstream: imaps://h\nmailbox: [INBOX]\n",
			`2: mailbox: want a single value, got a list`},
		{"mapping for scalar", "upstream: imaps://h\nmax-sessions: {n: 1}\n",
			`2: max-sessions: want a single value, got a mapping`},
		{"string for int", "upstream: imaps://h\nmax-sessions: lots\n",
			`2: max-sessions: invalid number "lots"`},
		{"number for duration", "upstream: imaps://h\nidle-timeout: 600\n",
			`2: idle-timeout: invalid duration "600"`},
		{"bad bool", "upstream: imaps://h\nmark-seen: maybe\n",
			`2: mark-seen: invalid boolean "maybe"`},
		{"bad list item", "upstream: imaps://h\nproxy-protocol: [10.0.0.0/8, {a: b}]\n",
			`2: proxy-protocol: want a list of plain values`},
		{"bad cidr in list", "upstream: imaps://h\nproxy-protocol:\n  - 10.0.0.0/8\n  - 300.0.0.0/8\n",
			`3: proxy-protocol: invalid network "300.0.0.0/8"`},
		{"top level list", "- a\n- b\n",
			`1: want a mapping of settings, got a list`},
		{"top level scalar", "hello\n",
			`1: want a mapping of settings, got "hello"`},
		{"syntax error", "upstream: imaps://h\nusers:\n  bob: [\n",
			`3: YAML syntax: did not find expected node content`},
		{"two documents", "upstream: imaps://h\n---\nmailbox: X\n",
			`want one YAML document`},
		{"tab indentation", "upstream: imaps://h\nusers:\n\tbob: {}\n",
			`3: YAML syntax: found character that cannot start any token`},
		{"move into maildrop in users", "upstream: imaps://h\nusers:\n  bob@example.com:\n    delete-action: move:INBOX\n",
			`3: users."bob@example.com": delete-action move:INBOX moves into the served mailbox "INBOX"`},
		{"move into maildrop via domain mailbox", "upstream: imaps://h\ndelete-action: move:Trash\ndomains:\n  d.test: {mailbox: Trash}\n",
			`4: domains."d.test": delete-action move:Trash moves into the served mailbox "Trash"`},
		{"move into maildrop via user mailbox", "upstream: imaps://h\ndomains:\n  d.test: {delete-action: move:Old}\nusers:\n  u@d.test: {mailbox: Old}\n",
			`5: users."u@d.test": delete-action move:Old moves into the served mailbox "Old"`},
	} {
		path := writeFile(t, tc.content)
		checkErr(t, tc.name, []string{"--config", path}, nil, fmt.Sprintf("config %s:", path), tc.want)
	}
}

func TestFileErrorsAreOneLine(t *testing.T) {
	// yaml.v3 messages may span lines; ours never do.
	path := writeFile(t, "a: b: c\n  d\n\t- e: [\n")
	_, err := Load([]string{"--config", path}, nil)
	if err == nil || strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("error %q", err)
	}
}
