package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, func(k string) string { return env[k] }, &out, &errb, nil)
	return code, out.String(), errb.String()
}

// TestPolicyExplain: each setting with the level and the file line that
// set it, for the server, domain and user levels.
func TestPolicyExplain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "popbridge.yaml")
	err := os.WriteFile(path, []byte(`upstream: imaps://imap.example.net
delete-policy: leave
domains:
  example.com:
    delete-action: flag
    upstream: imaps://imap.example.com
users:
  alice@example.com:
    delete-policy: on-download
    delete-dry-run: true
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, nil, "policy", "explain", "Alice@example.com#Phone", "--config", path, "--mark-seen=false")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{
		"login          Alice@example.com#Phone\n",
		"upstream user  Alice@example.com\n",
		"device         phone\n",
		fmt.Sprintf("upstream        imaps://imap.example.com:993  domain  config %s:6\n", path),
		"mailbox         INBOX                         server  default\n",
		"auth            passthrough                   server  default\n",
		fmt.Sprintf("delete-policy   on-download                   user    config %s:9\n", path),
		fmt.Sprintf("delete-action   flag                          domain  config %s:5\n", path),
		"mark-seen       false                         server  --mark-seen\n",
		fmt.Sprintf("delete-dry-run  true                          user    config %s:10\n", path),
		fmt.Sprintf("expire          0                             user    config %s:9\n", path),
		"store  sqlite:popbridge.db (default, opened at first use): journal on, device views on\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCmd(t, nil, "policy", "explain", "bob@other.org", "--config", path)
	if !strings.Contains(out, "store  sqlite:popbridge.db (default, opened at first use): journal off, device views off\n") {
		t.Errorf("bob's store line:\n%s", out)
	}
	if code != 0 || !strings.Contains(out, fmt.Sprintf("delete-policy   leave                         server  config %s:2: delete-policy\n", path)) ||
		!strings.Contains(out, "upstream        imaps://imap.example.net:993  server") || strings.Contains(out, "\ndevice ") {
		t.Errorf("bob: exit %d\n%s", code, out)
	}

	code, _, errs = runCmd(t, nil, "policy", "explain")
	if code != 2 || !strings.HasPrefix(errs, "popbridge policy explain: want a login name") || strings.Count(errs, "\n") != 1 {
		t.Errorf("no login: exit %d, %q", code, errs)
	}
	code, _, errs = runCmd(t, nil, "policy", "explain", "bob", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 2 || strings.Count(errs, "\n") != 1 {
		t.Errorf("missing file: exit %d, %q", code, errs)
	}
}

// The store line of policy explain never shows the store URL's password.
func TestPolicyExplainRedactsStorePassword(t *testing.T) {
	code, out, errs := runCmd(t, nil, "policy", "explain", "bob@example.org", "--upstream", "imaps://imap.example.net",
		"--store", "postgres://popbridge:s3cret-pw@127.0.0.1:1/popbridge")
	if code != 0 || strings.Contains(out+errs, "s3cret-pw") || !strings.Contains(out, "store  postgres://popbridge:xxxxx@127.0.0.1:1/popbridge (--store)") {
		t.Errorf("exit %d, stderr %q, output:\n%s", code, errs, out)
	}
}
