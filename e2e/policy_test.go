package e2e

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestPolicies checks the delete policies and actions of docs/policy.md other than
// honor/expunge (which TestSafety covers) against Dovecot, one bridge per
// configuration: each session deletes message 1 and retrieves message 2
// in full, then quits, and the mailbox is read back over IMAP. A last
// subtest recreates the mailbox during a session: nothing may be applied
// to the new one.
func TestPolicies(t *testing.T) {
	t.Parallel()
	d := startDovecot(t, false, "leave", "ondownload", "flag", "move", "recreate")
	e := &safetyEnv{d: d}

	// session logs in to b as user, deletes message 1, retrieves message
	// 2 and quits.
	session := func(t *testing.T, b *bridgeproc.Bridge, user string, before []testenv.StoredMessage) {
		t.Helper()
		p := e.login(t, b, user)
		p.OK("DELE 1")
		e.retr(t, p, 2, before[1].Body)
		e.quitOK(t, p)
		e.waitEnd(t, b, p, "quit")
	}

	t.Run("Leave", func(t *testing.T) {
		t.Parallel()
		const user = "leave"
		uids := appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")
		b := startBridge(t, d, "--delete-policy", "leave")

		p := e.login(t, b, user)
		if capa := capa(p); !strings.Contains(capa, "\nEXPIRE NEVER\n") {
			t.Errorf("CAPA with --delete-policy leave lacks EXPIRE NEVER:\n%s", capa)
		}
		e.quitOK(t, p)
		session(t, b, user, before)
		e.expectState(t, user, "after DELE 1, RETR 2 and QUIT with leave (nothing removed, 2 \\Seen)",
			withFlag(before, imap.FlagSeen, uids[1]))

		p = e.login(t, b, user)
		if n, _ := stat(p); n != len(before) {
			t.Errorf("STAT in the next session: %d, want all %d messages listed again", n, len(before))
		}
		e.quitOK(t, p)
	})

	t.Run("OnDownload", func(t *testing.T) {
		t.Parallel()
		const user = "ondownload"
		uids := appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")
		b := startBridge(t, d, "--delete-policy", "on-download")

		p := e.login(t, b, user)
		if capa := capa(p); !strings.Contains(capa, "\nEXPIRE 0\n") {
			t.Errorf("CAPA with --delete-policy on-download lacks EXPIRE 0:\n%s", capa)
		}
		// TOP is not a download.
		multi(p, "TOP 3 99999999")
		e.quitOK(t, p)
		session(t, b, user, before)
		e.expectState(t, user, "after DELE 1, RETR 2 and QUIT with on-download (both removed)",
			without(without(before, uids[0]), uids[1]))
	})

	t.Run("Flag", func(t *testing.T) {
		t.Parallel()
		const user = "flag"
		uids := appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")
		uidv := d.UIDValidity(t, user, "INBOX")
		b := startBridge(t, d, "--delete-action", "flag")

		session(t, b, user, before)
		want := withFlag(withFlag(before, imap.FlagSeen, uids[0], uids[1]), "$POP3Deleted", uids[0])
		e.expectState(t, user, "after DELE 1, RETR 2 and QUIT with --delete-action flag", want)

		// Hidden from the next POP3 session, kept for IMAP.
		p := e.login(t, b, user)
		if n, _ := stat(p); n != len(before)-1 {
			t.Errorf("STAT in the next session: %d messages, want %d ($POP3Deleted hidden)", n, len(before)-1)
		}
		for n, u := range list(p, "UIDL") {
			if u == dovecotUIDL(uint32(uids[0]), uidv) {
				t.Errorf("UIDL in the next session lists the flagged message as %d", n)
			}
		}
		e.quitOK(t, p)
	})

	t.Run("Move", func(t *testing.T) {
		t.Parallel()
		const user = "move"
		uids := appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")
		b := startBridge(t, d, "--delete-action", "move:Trash")

		session(t, b, user, before)
		e.expectState(t, user, "after DELE 1, RETR 2 and QUIT with --delete-action move:Trash",
			withFlag(without(before, uids[0]), imap.FlagSeen, uids[1]))
		trash := d.Messages(t, user, "Trash")
		if len(trash) != 1 || !bytes.Equal(trash[0].Body, before[0].Body) {
			t.Errorf("Trash after the move: %d messages, want message 1 alone:\n%s", len(trash), stateOf(trash))
		}
	})

	t.Run("MailboxRecreatedMidSession", func(t *testing.T) {
		t.Parallel()
		const user, mailbox = "recreate", "POP"
		msgs := smallCorpus()
		for _, m := range msgs {
			d.Append(t, user, mailbox, m.Raw)
		}
		oldV := d.UIDValidity(t, user, mailbox)
		b := startBridge(t, d, "--mailbox", mailbox)

		p := e.login(t, b, user)
		p.OK("DELE 1")
		p.OK("DELE 2")
		// Another client deletes the mailbox and creates it again with
		// the same messages: same UIDs, new UIDVALIDITY.
		c := d.Client(t, user)
		if err := c.Delete(mailbox).Wait(); err != nil {
			t.Fatalf("delete %s: %v", mailbox, err)
		}
		for _, m := range msgs {
			d.Append(t, user, mailbox, m.Raw)
		}
		if v := d.UIDValidity(t, user, mailbox); v == oldV {
			t.Fatalf("recreated %s kept UIDVALIDITY %d", mailbox, v)
		}
		recreated := d.Messages(t, user, mailbox)
		s := quit(p)
		e.waitEnd(t, b, p, "")
		// +OK would tell the client its deletes were done (RFC 1939 §6).
		if !strings.HasPrefix(s, "-ERR [SYS/TEMP]") {
			t.Errorf("QUIT after the mailbox was recreated: %q, want -ERR [SYS/TEMP]", s)
		}
		got := d.Messages(t, user, mailbox)
		if stateOf(got) != stateOf(recreated) {
			t.Errorf("the recreated mailbox changed at QUIT (UIDVALIDITY changed: nothing may be applied):\n got:\n%s\nwant:\n%s",
				stateOf(got), stateOf(recreated))
		}
	})
}

// capa sends CAPA and returns the capability lines, each ending in "\n",
// with a leading "\n" so tests can look for "\nNAME ...\n".
func capa(p *pop3client.Client) string {
	p.TB().Helper()
	_, body := multi(p, "CAPA")
	return "\n" + strings.ReplaceAll(string(body), "\r\n", "\n")
}
