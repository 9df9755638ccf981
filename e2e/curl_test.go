package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

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
		args = append(args, bridgeURL(b, user, password(user), path))
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
