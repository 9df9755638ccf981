package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestAdminToolsDovecot is the admin's day with a real Dovecot and the
// popbridge binary: two devices of one mailbox, the phone deletes, the
// desktop still downloads, the message leaves INBOX (into quarantine)
// only once both deleted; "popbridge journal --json" tells who; "popbridge
// restore" brings it back, queued and at once with a Dovecot master user;
// a dry run leaves the mailbox byte-identical. The upstream is checked
// over IMAP after each step.
func TestAdminToolsDovecot(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{MasterUser: &testenv.User{Name: "popbridge", Password: "master-secret"}})
	user, pass := "alice", "alice-pw"
	if err := d.AddUser(testenv.User{Name: user, Password: pass}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"invoice", "newsletter", "hello"} {
		d.Append(t, user, "INBOX", []byte(fmt.Sprintf("Message-ID: <%s@test>\r\nDate: Tue, 01 Dec 2026 08:00:00 +0000\r\nSubject: %s\r\n\r\nbody of %s\r\n", s, s, s)))
	}
	dir := t.TempDir()
	masterFile := filepath.Join(dir, "master-password")
	if err := os.WriteFile(masterFile, []byte("master-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"--upstream", "imap+insecure://" + d.IMAPAddr, "--store", "sqlite:state.db", "--data-dir", dir}
	p := opsStart(t, bridgeproc.Binary(t), append([]string{"--listen", "127.0.0.1:0", "--plaintext-auth", "always",
		"--delete-action", "quarantine"}, common...)...)

	session := func(device string) *pop3client.Client {
		c := opsDial(t, p.POP3, nil)
		c.MustLine("+OK")
		c.Login(user+"#"+device, pass)
		return c
	}
	subjects := func(mailbox string) []string {
		var out []string
		for _, m := range d.Messages(t, user, mailbox) {
			for _, l := range strings.Split(string(m.Body), "\r\n") {
				if s, ok := strings.CutPrefix(l, "Subject: "); ok {
					out = append(out, s)
				}
			}
		}
		return out
	}
	check := func(step, mailbox string, want ...string) {
		t.Helper()
		if got := subjects(mailbox); !slices.Equal(got, want) {
			t.Fatalf("%s: %s holds %q, want %q", step, mailbox, got, want)
		}
	}
	journal := func() []journalRow {
		t.Helper()
		code, out, errs := runCmd(t, nil, append([]string{"journal", "--user", user, "--json"}, common...)...)
		if code != 0 {
			t.Fatalf("popbridge journal: exit %d: %s", code, errs)
		}
		var rows []journalRow
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var r journalRow
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("journal line %q: %v", l, err)
			}
			rows = append(rows, r)
		}
		return rows
	}
	summary := func(rows []journalRow) []string {
		var out []string
		for _, r := range rows {
			out = append(out, strings.Join([]string{r.Device, r.Mailbox, r.MessageID, r.Action, r.Outcome}, " "))
		}
		return out
	}

	// The desktop is known; the phone deletes the invoice.
	desk := session("desktop")
	desk.OK("STAT")
	desk.OK("QUIT")
	phone := session("phone")
	if got := phone.OK("STAT"); !strings.HasPrefix(got, "+OK 3 ") {
		t.Fatalf("phone STAT %q", got)
	}
	phone.OK("DELE 1")
	phone.OK("QUIT")
	check("phone deleted, desktop has not", "INBOX", "invoice", "newsletter", "hello")
	if rows := journal(); len(rows) != 0 {
		t.Fatalf("journal after the phone's DELE: %q", summary(rows))
	}
	phone = session("phone")
	if got := phone.OK("STAT"); !strings.HasPrefix(got, "+OK 2 ") {
		t.Errorf("phone sees %q after deleting, want 2 messages", got)
	}
	phone.OK("QUIT")

	// The desktop still downloads it, then deletes it: now it leaves.
	desk = session("desktop")
	desk.OK("RETR 1")
	if body := string(desk.Multiline()); !strings.Contains(body, "Subject: invoice") {
		t.Fatalf("desktop RETR 1: %q", body)
	}
	desk.OK("DELE 1")
	desk.OK("QUIT")
	check("both deleted", "INBOX", "newsletter", "hello")
	check("both deleted", "POPBRIDGE-QUARANTINE", "invoice")
	rows := journal()
	if want := []string{"desktop INBOX invoice@test quarantine applied"}; !reflect.DeepEqual(summary(rows), want) {
		t.Fatalf("journal %q, want %q", summary(rows), want)
	}
	if r := rows[0]; r.User != user || r.ClientAddr != "127.0.0.1" || r.SessionID == "" || r.UID != 1 || r.UIDValidity == 0 ||
		r.Policy != "honor" || r.Date != "2026-12-01T08:00:00Z" || r.Size == 0 || r.Time == "" {
		t.Errorf("journal row %+v", r)
	}

	// A queued restore (no master user configured) happens at the next
	// login.
	code, out, errs := runCmd(t, nil, append([]string{"restore", "--user", user, "--message-id", "<invoice@test>"}, common...)...)
	if code != 0 || !strings.Contains(out, "queued") {
		t.Fatalf("restore: exit %d, %q %q", code, out, errs)
	}
	check("restore queued", "INBOX", "newsletter", "hello")
	c := session("tablet")
	if got := c.OK("STAT"); !strings.HasPrefix(got, "+OK 3 ") {
		t.Errorf("after the queued restore the tablet's STAT is %q, want 3 messages", got)
	}
	c.OK("QUIT")
	check("queued restore done", "INBOX", "newsletter", "hello", "invoice")
	check("queued restore done", "POPBRIDGE-QUARANTINE")

	// Quarantine again (every device deletes), then restore at once with
	// the Dovecot master user.
	for _, dev := range []string{"desktop", "phone", "tablet"} {
		c := session(dev)
		c.OK("DELE 3")
		c.OK("QUIT")
	}
	check("quarantined again", "INBOX", "newsletter", "hello")
	code, out, errs = runCmd(t, nil, append([]string{"restore", "--user", user, "--since", "1h",
		"--upstream-master-user", "popbridge", "--upstream-master-password-file", masterFile}, common...)...)
	if code != 0 || out != "restored 1 messages of alice\n" {
		t.Fatalf("restore with the master user: exit %d, %q %q", code, out, errs)
	}
	check("restored at once", "INBOX", "newsletter", "hello", "invoice")
	check("restored at once", "POPBRIDGE-QUARANTINE")
	want := []string{
		"desktop INBOX invoice@test quarantine restored",
		"tablet POPBRIDGE-QUARANTINE invoice@test restore applied",
		"tablet INBOX invoice@test quarantine restored",
		" POPBRIDGE-QUARANTINE invoice@test restore applied",
	}
	if got := summary(journal()); !reflect.DeepEqual(got, want) {
		t.Errorf("journal\n got %q\nwant %q", got, want)
	}

	// A dry run of on-download leaves the mailbox byte-identical and
	// journals what it would have done (for bob, whose mailbox has no
	// other devices holding messages back).
	if err := d.AddUser(testenv.User{Name: "bob", Password: "bob-pw"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"newsletter", "hello"} {
		d.Append(t, "bob", "INBOX", []byte(fmt.Sprintf("Message-ID: <%s@test>\r\nSubject: %s\r\n\r\nbody\r\n", s, s)))
	}
	before := d.Messages(t, "bob", "INBOX")
	dry := opsStart(t, bridgeproc.Binary(t), append([]string{"--listen", "127.0.0.1:0", "--plaintext-auth", "always",
		"--delete-policy", "on-download", "--delete-dry-run"}, common...)...)
	c = opsDial(t, dry.POP3, nil)
	c.MustLine("+OK")
	c.Login("bob#scanner", "bob-pw")
	c.OK("RETR 1")
	c.Multiline()
	c.OK("DELE 2")
	c.OK("QUIT")
	if after := d.Messages(t, "bob", "INBOX"); !sameStored(before, after) {
		t.Errorf("dry run changed the mailbox:\n%+v\n%+v", before, after)
	}
	code, out, errs = runCmd(t, nil, append([]string{"journal", "--user", "bob", "--since", "1h"}, common...)...)
	if code != 0 || strings.Count(out, "dry-run") != 2 || !strings.HasPrefix(out, "ID ") {
		t.Errorf("journal table for bob: exit %d %q\n%s", code, errs, out)
	}
	user = "bob"
	got := summary(journal())
	if want := []string{"scanner INBOX newsletter@test expunge dry-run", "scanner INBOX hello@test expunge dry-run"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dry-run rows %q, want %q", got, want)
	}
}

// sameStored compares messages byte for byte with their flags, except
// \Recent, which belongs to the IMAP session that looked.
func sameStored(a, b []testenv.StoredMessage) bool {
	norm := func(l []testenv.StoredMessage) []testenv.StoredMessage {
		out := slices.Clone(l)
		for i := range out {
			out[i].Flags = slices.DeleteFunc(slices.Clone(out[i].Flags), func(f imap.Flag) bool { return f == `\Recent` })
			if len(out[i].Flags) == 0 {
				out[i].Flags = nil
			}
		}
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}
