package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

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
	client := newLeaveOnServer(t, user)
	fetch := func(b *bridgeproc.Bridge) int { return client.fetch(b.POP3) }
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
	d1.RebuildIndex(t, user)
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

// leaveOnServer is an mpop account that keeps the mail on the server and
// downloads only messages whose UIDL it has not seen.
type leaveOnServer struct {
	t                  *testing.T
	bin, home, maildir string
	user               string
}

func newLeaveOnServer(t *testing.T, user string) *leaveOnServer {
	c := &leaveOnServer{t: t, bin: testenv.RequireTool(t, "mpop"), home: t.TempDir(), user: user}
	c.maildir = filepath.Join(c.home, "Maildir")
	makeMaildir(t, c.maildir)
	return c
}

// fetch polls the POP3 server at addr and returns how many messages it
// downloaded. mpop keys its UIDL list by host and user, not port, so
// another port on 127.0.0.1 is the same server to it, as a DNS switch is
// to a real client.
func (c *leaveOnServer) fetch(addr string) int {
	t := c.t
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(c.home, "mpoprc")
	writeFile(t, conf, 0o600, fmt.Sprintf("defaults\ntls off\nauth user\nkeep on\nonly_new on\nreceived_header off\n\n"+
		"account default\nhost %s\nport %s\nuser %s\npasswordeval echo %s\nuidls_file %s\ndelivery maildir %s\n",
		host, port, c.user, password(c.user), filepath.Join(c.home, "uidls"), c.maildir))
	before := len(readMaildir(t, c.maildir))
	cmd := exec.Command(c.bin, "--file="+conf, "--quiet")
	cmd.Env = append(os.Environ(), "HOME="+c.home)
	runTool(t, cmd)
	return len(readMaildir(t, c.maildir)) - before
}

// TestUIDLReplicas runs two popbridge processes on one PostgreSQL store in
// front of one Dovecot, as replicas behind a load balancer, while a
// leave-on-server client polls them in turn: new mail recorded by one is
// shown with the same UIDL by the other, and after the index is rebuilt
// the replica that did not rematch reads the other's result: the client
// downloads nothing twice.
func TestUIDLReplicas(t *testing.T) {
	t.Parallel()
	if _, err := testenv.PostgresBinDir(); err != nil && !testenv.InCI() {
		t.Skipf("PostgreSQL: %v", err)
	}
	const user = "replicated"
	d := startDovecot(t, false, user)
	msgs := smallCorpus()
	appendMessages(t, d, user, msgs)
	pg := testenv.StartPostgres(t)
	flags := []string{"--store", pg.NewDatabase(t)}
	b1, b2 := startBridge(t, d, flags...), startBridge(t, d, flags...)
	client := newLeaveOnServer(t, user)

	if n := client.fetch(b1.POP3); n != len(msgs) {
		t.Fatalf("first poll (replica 1): %d messages, want %d", n, len(msgs))
	}
	if n := client.fetch(b2.POP3); n != 0 {
		t.Fatalf("replica 2: %d messages, want none", n)
	}
	d.Append(t, user, "INBOX", message("new", "New on replica 2", nil, "New.\r\n"))
	if n := client.fetch(b2.POP3); n != 1 {
		t.Fatalf("new mail on replica 2: %d messages, want 1", n)
	}
	if n := client.fetch(b1.POP3); n != 0 {
		t.Fatalf("replica 1 after replica 2 recorded the new mail: %d messages, want none", n)
	}

	d.RebuildIndex(t, user)
	if n := client.fetch(b2.POP3); n != 0 {
		t.Fatalf("after the rebuild (replica 2 rematches): %d messages, want none", n)
	}
	if n := client.fetch(b1.POP3); n != 0 {
		t.Fatalf("after the rebuild (replica 1 reads the rematch): %d messages, want none", n)
	}
}
