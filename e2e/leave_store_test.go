package e2e

import (
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestLeaveWithStore: under --delete-policy leave, a client (Python's
// poplib) that deletes a message never sees it again when popbridge has a
// store, as each client keeps its own view (docs/policy.md, "Devices"),
// while the upstream keeps it for IMAP users; without a store it is listed
// again, as the docs say.
func TestLeaveWithStore(t *testing.T) {
	t.Parallel()
	python := testenv.RequireTool(t, "python3")
	script, err := filepath.Abs(filepath.Join("testdata", "poplib_leave.py"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		store     []string
		wantAfter int // UIDLs listed after deleting one of three
	}{
		{"with a store", []string{"--store", "sqlite:state.db", "--data-dir", t.TempDir()}, 2},
		{"without a store", []string{"--store", "none"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const user = "leaver"
			d := startDovecot(t, false, user)
			for _, s := range []string{"one", "two", "three"} {
				d.Append(t, user, "INBOX", []byte("Subject: "+s+"\r\n\r\nbody\r\n"))
			}
			b := startBridge(t, d, append([]string{"--delete-policy", "leave", "--plaintext-auth", "always"}, tc.store...)...)
			host, port, _ := net.SplitHostPort(b.POP3)
			fetch := func(dele ...string) []string {
				cmd := exec.Command(python, append([]string{script, host, port, user}, dele...)...)
				cmd.Stdin = strings.NewReader(password(user) + "\n")
				return strings.Fields(string(runTool(t, cmd)))
			}
			first := fetch()
			if len(first) != 3 {
				t.Fatalf("first fetch lists %q", first)
			}
			fetch(first[0])
			for i := 0; i < 2; i++ { // and it stays that way
				after := fetch()
				if len(after) != tc.wantAfter || (tc.wantAfter == 2 && slices.Contains(after, first[0])) {
					t.Errorf("fetch %d after DELE of %s lists %q", i+1, first[0], after)
				}
			}
			if n := len(d.Messages(t, user, "INBOX")); n != 3 {
				t.Errorf("leave changed the upstream: %d messages", n)
			}
		})
	}
}
