package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestPoplib fetches the corpus with Python's poplib (testdata/
// poplib_fetch.py): STAT, LIST, UIDL, RETR and TOP n 0 of every message.
// poplib returns a message as a list of lines without their CRLF and with
// the dot-stuffing undone; the script joins them with CRLF, which for a
// CRLF message restores it exactly.
func TestPoplib(t *testing.T) {
	t.Parallel()
	python := testenv.RequireTool(t, "python3")
	const user = "poplib"
	d := startDovecot(t, false, user)
	appendCorpus(t, d, user)
	want := upstreamMessages(t, d, user)
	uidValidity := d.UIDValidity(t, user, "INBOX")
	b := startBridge(t, d)

	script, err := filepath.Abs(filepath.Join("testdata", "poplib_fetch.py"))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(b.POP3)
	out := t.TempDir()
	cmd := exec.Command(python, script, host, port, user, out)
	cmd.Stdin = strings.NewReader(password(user) + "\n")
	runTool(t, cmd)

	read := func(name string) []byte {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("poplib output: %v", err)
		}
		return data
	}

	var total int
	var list, uidl strings.Builder
	for i, m := range want {
		total += len(m.Body)
		fmt.Fprintf(&list, "%d %d\n", i+1, len(m.Body))
		fmt.Fprintf(&uidl, "%d %s\n", i+1, dovecotUIDL(uint32(m.UID), uidValidity))
	}
	if got, exp := string(read("stat.txt")), fmt.Sprintf("%d %d\n", len(want), total); got != exp {
		t.Errorf("STAT: got %q, want %q", got, exp)
	}
	if got := string(read("list.txt")); got != list.String() {
		t.Errorf("LIST:\n got %q\nwant %q", got, list.String())
	}
	if got := string(read("uidl.txt")); got != uidl.String() {
		t.Errorf("UIDL:\n got %q\nwant %q", got, uidl.String())
	}

	var got [][]byte
	for i, m := range want {
		n := i + 1
		got = append(got, read(fmt.Sprintf("%d.eml", n)))
		if octets, exp := string(read(fmt.Sprintf("%d.octets", n))), fmt.Sprintf("%d\n", len(m.Body)); octets != exp {
			t.Errorf("RETR %d: poplib counted %q octets, want %q", n, octets, exp)
		}
		if top, hdr := read(fmt.Sprintf("%d.top", n)), headerSection(m.Body); !bytes.Equal(top, hdr) {
			t.Errorf("TOP %d 0: %s", n, firstDiff(top, hdr))
		}
	}
	checkDelivered(t, "poplib", want, got, nil)
}
