package reliability

import (
	"slices"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/imapscript"
	"github.com/popbridge/popbridge/policy"
)

// names lists the names of the commands popbridge sent after login.
func names(cs []imapscript.Command) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// TestNoUIDPlus: without UIDPLUS a plain EXPUNGE is sent only after UID
// SEARCH DELETED found nothing but the session's own messages; when
// another client flagged one too, nothing is expunged, our \Deleted is
// taken back, QUIT says so, and the other client's message is untouched.
func TestNoUIDPlus(t *testing.T) {
	caps := imapscript.Options{Caps: []string{"IMAP4rev1", "MOVE", "ID"}}
	t.Run("only ours flagged", func(t *testing.T) {
		fake := startFake(t, caps, 3)
		b := startBridge(t, bridgeOptions{upstream: fake.URL()})
		before := fake.Messages("alice", "INBOX")
		c := dialPOP3(t, b.addr)
		c.Login("alice", "secret")
		c.CmdPrefix("DELE 1", "+OK")
		quit(c, "+OK")
		b.waitSessions(slack)
		after := fake.Messages("alice", "INBOX")
		if len(after) != 2 || after[0].UID != before[1].UID {
			t.Fatalf("after QUIT: %v", summarize(after))
		}
		othersUnchanged(t, before, after, before[0].UID)
		sent := names(fake.Commands())
		i, j := slices.Index(sent, "UID SEARCH"), slices.Index(sent, "EXPUNGE")
		if i < 0 || j < i || slices.Contains(sent, "UID EXPUNGE") {
			t.Fatalf("sent %v; want UID SEARCH, then EXPUNGE, never UID EXPUNGE", sent)
		}
	})
	t.Run("another client's message flagged", func(t *testing.T) {
		fake := startFake(t, caps, 3)
		b := startBridge(t, bridgeOptions{upstream: fake.URL()})
		c := dialPOP3(t, b.addr)
		c.Login("alice", "secret")
		// Another IMAP client flags message 3 during the session.
		fake.AddFlags("alice", "INBOX", fake.Messages("alice", "INBOX")[2].UID, `\Deleted`)
		before := fake.Messages("alice", "INBOX")
		c.CmdPrefix("DELE 1", "+OK")
		quit(c, "-ERR [SYS/TEMP] some deleted messages not removed")
		b.waitSessions(slack)
		mailboxUnchanged(t, fake, "alice", before)
		if cs := fake.CommandsNamed("EXPUNGE", "CLOSE", "UID EXPUNGE"); len(cs) > 0 {
			t.Fatalf("sent %v with a foreign \\Deleted message in the mailbox", cs)
		}
	})
}

// TestNoMove: move:Trash without MOVE copies, then expunges only those
// UIDs; if the COPY fails nothing is removed.
func TestNoMove(t *testing.T) {
	caps := imapscript.Options{Caps: []string{"IMAP4rev1", "UIDPLUS", "ID"}}
	move := policy.Default
	move.Action = policy.Action{Kind: policy.Move, Mailbox: "Trash"}

	t.Run("copy then expunge", func(t *testing.T) {
		fake := startFake(t, caps, 3)
		b := startBridge(t, bridgeOptions{upstream: fake.URL(), policy: &move})
		before := fake.Messages("alice", "INBOX")
		c := dialPOP3(t, b.addr)
		c.Login("alice", "secret")
		c.CmdPrefix("DELE 2", "+OK")
		quit(c, "+OK")
		b.waitSessions(slack)
		othersUnchanged(t, before, fake.Messages("alice", "INBOX"), before[1].UID)
		if n := len(fake.Messages("alice", "INBOX")); n != 2 {
			t.Fatalf("%d messages left in INBOX, want 2", n)
		}
		trash := fake.Messages("alice", "Trash")
		if len(trash) != 1 || string(trash[0].Body) != string(before[1].Body) {
			t.Fatalf("Trash holds %v", summarize(trash))
		}
		sent := strings.Join(names(fake.Commands()), ",")
		if strings.Contains(sent, "MOVE") || !strings.Contains(sent, "UID COPY") {
			t.Fatalf("sent %s; want UID COPY, never MOVE", sent)
		}
		noUnscopedExpunge(t, fake)
	})
	t.Run("copy fails", func(t *testing.T) {
		fake := startFake(t, caps, 3)
		b := startBridge(t, bridgeOptions{upstream: fake.URL(), policy: &move})
		before := fake.Messages("alice", "INBOX")
		fake.AddRule(imapscript.Rule{At: imapscript.Copy, Step: imapscript.Cut})
		c := dialPOP3(t, b.addr)
		c.Login("alice", "secret")
		c.CmdPrefix("DELE 2", "+OK")
		quit(c, "-ERR [SYS/TEMP] some deleted messages not removed")
		b.waitSessions(slack)
		mailboxUnchanged(t, fake, "alice", before)
		if cs := fake.CommandsNamed("UID STORE", "UID EXPUNGE"); len(cs) > 0 {
			t.Fatalf("sent %v after the COPY failed", cs)
		}
	})
}
