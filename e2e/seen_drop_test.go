package e2e

import (
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// A connection that drops after RETR: Dovecot's own POP3 server (2.3.19)
// has already set \Seen on the message when RETR answered, so it stays
// read; popbridge sets \Seen only at QUIT, so nothing changes. The
// second is popbridge's contract (docs/policy.md) and is what this test
// pins; the first is what docs/policy.md says of Dovecot, checked here so
// the doc cannot drift from it again.
func TestSeenAfterDroppedRetrVersusDovecot(t *testing.T) {
	t.Parallel()
	d := startDovecot(t, true, "viadovecot", "viabridge")
	b := startBridge(t, d)
	appendMessages(t, d, "viadovecot", smallCorpus()[:2])
	appendMessages(t, d, "viabridge", smallCorpus()[:2])

	seen := func(user string) []bool {
		t.Helper()
		var out []bool
		for _, m := range d.Messages(t, user, "INBOX") {
			out = append(out, hasFlag(m.Flags, imap.FlagSeen))
		}
		return out
	}
	if s := seen("viadovecot"); s[0] || s[1] {
		t.Fatalf("messages start \\Seen: %v", s)
	}

	// Dovecot's POP3: RETR 1, then the connection drops without QUIT.
	p := dialPOP3(t, d.POP3Addr)
	p.Login("viadovecot", password("viadovecot"))
	multi(p, "RETR 1")
	drop(p, false)
	// Dovecot sets it when its POP3 process notices the drop; the bound
	// only keeps a broken Dovecot from hanging the test.
	deadline := time.Now().Add(2 * time.Minute)
	for s := seen("viadovecot"); !s[0]; s = seen("viadovecot") {
		if time.Now().After(deadline) {
			t.Fatalf("Dovecot %s left message 1 unseen after RETR and a drop (docs/policy.md says it sets \\Seen): %v", d.Version, s)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// popbridge: the same, and nothing changes upstream.
	p = dialPOP3(t, b.POP3)
	p.Login("viabridge", password("viabridge"))
	multi(p, "RETR 1")
	drop(p, false)
	waitSessionEnd(t, b, localPort(p))
	if s := seen("viabridge"); s[0] || s[1] {
		t.Fatalf("popbridge set \\Seen without QUIT: %v", s)
	}

	// With QUIT, popbridge marks the message it delivered (--mark-seen).
	p = dialPOP3(t, b.POP3)
	p.Login("viabridge", password("viabridge"))
	multi(p, "RETR 1")
	quit(p)
	waitSessionEnd(t, b, localPort(p))
	if s := seen("viabridge"); !s[0] || s[1] {
		t.Fatalf("after RETR 1 and QUIT: \\Seen %v, want message 1 only", s)
	}
}
