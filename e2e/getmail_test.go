package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestGetmail delivers the corpus with getmail6's SimplePOP3Retriever into
// a Maildir, leaving the mail on the server, twice: the second run
// delivers nothing (getmail remembers the UIDLs in its getmaildir).
// getmail refuses to run as root, so as root it runs as
// testenv.UnprivilegedUser.
//
// What getmail changes:
//   - delivered_to = false and received = false stop the Delivered-To and
//     Received fields it would prepend;
//   - it always removes every Return-Path field and prepends one built from
//     the first, "Return-Path: <alice@example.org>": the corpus starts with
//     exactly that field, so the result is the same octets;
//   - it writes LF line ends (CRLF -> LF), applied to the upstream body
//     before comparing.
//
// getmail parses each message with Python's email package and writes it
// out again; that these three are its only changes is what the byte
// comparison proves.
func TestGetmail(t *testing.T) {
	t.Parallel()
	getmail := testenv.RequireTool(t, "getmail")
	const user = "getmail"
	d := startDovecot(t, false, user)
	appendCorpus(t, d, user)
	want := upstreamMessages(t, d, user)
	b := startBridge(t, d)

	dir := testenv.WritableTempDir(t)
	maildir := filepath.Join(dir, "Maildir")
	getmailDir := filepath.Join(dir, "getmail")
	makeMaildir(t, maildir)
	if err := os.Mkdir(getmailDir, 0o700); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(b.POP3)
	rc := filepath.Join(getmailDir, "getmailrc")
	writeFile(t, rc, 0o600, fmt.Sprintf(`[retriever]
type = SimplePOP3Retriever
server = %s
port = %s
username = %s
password = %s

[destination]
type = Maildir
path = %s/

[options]
verbose = 2
read_all = false
delete = false
delivered_to = false
received = false
message_log = %s
`, host, port, user, password(user), maildir, filepath.Join(getmailDir, "log")))
	if err := testenv.ChownUnprivileged(dir); err != nil {
		t.Fatal(err)
	}

	run := func() {
		t.Helper()
		cmd := testenv.CommandAsUnprivileged(t.Context(), getmail, "--rcfile="+rc, "--getmaildir="+getmailDir)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		cmd.Dir = dir
		runTool(t, cmd)
	}

	run()
	checkDelivered(t, "getmail (first run)", want, readMaildir(t, maildir), crlfToLF)
	run()
	checkDelivered(t, "getmail (second run: nothing new)", want, readMaildir(t, maildir), crlfToLF)
	if after := d.Messages(t, user, "INBOX"); len(after) != len(want) {
		t.Errorf("upstream after getmail with delete = false: %d messages, want %d", len(after), len(want))
	}
}
