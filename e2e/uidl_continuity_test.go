package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestUIDLContinuity runs the popbridge binary with --store in front of a
// Dovecot while mpop keeps the mail on the server (docs/migration.md): the
// mailbox's index is rebuilt (new UIDVALIDITY, new UIDs), then the user is
// moved to a second Dovecot by a per-user upstream override in the config
// file. mpop downloads nothing it has after either, and only the message
// that arrived meanwhile.
func TestUIDLContinuity(t *testing.T) {
	t.Parallel()
	mpop := testenv.RequireTool(t, "mpop")
	const user = "mover"
	d1 := startDovecot(t, false, user)
	d2 := startDovecot(t, false, user)
	msgs := smallCorpus()
	// A scanner's message has no Message-ID.
	scan := []byte("From: scanner@example.org\r\nTo: mover@example.org\r\nSubject: Scan\r\nDate: Mon, 01 Dec 2026 10:00:00 +0000\r\n\r\nscan\r\n")
	for _, d := range []*testenv.Dovecot{d1, d2} {
		appendMessages(t, d, user, msgs)
		d.Append(t, user, "INBOX", scan)
	}
	all := len(msgs) + 1

	dir := t.TempDir()
	home := t.TempDir()
	maildir := filepath.Join(home, "Maildir")
	makeMaildir(t, maildir)
	fetch := func(b *bridgeproc.Bridge) int {
		t.Helper()
		host, port, _ := net.SplitHostPort(b.POP3)
		conf := filepath.Join(home, "mpoprc")
		writeFile(t, conf, 0o600, fmt.Sprintf("defaults\ntls off\nauth user\nkeep on\nonly_new on\nreceived_header off\n\n"+
			"account default\nhost %s\nport %s\nuser %s\npasswordeval echo %s\nuidls_file %s\ndelivery maildir %s\n",
			host, port, user, password(user), filepath.Join(home, "uidls"), maildir))
		before := len(readMaildir(t, maildir))
		cmd := exec.Command(mpop, "--file="+conf, "--quiet")
		cmd.Env = append(os.Environ(), "HOME="+home)
		runTool(t, cmd)
		return len(readMaildir(t, maildir)) - before
	}
	// The config file sends the user to d1, later to d2.
	config := filepath.Join(dir, "popbridge.yaml")
	route := func(d *testenv.Dovecot) {
		writeFile(t, config, 0o600, fmt.Sprintf("users:\n  %s:\n    upstream: imap+insecure://%s\n", user, d.IMAPAddr))
	}
	route(d1)
	// The server-wide upstream answers nobody: only the route serves.
	flags := []string{"--store", "sqlite:state.db", "--data-dir", dir, "--config", config, "--upstream", "imap+insecure://127.0.0.1:9"}
	b := startBridge(t, d2, flags...)

	if n := fetch(b); n != all {
		t.Fatalf("first run: %d messages, want %d", n, all)
	}
	if n := fetch(b); n != 0 {
		t.Fatalf("second run: %d messages, want none", n)
	}

	// The index of d1's mailbox is rebuilt: new UIDVALIDITY, new UIDs.
	old := d1.UIDValidity(t, user, "INBOX")
	for time.Now().Unix() <= int64(old) {
		time.Sleep(50 * time.Millisecond) // Dovecot's UIDVALIDITY is the clock
	}
	files, _ := filepath.Glob(filepath.Join(d1.Dir, "home", user, "Maildir", "dovecot*"))
	for _, f := range files {
		if err := os.RemoveAll(f); err != nil {
			t.Fatal(err)
		}
	}
	if v := d1.UIDValidity(t, user, "INBOX"); v == old {
		t.Fatalf("UIDVALIDITY %d unchanged after removing %v", v, files)
	}
	d1.Append(t, user, "INBOX", message("late", "Arrived after the rebuild", nil, "New.\r\n"))
	d2.Append(t, user, "INBOX", message("late", "Arrived after the rebuild", nil, "New.\r\n"))
	if n := fetch(b); n != 1 {
		t.Fatalf("after the rebuild: %d messages, want only the new one", n)
	}

	// The user moves to d2 (same messages, its own UIDVALIDITY and UIDs):
	// a bridge restarted with the new route and the same store.
	route(d2)
	b2 := startBridge(t, d2, flags...)
	if n := fetch(b2); n != 0 {
		t.Fatalf("after the move to another Dovecot: %d messages, want none", n)
	}
	if got := len(d2.Messages(t, user, "INBOX")); got != all+1 {
		t.Fatalf("d2 has %d messages, want %d (keep on: nothing deleted)", got, all+1)
	}
}
