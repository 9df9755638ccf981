package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	path := writeFile(t, `upstream: imaps://imap.example.net
delete-policy: leave
domains:
  example.com:
    delete-action: flag
    mailbox: POP
users:
  alice@example.com:
    delete-policy: on-download
    delete-dry-run: true
  scanner@example.com:
    delete-action: quarantine
`)
	c := mustLoad(t, []string{"--config", path, "--mark-seen=false"}, env{"POPBRIDGE_QUARANTINE_DAYS": "7"})
	at := func(line int) string { return fmt.Sprintf("config %s:%d", path, line) }
	for _, tc := range []struct {
		login, user, device string
		want                []ExplainLine
	}{
		{"alice@Example.com#Phone", "alice@Example.com", "phone", []ExplainLine{
			{"upstream", "imaps://imap.example.net:993", "server", at(1) + ": upstream"},
			{"mailbox", "POP", "domain", at(6)},
			{"auth", "passthrough", "server", "default"},
			{"delete-policy", "on-download", "user", at(9)},
			{"delete-action", "flag", "domain", at(5)},
			{"mark-seen", "false", "server", "--mark-seen"},
			{"delete-dry-run", "true", "user", at(10)},
			{"expire", "0", "user", at(9)},
		}},
		{"bob@other.org", "bob@other.org", "", []ExplainLine{
			{"upstream", "imaps://imap.example.net:993", "server", at(1) + ": upstream"},
			{"mailbox", "INBOX", "server", "default"},
			{"auth", "passthrough", "server", "default"},
			{"delete-policy", "leave", "server", at(2) + ": delete-policy"},
			{"delete-action", "expunge", "server", "default"},
			{"mark-seen", "false", "server", "--mark-seen"},
			{"delete-dry-run", "false", "server", "default"},
			{"expire", "NEVER", "server", at(2) + ": delete-policy"},
		}},
		{"scanner@example.com", "scanner@example.com", "", []ExplainLine{
			{"upstream", "imaps://imap.example.net:993", "server", at(1) + ": upstream"},
			{"mailbox", "POP", "domain", at(6)},
			{"auth", "passthrough", "server", "default"},
			{"delete-policy", "leave", "server", at(2) + ": delete-policy"},
			{"delete-action", "quarantine into POPBRIDGE-QUARANTINE for 7 days", "user", at(12)},
			{"mark-seen", "false", "server", "--mark-seen"},
			{"delete-dry-run", "false", "server", "default"},
			{"expire", "NEVER", "server", at(2) + ": delete-policy"},
		}},
	} {
		user, device, lines := c.Explain(tc.login)
		if user != tc.user || device != tc.device {
			t.Errorf("%s: user %q device %q", tc.login, user, device)
		}
		if !reflect.DeepEqual(lines, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.login, lines, tc.want)
		}
	}
}

func TestStoreNoneRefusesStatefulFeatures(t *testing.T) {
	for _, args := range [][]string{
		{"--store", "none", "--delete-dry-run"},
		{"--store", "none", "--delete-action", "quarantine"},
	} {
		_, err := Load(append([]string{"--upstream", "imaps://imap.example.com"}, args...), nil)
		if err == nil || !strings.HasPrefix(err.Error(), "--store: none, but ") {
			t.Errorf("%q: %v", args, err)
		}
	}
	path := writeFile(t, "users:\n  bob:\n    delete-dry-run: true\n")
	_, err := Load([]string{"--upstream", "imaps://imap.example.com", "--config", path, "--store", "none"}, nil)
	if err == nil || !strings.Contains(err.Error(), path+":2") {
		t.Errorf("override: %v", err)
	}
	if _, err := Load([]string{"--upstream", "imaps://imap.example.com", "--store", "mysql://x"}, nil); err == nil {
		t.Error("a bad store URL loads")
	}
	c := mustLoad(t, []string{"--upstream", "imaps://imap.example.com"}, nil)
	if c.StoreExplicit() || c.Store != "sqlite:popbridge.db" {
		t.Errorf("default store %q explicit %v", c.Store, c.StoreExplicit())
	}
	if c := mustLoad(t, []string{"--upstream", "imaps://imap.example.com"}, env{"POPBRIDGE_STORE": "sqlite:x.db"}); !c.StoreExplicit() {
		t.Error("POPBRIDGE_STORE is not explicit")
	}
}
