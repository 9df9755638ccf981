package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"strings"
	"testing"
)

// parityExtras are messages that are not all CRLF, appended to the corpus
// for the parity test only: Dovecot serves bare LF as CRLF, and a POP3
// server must end the last line before the terminator, so neither is
// byte-identical to what was appended. Dovecot's POP3 server is the
// reference for what a client then gets.
var parityExtras = []corpusMessage{
	{"barelf", []byte("Subject: bare LF\nMessage-ID: <barelf@e2e.popbridge.test>\n\nline one\nline two\r\n.dot\nno final newline")},
	{"nofinal", []byte("Subject: no final CRLF\r\nMessage-ID: <nofinal@e2e.popbridge.test>\r\n\r\nbody without end")},
}

// TestDovecotParity runs the same POP3 commands against popbridge and
// against Dovecot's own POP3 server on the same mail store, for two users
// with identical mailboxes, and requires the same answers: STAT, LIST,
// UIDL, RETR and TOP n k bodies octet for octet, and the same mailbox
// state after a session that RETRs, TOPs, DELEs and QUITs. Status line
// texts are free.
func TestDovecotParity(t *testing.T) {
	t.Parallel()
	d := startDovecot(t, true, "viabridge", "viadovecot")
	msgs := append(corpus(), parityExtras...)
	for _, u := range []string{"viabridge", "viadovecot"} {
		appendMessages(t, d, u, msgs)
	}
	b := startBridge(t, d)

	bp := dialPOP3(t, b.POP3)
	bp.Login("viabridge", password("viabridge"))
	dp := dialPOP3(t, d.POP3Addr)
	dp.Login("viadovecot", password("viadovecot"))

	bn, bsize := stat(bp)
	dn, dsize := stat(dp)
	if bn != dn || bsize != dsize || bn != len(msgs) {
		t.Fatalf("STAT: popbridge %d %d, Dovecot %d %d (%d messages appended)", bn, bsize, dn, dsize, len(msgs))
	}
	if bl, dl := list(bp, "LIST"), list(dp, "LIST"); !maps.Equal(bl, dl) {
		t.Errorf("LIST: popbridge %v, Dovecot %v", bl, dl)
	}
	// The users' mailboxes have the same UIDs and (new) UIDVALIDITYs that
	// may differ, so UIDLs are compared by their UID half.
	bu, du := list(bp, "UIDL"), list(dp, "UIDL")
	for n := 1; n <= bn; n++ {
		if len(bu[n]) != 16 || len(du[n]) != 16 || bu[n][:8] != du[n][:8] {
			t.Errorf("UIDL %d: popbridge %q, Dovecot %q", n, bu[n], du[n])
		}
	}

	for n := 1; n <= bn; n++ {
		cmds := []string{fmt.Sprintf("RETR %d", n)}
		for _, k := range []int{0, 1, 4, 99999999} {
			cmds = append(cmds, fmt.Sprintf("TOP %d %d", n, k))
		}
		for _, cmd := range cmds {
			_, got := multi(bp, cmd)
			_, want := multi(dp, cmd)
			if !bytes.Equal(got, want) {
				t.Errorf("%s: popbridge and Dovecot differ: %s", cmd, firstDiff(got, want))
			}
		}
	}
	// Every message was RETR'd above by both; delete two and quit. (No
	// RSET here: Dovecot's RSET also forgets the RETRs, so that they do
	// not mark \Seen; docs/policy.md says a RETR'd message gets \Seen at QUIT.)
	for _, cmd := range []string{"DELE 2", "DELE 4"} {
		bp.OK(cmd)
		dp.OK(cmd)
	}
	if s := quit(bp); !strings.HasPrefix(s, "+OK") {
		t.Errorf("popbridge QUIT: %q", s)
	}
	if s := quit(dp); !strings.HasPrefix(s, "+OK") {
		t.Errorf("Dovecot QUIT: %q", s)
	}
	waitSessionEnd(t, b, localPort(bp))

	// Dovecot's POP3 marked every RETR'd message \Seen; so must popbridge.
	viaBridge := d.Messages(t, "viabridge", "INBOX")
	viaDovecot := d.Messages(t, "viadovecot", "INBOX")
	if g, w := stateOf(viaBridge), stateOf(viaDovecot); g != w {
		t.Errorf("mailbox after the session: via popbridge\n%s\nvia Dovecot's POP3\n%s", g, w)
	}
}
