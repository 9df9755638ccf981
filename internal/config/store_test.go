package config

import (
	"strings"
	"testing"
)

// TestStoreNoneRefusesOAuth: --store none with an OAuth2 auth mode (here
// in a domain override) is a one-line error naming the flag.
func TestStoreNoneRefusesOAuth(t *testing.T) {
	f := writeFile(t, "upstream: imaps://imap.example.com\nstore: none\nsecret-key-file: k\nproviders:\n  p: {type: m365, client-id: x}\n"+
		"domains:\n  example.com:\n    auth: oauth2-user\n    provider: p\n")
	checkErr(t, "none and oauth2", []string{"--config", f}, nil, "store: none, but an oauth2 auth mode needs the state store")
}

// TestStoreURLErrorHidesPassword: a bad --store is refused without
// showing the password it holds.
func TestStoreURLErrorHidesPassword(t *testing.T) {
	args := []string{"--upstream", "imaps://imap.example.com", "--store", "redis://u:hunter2@h"}
	checkErr(t, "bad store URL", args, nil, "--store:", "unknown store URL", "xxxxx")
	if _, err := Load(args, env(nil).get); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad store URL: %v (the password must not show)", err)
	}
}
