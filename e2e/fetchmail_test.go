package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// fetchmailNoMail is fetchmail's exit status when there was no mail.
const fetchmailNoMail = 1

// TestFetchmail delivers the corpus with fetchmail through an MDA that
// writes each message to its own file, in both of fetchmail's modes:
//
//   - keep, with client-side UIDL tracking (uidl, an idfile): everything is
//     delivered and stays upstream, and a second run fetches nothing;
//   - no keep (fetchall): everything is delivered and, under the honor
//     policy, the mailbox is empty upstream afterwards.
//
// The bridge here has no TLS, so the rcfile sets sslproto to the empty
// string (no TLS): fetchmail 6.4 otherwise sends STLS even when CAPA does
// not offer it, and gives up when it fails.
//
// What fetchmail would change, and the settings that stop it, so that what
// the MDA gets is compared with the upstream BODY[] unchanged:
//   - "set invisible" stops the Received field it would prepend;
//   - "no rewrite" stops it rewriting addresses in From/To/Cc/Reply-To;
//   - "no stripcr" keeps the CRs it strips by default when delivering to
//     an MDA;
//   - Return-Path stays because it delivers to an MDA (to SMTP it would
//     drop it), and it adds no Delivered-To or Status field by default.
func TestFetchmail(t *testing.T) {
	t.Parallel()
	fetchmail := testenv.RequireTool(t, "fetchmail")
	d := startDovecot(t, false, "fetchmail-keep", "fetchmail-nokeep")
	b := startBridge(t, d)

	t.Run("keep", func(t *testing.T) {
		t.Parallel()
		const user = "fetchmail-keep"
		appendCorpus(t, d, user)
		want := upstreamMessages(t, d, user)
		fm := newFetchmail(t, fetchmail, b, user, "keep")

		if err := fm.run(); err != nil {
			t.Fatalf("fetchmail keep, first run: %v", err)
		}
		checkDelivered(t, "fetchmail keep", want, readDir(t, fm.out), nil)
		if after := d.Messages(t, user, "INBOX"); len(after) != len(want) {
			t.Errorf("upstream after fetchmail keep: %d messages, want %d", len(after), len(want))
		}

		err := fm.run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != fetchmailNoMail {
			t.Errorf("fetchmail keep, second run: %v; want exit status %d (no mail): the UIDLs must be the same", err, fetchmailNoMail)
		}
		checkDelivered(t, "fetchmail keep (after the second run)", want, readDir(t, fm.out), nil)
	})

	t.Run("nokeep", func(t *testing.T) {
		t.Parallel()
		const user = "fetchmail-nokeep"
		appendCorpus(t, d, user)
		want := upstreamMessages(t, d, user)
		fm := newFetchmail(t, fetchmail, b, user, "no keep\n  fetchall")

		if err := fm.run(); err != nil {
			t.Fatalf("fetchmail no keep: %v", err)
		}
		checkDelivered(t, "fetchmail no keep", want, readDir(t, fm.out), nil)
		if after := d.Messages(t, user, "INBOX"); len(after) != 0 {
			t.Errorf("upstream after fetchmail no keep (honor policy): %d messages left, want none:\n%s", len(after), stateOf(after))
		}
	})
}

// fetchmailRun is one account's fetchmail setup: rcfile, idfile, pid file
// and the MDA's output directory, all under a private HOME.
type fetchmailRun struct {
	t    testing.TB
	bin  string
	home string
	rc   string
	out  string // one file per delivered message
}

// newFetchmail writes an rcfile polling the bridge for user with the
// given options.
func newFetchmail(t testing.TB, bin string, b *bridgeproc.Bridge, user, options string) *fetchmailRun {
	t.Helper()
	home := t.TempDir()
	fm := &fetchmailRun{t: t, bin: bin, home: home, rc: filepath.Join(home, "fetchmailrc"), out: filepath.Join(home, "out")}
	if err := os.Mkdir(fm.out, 0o755); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(b.POP3)
	// mktemp gives every message its own file. fetchmail only expands
	// %-escapes in the MDA string; the shell it runs does the rest.
	// fetchmail's rcfile strings take no escaped quotes, and t.TempDir
	// names have no white space, so the path goes in bare.
	mda := fmt.Sprintf(`cat > $(mktemp %s/msg.XXXXXXXX)`, fm.out)
	// fetchmail insists on an rcfile only its owner can read.
	writeFile(t, fm.rc, 0o600, fmt.Sprintf(`set no syslog
set no bouncemail
set invisible
set idfile "%s"
set pidfile "%s"

poll %s service %s protocol pop3 auth password uidl
  user "%s" there with password "%s" is "%s" here
  %s
  no rewrite
  no stripcr
  sslproto ''
  mda "%s"
`, filepath.Join(home, "fetchids"), filepath.Join(home, "fetchmail.pid"),
		host, port, user, password(user), user, options, mda))
	return fm
}

// run runs fetchmail once in the foreground and returns Run's error (an
// *exec.ExitError for a non-zero status).
func (fm *fetchmailRun) run() error {
	fm.t.Helper()
	cmd := exec.Command(fm.bin, "--nosyslog", "--nodetach", "-v", "-f", fm.rc)
	cmd.Env = append(os.Environ(), "HOME="+fm.home, "FETCHMAILHOME="+fm.home)
	cmd.Dir = fm.home
	out, err := runToolStatus(fm.t, cmd)
	if err != nil {
		fm.t.Logf("fetchmail -v output:\n%s", shortLines(out, 200))
	}
	return err
}

// shortLines cuts every line of out to at most n octets: fetchmail -v
// draws a progress mark per few lines of a message, which for the 20 MiB
// message is a line of megabytes.
func shortLines(out []byte, n int) string {
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		if len(l) > n {
			lines[i] = l[:n] + fmt.Sprintf("… (%d octets)", len(l))
		}
	}
	return strings.Join(lines, "\n")
}
