package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// upstreamMessages returns user's INBOX as Dovecot serves it (BODY.PEEK[])
// and checks that it holds exactly the corpus, byte for byte: a test that
// compares delivered mail with the upstream is only meaningful if the
// upstream is what the corpus says.
func upstreamMessages(t testing.TB, d *testenv.Dovecot, user string) []testenv.StoredMessage {
	t.Helper()
	msgs := d.Messages(t, user, "INBOX")
	c := corpus()
	if len(msgs) != len(c) {
		t.Fatalf("upstream %s: %d messages, want the %d of the corpus", user, len(msgs), len(c))
	}
	for i, m := range msgs {
		if !bytes.Equal(m.Body, c[i].Raw) {
			t.Fatalf("upstream %s UID %d: Dovecot serves %s differently from what was appended: %s",
				user, m.UID, c[i].Name, firstDiff(m.Body, c[i].Raw))
		}
		if m.Size != int64(len(m.Body)) {
			t.Fatalf("upstream %s UID %d: RFC822.SIZE %d but BODY[] has %d octets", user, m.UID, m.Size, len(m.Body))
		}
	}
	return msgs
}

var messageIDRE = regexp.MustCompile(`(?im)^Message-ID:\s*<([^@>]+)@e2e\.popbridge\.test>`)

// messageName returns the corpus name in msg's Message-ID header, or "".
func messageName(msg []byte) string {
	hdr := msg
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		hdr = msg[:i]
	}
	if i := bytes.Index(hdr, []byte("\r\n\r\n")); i >= 0 {
		hdr = hdr[:i]
	}
	m := messageIDRE.FindSubmatch(hdr)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// checkDelivered checks that got (the copies a client delivered, in any
// order) are exactly want, each once: same count, and for every upstream
// message one delivered copy with the same SHA-256. transform, when not
// nil, is applied to each upstream body first: it is the documented
// change the client makes on delivery.
func checkDelivered(t testing.TB, client string, want []testenv.StoredMessage, got [][]byte, transform func([]byte) []byte) {
	t.Helper()
	if transform == nil {
		transform = func(b []byte) []byte { return b }
	}
	byName := make(map[string][][]byte)
	for _, g := range got {
		byName[messageName(g)] = append(byName[messageName(g)], g)
	}
	if len(got) != len(want) {
		t.Errorf("%s delivered %d messages, want %d", client, len(got), len(want))
	}
	for _, w := range want {
		exp := transform(w.Body)
		name := messageName(w.Body)
		copies := byName[name]
		switch {
		case len(copies) == 0:
			t.Errorf("%s: message %q (UID %d, %d octets) not delivered", client, name, w.UID, len(w.Body))
		case len(copies) > 1:
			t.Errorf("%s: message %q delivered %d times", client, name, len(copies))
		case sha256.Sum256(copies[0]) != sha256.Sum256(exp):
			t.Errorf("%s: message %q (UID %d) differs from the upstream BODY[]: got %d octets, want %d; %s",
				client, name, w.UID, len(copies[0]), len(exp), firstDiff(copies[0], exp))
		}
	}
}

// firstDiff describes where got and want first differ.
func firstDiff(got, want []byte) string {
	n := min(len(got), len(want))
	i := 0
	for i < n && got[i] == want[i] {
		i++
	}
	if i == n && len(got) == len(want) {
		return "identical"
	}
	excerpt := func(b []byte) string {
		lo, hi := max(0, i-40), min(len(b), i+40)
		return fmt.Sprintf("%q", b[lo:hi])
	}
	return fmt.Sprintf("first difference at octet %d: got …%s…, want …%s…", i, excerpt(got), excerpt(want))
}

// crlfToLF is the change of clients that store mail with Unix line ends.
// Applied to the upstream body, where every line ends in CRLF, it is
// exactly reversible, so nothing else can hide behind it.
func crlfToLF(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
}

// readDir returns the contents of every regular file in dir, sorted by
// name.
func readDir(t testing.TB, dir string) [][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	var out [][]byte
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("read delivered mail: %v", err)
		}
		out = append(out, b)
	}
	return out
}

// readMaildir returns every message in a maildir's new/ and cur/.
func readMaildir(t testing.TB, dir string) [][]byte {
	t.Helper()
	return slices.Concat(readDir(t, filepath.Join(dir, "new")), readDir(t, filepath.Join(dir, "cur")))
}

// makeMaildir creates dir with the cur, new and tmp subdirectories.
func makeMaildir(t testing.TB, dir string) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("maildir: %v", err)
		}
	}
}

// stateOf describes a mailbox (UID, size and flags of every message) for
// comparing states before and after a session. \Recent is left out: it is
// session state, and the bridge's SELECT legitimately takes it away.
func stateOf(msgs []testenv.StoredMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		var flags []string
		for _, f := range m.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				flags = append(flags, string(f))
			}
		}
		slices.Sort(flags)
		fmt.Fprintf(&b, "UID %d %d octets flags (%s)\n", m.UID, m.Size, strings.Join(flags, " "))
	}
	return b.String()
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
// lower-case hex (var_expand's %x); TestSafety/UIDLStableAndDovecotCompatible
// checks this against Dovecot's own POP3 server.
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
