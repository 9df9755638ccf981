package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestMpop delivers the corpus with mpop into a maildir, keeping the mail
// on the server, three times: the first run gets everything, the second
// nothing (mpop remembers the UIDLs), and after a message is appended
// upstream the third gets only that one.
//
// What mpop changes: with "received_header off" it prepends nothing; it
// writes maildir files with LF line ends (CRLF -> LF), which the
// comparison applies to the upstream body and which is exactly reversible
// for an all-CRLF message.
func TestMpop(t *testing.T) {
	t.Parallel()
	mpop := testenv.RequireTool(t, "mpop")
	const user = "mpop"
	d := startDovecot(t, false, user)
	appendCorpus(t, d, user)
	want := upstreamMessages(t, d, user)
	b := startBridge(t, d)

	home := t.TempDir()
	maildir := filepath.Join(home, "Maildir")
	makeMaildir(t, maildir)
	host, port, _ := net.SplitHostPort(b.POP3)
	conf := filepath.Join(home, "mpoprc")
	// passwordeval keeps the password out of the file, but mpop still
	// wants its configuration private.
	writeFile(t, conf, 0o600, fmt.Sprintf(`defaults
tls off
auth user
keep on
only_new on
received_header off

account default
host %s
port %s
user %s
passwordeval echo %s
uidls_file %s
delivery maildir %s
`, host, port, user, password(user), filepath.Join(home, "uidls"), maildir))

	run := func() {
		t.Helper()
		cmd := exec.Command(mpop, "--file="+conf, "--quiet")
		cmd.Env = append(os.Environ(), "HOME="+home)
		runTool(t, cmd)
	}

	run()
	checkDelivered(t, "mpop (first run)", want, readMaildir(t, maildir), crlfToLF)

	run()
	checkDelivered(t, "mpop (second run: nothing new)", want, readMaildir(t, maildir), crlfToLF)

	d.Append(t, user, "INBOX", message("late", "Arrived after two runs", nil, "New mail.\r\n"))
	all := d.Messages(t, user, "INBOX")
	if len(all) != len(want)+1 {
		t.Fatalf("upstream after the append: %d messages, want %d (keep on: nothing deleted)", len(all), len(want)+1)
	}
	run()
	checkDelivered(t, "mpop (third run: only the new message)", all, readMaildir(t, maildir), crlfToLF)
	if after := d.Messages(t, user, "INBOX"); len(after) != len(all) {
		t.Errorf("upstream after mpop with keep on: %d messages, want %d", len(after), len(all))
	}
}
