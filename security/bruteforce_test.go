package security

import (
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// Failed logins against a real Dovecot are answered after the failure
// delay, which doubles per client address up to the maximum across
// connections; the third failure closes the connection; each failure is
// one login_failed line with the client address.
func TestFailureDelayAndPenalty(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: "alice", Password: "right"}}})
	b := startBridge(t, "--upstream", "imap+insecure://"+d.IMAPAddr, "--auth-fail-delay", "50ms", "--auth-penalty-max", "300ms",
		"--proxy-protocol", "127.0.0.1/32", "--plaintext-auth", "always")
	want := []time.Duration{50, 100, 200, 300, 300, 300}
	var got []time.Duration
	var c *pop3client.Client
	for i := range want {
		if i%3 == 0 {
			if c != nil {
				c.ExpectClosed()
			}
			c = dialVia(t, b.POP3, "203.0.113.50")
		}
		c.Send("USER alice")
		c.Expect("+OK*")
		start := time.Now()
		if a := c.Cmd("PASS wrong"); a != errAuth {
			t.Fatalf("failure %d: %q", i+1, a)
		}
		got = append(got, time.Since(start))
	}
	c.ExpectClosed()
	for i := range want {
		if got[i] < want[i]*time.Millisecond {
			t.Errorf("failure %d answered after %v, want at least %v (all %v)", i+1, got[i], want[i]*time.Millisecond, got)
		}
	}
	if n := b.CountLog(map[string]string{"event": "login_failed", "client_ip": "203.0.113.50"}); n != len(want) {
		t.Errorf("%d login_failed lines for %d failures", n, len(want))
	}
	// Another address is not penalized for the first one's failures, and
	// the right password still works from the penalized one.
	other := dialVia(t, b.POP3, "198.51.100.50")
	other.Login("alice", "right")
	dialVia(t, b.POP3, "203.0.113.50").Login("alice", "right")
}

// An unreachable upstream is [SYS/TEMP], never [AUTH]: not delayed, not
// counted against the connection, and not a login_failed line that
// fail2ban would ban on.
func TestUnreachableUpstreamIsTemporary(t *testing.T) {
	dead := testenv.RefusedAddr(t)
	b := startBridge(t, "--upstream", "imap+insecure://"+dead, "--auth-fail-delay", "2s")
	c := dialPOP3(t, b.POP3)
	start := time.Now()
	for i := 0; i < 5; i++ {
		c.Send("USER alice")
		c.Expect("+OK*")
		if got := c.Cmd("PASS secret"); got != errTemp {
			t.Fatalf("attempt %d: %q", i+1, got)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("5 attempts took %v: the 2s failure delay was applied", d)
	}
	c.Send("AUTH PLAIN " + b64("\x00alice\x00secret"))
	c.Expect(errTemp)
	if n := b.CountLog(map[string]string{"event": "login_failed"}); n != 0 {
		t.Errorf("%d login_failed lines for an unreachable upstream", n)
	}
	b.WaitLog(map[string]string{"event": "login_temp_failure", "client_ip": "127.0.0.1"}, 5*time.Second)
}
