package e2e

import (
	"strings"
	"testing"
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
	inUse := func(t *testing.T, loginName, user string) *pop3Client {
		t.Helper()
		p := dialPOP3(t, b.Addr)
		p.ok("USER " + loginName)
		if s := p.cmd("PASS " + password(user)); !strings.HasPrefix(s, "-ERR [IN-USE]") {
			t.Fatalf("second login as %s while a session is open: %q, want -ERR [IN-USE]", loginName, s)
		}
		return p
	}

	t.Run("Quit", func(t *testing.T) {
		t.Parallel()
		const user = "lockquit"
		uids := appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")

		first := dialPOP3(t, b.Addr)
		first.login(user, password(user))
		first.ok("DELE 1")
		second := inUse(t, user, user)
		// Dovecot folds the login name (auth_username_format %Lu); so does
		// the lock.
		third := inUse(t, strings.ToUpper(user), user)
		third.quit()

		// Another user is not affected.
		other := dialPOP3(t, b.Addr)
		other.login("lockother", password("lockother"))

		// The refused logins did not disturb the first session.
		if s := first.quit(); !strings.HasPrefix(s, "+OK") {
			t.Errorf("QUIT of the first session: %q", s)
		}
		b.waitSessionEnd(t, first.Port)
		if got, want := stateOf(d.Messages(t, user, "INBOX")), stateOf(without(before, uids[0])); got != want {
			t.Errorf("after the first session's DELE 1 and QUIT:\n got:\n%s\nwant:\n%s", got, want)
		}

		// The refused connection may log in now, and so may a new one
		// once that has quit.
		second.login(user, password(user))
		if n, _ := second.stat(); n != len(before)-1 {
			t.Errorf("STAT after the lock was released: %d, want %d", n, len(before)-1)
		}
		second.quit()
		b.waitSessionEnd(t, second.Port)
		p := dialPOP3(t, b.Addr)
		p.login(user, password(user))
		p.quit()
		other.quit()
	})

	t.Run("Drop", func(t *testing.T) {
		t.Parallel()
		const user = "lockdrop"
		appendMessages(t, d, user, smallCorpus())

		for _, reset := range []bool{false, true} {
			first := dialPOP3(t, b.Addr)
			first.login(user, password(user))
			inUse(t, user, user).quit()
			first.drop(reset)
			b.waitSessionEnd(t, first.Port)
			p := dialPOP3(t, b.Addr)
			p.login(user, password(user)) // fails the test unless the lock is gone
			p.quit()
		}
	})

	t.Run("IdleTimeout", func(t *testing.T) {
		t.Parallel()
		const user = "lockidle"
		appendMessages(t, d, user, smallCorpus())
		// Below RFC 1939's minimum, which the bridge warns about and allows.
		ib := startBridge(t, d, "--lock-session", "--idle-timeout", "2s")

		first := dialPOP3(t, ib.Addr)
		first.login(user, password(user))
		end := ib.waitSessionEnd(t, first.Port) // the bridge gives up on the idle session
		if end["result"] == "quit" {
			t.Errorf("idle session ended with result %v", end["result"])
		}
		p := dialPOP3(t, ib.Addr)
		p.login(user, password(user))
		p.quit()
	})
}
