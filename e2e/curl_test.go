package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testenv"
)

// toolTimeout bounds one run of an external client.
const toolTimeout = 60 * time.Second

// runTool runs cmd with a timeout and returns its stdout; a non-zero exit
// fails the test with stderr shown.
func runTool(t testing.TB, cmd *exec.Cmd) []byte {
	t.Helper()
	out, err := runToolStatus(t, cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return out
}

// runToolStatus runs cmd and returns its stdout and the error of Run,
// which carries stderr and the exit status.
func runToolStatus(t testing.TB, cmd *exec.Cmd) ([]byte, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return stdout.Bytes(), fmt.Errorf("%w\nstderr:\n%s", err, stderr.Bytes())
		}
		if testing.Verbose() && stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", filepath.Base(cmd.Path), stderr.Bytes())
		}
		return stdout.Bytes(), nil
	case <-time.After(toolTimeout):
		_ = cmd.Process.Kill()
		<-done
		return stdout.Bytes(), fmt.Errorf("killed after %v\nstderr:\n%s", toolTimeout, stderr.Bytes())
	}
}

// TestCurl fetches the corpus with curl's pop3:// support: the listing
// (LIST), UIDL and TOP n 0 as custom requests, and every message, which
// curl writes un-stuffed, exactly as the server's octets between the
// status line and the terminator.
func TestCurl(t *testing.T) {
	t.Parallel()
	curl := testenv.RequireTool(t, "curl")
	const user = "curl"
	d := startDovecot(t, false, user)
	appendCorpus(t, d, user)
	want := upstreamMessages(t, d, user)
	uidValidity := d.UIDValidity(t, user, "INBOX")
	b := startBridge(t, d)

	fetch := func(path string, extra ...string) []byte {
		t.Helper()
		args := append([]string{"-sS", "--max-time", "60"}, extra...)
		args = append(args, b.url(user, password(user), path))
		return runTool(t, exec.Command(curl, args...))
	}

	var list, uidl strings.Builder
	for i, m := range want {
		fmt.Fprintf(&list, "%d %d\r\n", i+1, len(m.Body))
		fmt.Fprintf(&uidl, "%d %s\r\n", i+1, dovecotUIDL(uint32(m.UID), uidValidity))
	}
	if got := string(fetch("/")); got != list.String() {
		t.Errorf("curl pop3://…/ (LIST):\n got %q\nwant %q", got, list.String())
	}
	if got := string(fetch("/", "-X", "UIDL")); got != uidl.String() {
		t.Errorf("curl -X UIDL:\n got %q\nwant %q", got, uidl.String())
	}

	dir := t.TempDir()
	var got [][]byte
	for i := range want {
		file := filepath.Join(dir, fmt.Sprintf("%d.eml", i+1))
		fetch(fmt.Sprintf("/%d", i+1), "-o", file)
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, body)

		top := fetch("/", "-X", fmt.Sprintf("TOP %d 0", i+1))
		if hdr := headerSection(want[i].Body); !bytes.Equal(top, hdr) {
			t.Errorf("curl -X 'TOP %d 0': %s", i+1, firstDiff(top, hdr))
		}
	}
	checkDelivered(t, "curl", want, got, nil)

	// curl sends QUIT after each transfer; a RETR marks \Seen (the default
	// --mark-seen), TOP does not, nothing is deleted.
	after := d.Messages(t, user, "INBOX")
	if len(after) != len(want) {
		t.Fatalf("after curl: %d messages upstream, want %d", len(after), len(want))
	}
	for i, m := range after {
		if m.UID != want[i].UID || !hasFlag(m.Flags, `\Seen`) {
			t.Errorf("after curl: UID %d flags %v, want UID %d with \\Seen", m.UID, m.Flags, want[i].UID)
		}
	}
}

// headerSection returns msg up to and including the blank line that ends
// its header (all of msg if there is no blank line): what TOP n 0 returns.
func headerSection(msg []byte) []byte {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+4]
	}
	return msg
}

// dovecotUIDL is Dovecot's default pop3_uidl_format %08Xu%08Xv: the UID
// and the UIDVALIDITY as 8 hex digits each. Dovecot's X modifier prints
// lower-case hex (var_expand's %x); TestUIDLMatchesDovecot checks this
// against Dovecot's own POP3 server.
func dovecotUIDL(uid, uidValidity uint32) string {
	return fmt.Sprintf("%08x%08x", uid, uidValidity)
}

// hasFlag reports whether flags holds flag (case-insensitively, as IMAP
// flags compare).
func hasFlag(flags []imap.Flag, flag imap.Flag) bool {
	for _, f := range flags {
		if strings.EqualFold(string(f), string(flag)) {
			return true
		}
	}
	return false
}
