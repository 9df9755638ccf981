package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestPolicyOverrides runs one popbridge with a --config file whose
// domains: and users: sections give four users four different settings
// (delete policy, action, mark-seen, mailbox and upstream), and checks
// each user's mailbox upstream after the same session: DELE 1, RETR 2,
// TOP 3 0, QUIT. The server-wide --upstream is a dead port, so a user
// reaches Dovecot only through an override. (A user without one would get
// -ERR [SYS/TEMP], which the bridge logs at level error, and startBridge
// fails a test on any error line.)
func TestPolicyOverrides(t *testing.T) {
	t.Parallel()
	const (
		ann   = "ann@keep.example"      // domain: leave, mark-seen false
		fax   = "fax@scan.example"      // domain: on-download, move:Archive
		boss  = "boss@scan.example"     // user over domain: honor, flag, mailbox POP, mark-seen false
		plain = "plain@nowhere.example" // user: upstream only; server defaults otherwise
	)
	d := startDovecot(t, false, ann, fax, boss, plain)
	up := "imap+insecure://" + d.IMAPAddr
	cfg := filepath.Join(t.TempDir(), "popbridge.yaml")
	writeFile(t, cfg, 0o600, fmt.Sprintf(`# TestPolicyOverrides
delete-policy: honor
delete-action: expunge
mark-seen: true
domains:
  keep.example:
    upstream: %[1]s
    delete-policy: leave
    mark-seen: false
  SCAN.example:
    upstream: %[1]s
    delete-policy: on-download
    delete-action: move:Archive
users:
  Boss@Scan.Example:
    delete-policy: honor
    delete-action: flag
    mailbox: POP
    mark-seen: false
  plain@nowhere.example:
    upstream: %[1]s
`, up))
	// startBridge's --upstream is the server default: a port nobody
	// listens on.
	b := startBridge(t, &testenv.Dovecot{IMAPAddr: "127.0.0.1:1"}, "--config", cfg)

	type seeded struct {
		mailbox string
		uids    []imap.UID
		before  []testenv.StoredMessage
	}
	seed := func(t *testing.T, user, mailbox string) seeded {
		t.Helper()
		var msgs []seedMessage
		for i := 1; i <= 4; i++ {
			msgs = append(msgs, seedMessage{Raw: matrixRaw(fmt.Sprintf("m%d", i))})
		}
		uids := seedMailbox(t, d, user, mailbox, msgs)
		return seeded{mailbox, uids, d.Messages(t, user, mailbox)}
	}
	// session does DELE 1, RETR 2, TOP 3 0 and QUIT, after checking the
	// CAPA EXPIRE the user's policy implies.
	session := func(t *testing.T, user string, s seeded, expire string) {
		t.Helper()
		p := dialPOP3(t, b.POP3)
		p.Login(user, password(user))
		if capa := capa(p); !strings.Contains(capa, "\nEXPIRE "+expire+"\n") {
			t.Errorf("CAPA after login lacks EXPIRE %s:\n%s", expire, capa)
		}
		if n, _ := stat(p); n != len(s.before) {
			t.Fatalf("STAT: %d messages, want the %d of %s", n, len(s.before), s.mailbox)
		}
		p.OK("DELE 1")
		if _, got := multi(p, "RETR 2"); string(got) != string(s.before[1].Body) {
			t.Errorf("RETR 2: %s", firstDiff(got, s.before[1].Body))
		}
		multi(p, "TOP 3 0")
		if q := quit(p); !strings.HasPrefix(q, "+OK") {
			t.Errorf("QUIT: %q", q)
		}
		waitSessionEnd(t, b, localPort(p))
	}
	expect := func(t *testing.T, user, mailbox string, want []testenv.StoredMessage) {
		t.Helper()
		if got := d.Messages(t, user, mailbox); stateOf(got) != stateOf(want) {
			t.Errorf("%s of %s:\n got:\n%s\nwant:\n%s", mailbox, user, stateOf(got), stateOf(want))
		}
	}
	nextStat := func(t *testing.T, user string, want int) {
		t.Helper()
		p := dialPOP3(t, b.POP3)
		p.Login(user, password(user))
		if n, _ := stat(p); n != want {
			t.Errorf("STAT in the next session of %s: %d, want %d", user, n, want)
		}
		quit(p)
	}

	// Before login the CAPA is the server default's.
	p := dialPOP3(t, b.POP3)
	if capa := capa(p); !strings.Contains(capa, "\nEXPIRE NEVER\n") {
		t.Errorf("CAPA before login (server default honor) lacks EXPIRE NEVER:\n%s", capa)
	}
	quit(p)

	t.Run("DomainLeaveNoSeen", func(t *testing.T) {
		t.Parallel()
		s := seed(t, ann, "INBOX")
		session(t, ann, s, "NEVER")
		expect(t, ann, "INBOX", s.before) // nothing applied, no \Seen
		nextStat(t, ann, 4)
		if mailboxExists(t, d, ann, "Archive") {
			t.Errorf("Archive of %s exists: another domain's action was used", ann)
		}
	})

	t.Run("DomainOnDownloadMove", func(t *testing.T) {
		t.Parallel()
		s := seed(t, fax, "INBOX")
		session(t, fax, s, "0")
		expect(t, fax, "INBOX", without(without(s.before, s.uids[0]), s.uids[1]))
		archive, ok := mailboxOrNil(t, d, fax, "Archive")
		got := placeText([]string{"m1", "m2"}, map[string][]testenv.StoredMessage{"Trash": archive})
		want := placeText([]string{"m1", "m2"}, map[string][]testenv.StoredMessage{"Trash": {
			{Body: s.before[0].Body}, {Body: s.before[1].Body, Flags: []imap.Flag{imap.FlagSeen}},
		}})
		if !ok || got != want {
			t.Errorf("Archive of %s (exists %v; shown as Trash):\n got:\n%s\nwant:\n%s", fax, ok, got, want)
		}
		nextStat(t, fax, 2)
	})

	t.Run("UserOverDomain", func(t *testing.T) {
		t.Parallel()
		inbox := seed(t, boss, "INBOX")
		s := seed(t, boss, "POP")
		session(t, boss, s, "NEVER")
		expect(t, boss, "POP", withFlag(withFlag(s.before, imap.FlagSeen, s.uids[0]), "$POP3Deleted", s.uids[0]))
		expect(t, boss, "INBOX", inbox.before)
		if mailboxExists(t, d, boss, "Archive") {
			t.Errorf("Archive of %s exists: the domain's action overrode the user's", boss)
		}
		nextStat(t, boss, 3)
	})

	t.Run("UserUpstreamOnly", func(t *testing.T) {
		t.Parallel()
		s := seed(t, plain, "INBOX")
		session(t, plain, s, "NEVER")
		expect(t, plain, "INBOX", withFlag(without(s.before, s.uids[0]), imap.FlagSeen, s.uids[1]))
		nextStat(t, plain, 3)
	})
}
