package e2e

import (
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// TestLockSession checks --lock-session through the binary against
// Dovecot: while a user has a session, a second login for the same user
// gets -ERR [IN-USE] (and stays in AUTHORIZATION, able to try again); the
// lock is released when the first session QUITs, drops, or times out, and
// never blocks another user.
func TestLockSession(t *testing.T) {
	t.Parallel()
	d := startDovecot(t, false, "lockquit", "lockdrop", "lockidle", "lockother")
	b := startBridge(t, d, "--lock-session")

	// inUse requires a login as user on a new connection to be refused
	// with [IN-USE] and returns that connection.
	inUse := func(t *testing.T, loginName, user string) *pop3client.Client {
		t.Helper()
		p := dialPOP3(t, b.POP3)
		p.OK("USER " + loginName)
		if s := p.Cmd("PASS " + password(user)); !strings.HasPrefix(s, "-ERR [IN-USE]") {
			t.Fatalf("second login as %s while a session is open: %q, want -ERR [IN-USE]", loginName, s)
		}
		return p
	}

	t.Run("Quit", func(t *testing.T) {
		t.Parallel()
		const user = "lockquit"
		uids := appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")

		first := dialPOP3(t, b.POP3)
		first.Login(user, password(user))
		first.OK("DELE 1")
		second := inUse(t, user, user)
		// Dovecot folds the login name (auth_username_format %Lu); so does
		// the lock.
		third := inUse(t, strings.ToUpper(user), user)
		quit(third)

		// Another user is not affected.
		other := dialPOP3(t, b.POP3)
		other.Login("lockother", password("lockother"))

		// The refused logins did not disturb the first session.
		if s := quit(first); !strings.HasPrefix(s, "+OK") {
			t.Errorf("QUIT of the first session: %q", s)
		}
		waitSessionEnd(t, b, localPort(first))
		if got, want := stateOf(d.Messages(t, user, "INBOX")), stateOf(without(before, uids[0])); got != want {
			t.Errorf("after the first session's DELE 1 and QUIT:\n got:\n%s\nwant:\n%s", got, want)
		}

		// The refused connection may log in now, and so may a new one
		// once that has quit.
		second.Login(user, password(user))
		if n, _ := stat(second); n != len(before)-1 {
			t.Errorf("STAT after the lock was released: %d, want %d", n, len(before)-1)
		}
		quit(second)
		waitSessionEnd(t, b, localPort(second))
		p := dialPOP3(t, b.POP3)
		p.Login(user, password(user))
		quit(p)
		quit(other)
	})

	t.Run("Drop", func(t *testing.T) {
		t.Parallel()
		const user = "lockdrop"
		appendMessages(t, d, user, smallCorpus())

		for _, reset := range []bool{false, true} {
			first := dialPOP3(t, b.POP3)
			first.Login(user, password(user))
			quit(inUse(t, user, user))
			drop(first, reset)
			waitSessionEnd(t, b, localPort(first))
			p := dialPOP3(t, b.POP3)
			p.Login(user, password(user)) // fails the test unless the lock is gone
			quit(p)
		}
	})

	t.Run("IdleTimeout", func(t *testing.T) {
		t.Parallel()
		const user = "lockidle"
		appendMessages(t, d, user, smallCorpus())
		// Below RFC 1939's minimum, which the bridge warns about and allows.
		ib := startBridge(t, d, "--lock-session", "--idle-timeout", "2s")

		first := dialPOP3(t, ib.POP3)
		first.Login(user, password(user))
		end := waitSessionEnd(t, ib, localPort(first)) // the bridge gives up on the idle session
		if end["result"] == "quit" {
			t.Errorf("idle session ended with result %v", end["result"])
		}
		p := dialPOP3(t, ib.POP3)
		p.Login(user, password(user))
		quit(p)
	})
}
