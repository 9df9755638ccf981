package config

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/policy"
)

const examplePath = "../../deploy/popbridge.example.yaml"

// The shipped example loads, sets every key that makes sense there, and means what its comments say.
func TestExampleFile(t *testing.T) {
	c := mustLoad(t, []string{"--config", examplePath}, nil)
	if len(c.Warnings()) != 0 {
		t.Errorf("example warns: %q", c.Warnings())
	}
	for _, s := range settings {
		switch s.name {
		case "config", "demo", "upstream-ca": // meaningless or a file the example cannot ship
			continue
		}
		if !strings.HasPrefix(c.Where(s.name), "config "+examplePath+":") {
			t.Errorf("example does not set %s", s.name)
		}
	}
	if c.Upstream.String() != "imaps://imap.example.net:993" || c.CacheMaxAge != time.Hour || len(c.ProxyProtocol) != 2 {
		t.Errorf("example: %q %v %v", c.Upstream, c.CacheMaxAge, c.ProxyProtocol)
	}

	r := c.Resolver()
	r.Default.Provider = "" // every user inherits provider m365; the cases compare the rest
	for _, tc := range []struct {
		user string
		want policy.Settings
	}{
		{"someone@example.net", policy.Settings{Upstream: "imaps://imap.example.net:993", Mailbox: "INBOX", Policy: policy.Default}},
		{"alice@customer.example", policy.Settings{Upstream: "imaps://imap.customer.example:993", Mailbox: "INBOX",
			Policy: policy.Policy{Delete: policy.Leave, Action: policy.Action{Kind: policy.Expunge}, MarkSeen: true}}},
		{"Scanner@Customer.Example", policy.Settings{Upstream: "imaps://imap.customer.example:993", Mailbox: "INBOX",
			Policy: policy.Policy{Delete: policy.OnDownload, Action: policy.Action{Kind: policy.Move, Mailbox: "Trash"}, MarkSeen: false}}},
		{"voicemail@example.net", policy.Settings{Upstream: "imaps://imap.example.net:993", Mailbox: "Voicemail",
			Policy: policy.Policy{Delete: policy.Honor, Action: policy.Action{Kind: policy.Flag}, MarkSeen: true}}},
		{"printer@contoso.example", policy.Settings{Upstream: "imaps://outlook.office365.com:993", Mailbox: "INBOX",
			Policy: policy.Default, Auth: AuthOAuth2User}},
	} {
		if got := r.Resolve(tc.user); got != tc.want {
			t.Errorf("Resolve(%q) = %+v, want %+v", tc.user, got, tc.want)
		}
	}
}

func TestWarnings(t *testing.T) {
	file := writeFile(t, `upstream: imap+insecure://127.0.0.1:1143
users:
  u@d.test: {upstream: "imap+insecure://dovecot:143"}
  v@d.test: {upstream: "imap+insecure://localhost"}
`)
	c := mustLoad(t, []string{"--config", file, "--idle-timeout", "1m", "--plaintext-auth", "always",
		"--prelogin-idle-timeout", "5m"}, nil)
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{
		"--idle-timeout: 1m0s is below RFC 1939's 10-minute autologout minimum",
		"--prelogin-idle-timeout: 5m0s exceeds prelogin-timeout 3m0s",
		"--plaintext-auth: always",
		`users."u@d.test": imap+insecure://dovecot:143 sends passwords without TLS`,
	} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings %q lack %q", w, want)
		}
	}
	if strings.Contains(w, "127.0.0.1") || strings.Contains(w, "localhost") {
		t.Errorf("loopback upstream warned about: %q", w)
	}
	c = mustLoad(t, []string{"--demo", "--upstream", "imaps://x"}, nil)
	if !slices.Contains(c.Warnings(), "--upstream: ignored with --demo") {
		t.Errorf("demo warnings: %q", c.Warnings())
	}
}

// FuzzFile: no input panics, and every error is one line naming the file.
func FuzzFile(f *testing.F) {
	if b, err := os.ReadFile(examplePath); err == nil {
		f.Add(b)
	}
	f.Add([]byte("users:\n  bob: {delete-action: 'move:'}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Config{where: map[string]string{}}
		for i := range settings {
			_ = settings[i].set(c, settings[i].def)
		}
		err := parseFile(c, "f.yaml", data)
		if err != nil && (strings.ContainsAny(err.Error(), "\r\n") || !strings.HasPrefix(err.Error(), "config f.yaml")) {
			t.Errorf("bad error %q", err)
		}
	})
}
