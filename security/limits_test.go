package security

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// healthyDemo is a logged-in demo session that must keep working while
// another session hits a limit.
func healthyDemo(t *testing.T, addr string) *pop3client.Client {
	c := dialPOP3(t, addr)
	c.Login("demo", "demo")
	return c
}

func stillWorks(t *testing.T, c *pop3client.Client) {
	t.Helper()
	if got := c.Cmd("STAT"); !strings.HasPrefix(got, "+OK ") {
		t.Fatalf("healthy session: STAT = %q", got)
	}
	c.Send("RETR 1")
	c.Expect("+OK*")
	c.Multiline()
	c.Send("QUIT")
	c.Expect("+OK*")
}

// Each limit of the real binary ends only the offending session, with
// -ERR or a clean close.
func TestLimitsBlackBox(t *testing.T) {
	t.Run("line length", func(t *testing.T) {
		b := startBridge(t, "--demo", "--max-line-length", "255")
		h := healthyDemo(t, b.POP3)
		c := dialPOP3(t, b.POP3)
		c.Send("USER " + strings.Repeat("x", 300))
		c.Expect("-ERR line too long")
		c.ExpectClosed()
		c = dialPOP3(t, b.POP3)
		io.WriteString(c.Conn(), strings.Repeat("y", 4<<20)) // no line end at all
		c.Expect("-ERR line too long")
		c.ExpectClosed()
		stillWorks(t, h)
	})
	// The timeouts leave seconds of headroom over the client's pace, and
	// only lower bounds are checked: a loaded machine may end a session
	// late, never early.
	t.Run("pre-login idle and total", func(t *testing.T) {
		b := startBridge(t, "--demo", "--prelogin-idle-timeout", "2s", "--prelogin-timeout", "5s",
			"--max-bad-commands-prelogin", "1000")
		h := healthyDemo(t, b.POP3)
		idle := dialPOP3(t, b.POP3)
		busy := dialPOP3(t, b.POP3)
		start := time.Now()
		for { // keeps talking, never logs in, until the total timeout ends it
			busy.Send("CAPA")
			line := busy.ReadLine()
			if line == "-ERR Disconnected for inactivity." {
				break
			}
			for line != "." {
				line = busy.ReadLine()
			}
			time.Sleep(100 * time.Millisecond)
		}
		if d := time.Since(start); d < 4*time.Second {
			t.Fatalf("talkative pre-login session ended after %v, before the 5s pre-login total", d)
		}
		busy.ExpectClosed()
		idle.Expect("-ERR Disconnected for inactivity.") // long before, at 2s
		idle.ExpectClosed()
		stillWorks(t, h)
	})
	t.Run("post-login idle", func(t *testing.T) {
		b := startBridge(t, "--demo", "--idle-timeout", "3s")
		h := healthyDemo(t, b.POP3)
		c := healthyDemo(t, b.POP3)
		start := time.Now()
		for time.Since(start) < 4*time.Second { // h talks past c's timeout
			time.Sleep(200 * time.Millisecond)
			h.Send("NOOP")
			h.Expect("+OK*")
		}
		c.Expect("-ERR Disconnected for inactivity.")
		c.ExpectClosed()
		stillWorks(t, h)
	})
	t.Run("bad commands", func(t *testing.T) {
		b := startBridge(t, "--demo")
		h := healthyDemo(t, b.POP3)
		c := dialPOP3(t, b.POP3)
		for i := 0; i < 2; i++ {
			c.Send("HELO x")
			c.Expect("-ERR*")
		}
		c.Send("EHLO x")
		c.Expect("-ERR*", "-ERR too many bad commands, closing connection")
		c.ExpectClosed()
		c = healthyDemo(t, b.POP3)
		for i := 0; i < 19; i++ {
			c.Send("LIST x")
			c.Expect("-ERR*")
		}
		c.Send("BOGUS")
		c.Expect("-ERR*", "-ERR too many bad commands, closing connection")
		c.ExpectClosed()
		stillWorks(t, h)
	})
	t.Run("connections per address and in all", func(t *testing.T) {
		b := startBridge(t, "--demo", "--proxy-protocol", "127.0.0.1/32", "--plaintext-auth", "always",
			"--max-conns-per-ip", "2", "--max-sessions", "4")
		h := dialVia(t, b.POP3, "192.0.2.1")
		h.Login("demo", "demo")
		oldest := dialVia(t, b.POP3, "203.0.113.1")
		dialVia(t, b.POP3, "203.0.113.1")
		third := dialRaw(t, b.POP3)
		fmt.Fprintf(third.Conn(), "PROXY TCP4 203.0.113.1 127.0.0.1 1 2\r\n")
		third.Expect("-ERR [SYS/TEMP] too many connections from your address")
		third.ExpectClosed()
		dialVia(t, b.POP3, "203.0.113.2")
		// Full: the newcomer is admitted and the oldest unauthenticated
		// connection of the address holding the most is closed; the
		// logged-in session is not.
		fifth := dialRaw(t, b.POP3)
		fmt.Fprintf(fifth.Conn(), "PROXY TCP4 203.0.113.3 127.0.0.1 1 2\r\n")
		fifth.Expect("+OK*")
		oldest.Expect("-ERR [SYS/TEMP] too many connections, closing the oldest unauthenticated ones")
		oldest.ExpectClosed()
		// When logged-in sessions hold every slot, a newcomer is refused.
		for _, src := range []string{"192.0.2.2", "192.0.2.3", "192.0.2.4"} {
			c := dialVia(t, b.POP3, src)
			c.Login("demo", "demo")
		}
		sixth := dialRaw(t, b.POP3)
		fmt.Fprintf(sixth.Conn(), "PROXY TCP4 203.0.113.4 127.0.0.1 1 2\r\n")
		sixth.Expect("-ERR [SYS/TEMP] too many connections")
		sixth.ExpectClosed()
		stillWorks(t, h)
	})
}

// A client that never reads cannot pin memory: RETR of a 20 MiB message
// to it ends at the write timeout, popbridge's peak memory does not grow
// by the message size, and another session carries on.
func TestWriteStallBoundedMemory(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: "big", Password: "pw"}}})
	var msg bytes.Buffer
	msg.WriteString("Subject: big\r\n\r\n")
	for msg.Len() < 20<<20 {
		msg.WriteString("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\r\n")
	}
	d.Append(t, "big", "INBOX", msg.Bytes())
	d.Append(t, "big", "INBOX", []byte("Subject: small\r\n\r\nsmall\r\n"))
	b := startBridge(t, "--upstream", "imap+insecure://"+d.IMAPAddr, "--write-timeout", "1s")

	h := dialPOP3(t, b.POP3)
	h.Login("big", "pw")
	c := dialPOP3(t, b.POP3)
	c.Login("big", "pw")
	c.Conn().(*net.TCPConn).SetReadBuffer(4096)
	before := memKiB(t, b, "VmHWM")
	c.Send("RETR 1")
	end := b.WaitLog(map[string]string{"message": "session end", "result": "error", "retr": "0"}, 20*time.Second)
	after := memKiB(t, b, "VmHWM")
	t.Logf("popbridge peak RSS %d KiB before, %d KiB after a stalled 20 MiB RETR (%v octets reached the socket)",
		before, after, end["bytes_sent"])
	if grew := after - before; grew > 10<<10 {
		t.Errorf("peak RSS grew by %d KiB during a stalled 20 MiB RETR", grew)
	}
	h.Send("RETR 2")
	h.Expect("+OK*")
	if got := string(h.Multiline()); got != "Subject: small\r\n\r\nsmall\r\n" {
		t.Fatalf("healthy RETR 2 = %q", got)
	}
	h.Send("QUIT")
	h.Expect("+OK*")
	if n := len(d.Messages(t, "big", "INBOX")); n != 2 {
		t.Fatalf("mailbox has %d messages, want 2 untouched", n)
	}
}
