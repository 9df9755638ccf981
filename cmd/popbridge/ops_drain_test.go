package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestOpsDrainIdleSession: SIGTERM with an idle, logged-in session that
// marked a message: the client is told [SYS/TEMP], the process exits 0.
func TestOpsDrainIdleSession(t *testing.T) {
	p := opsStart(t, bridgeproc.Binary(t), "--demo", "--listen", "127.0.0.1:0", "--drain-timeout", "10s")
	c := opsDial(t, p.POP3, nil)
	c.MustLine("+OK")
	c.OK("USER demo")
	c.OK("PASS demo")
	c.OK("DELE 1")

	p.Signal(syscall.SIGTERM)
	c.MustLine("-ERR [SYS/TEMP]")
	if closed, rest := c.Closed(); !closed {
		t.Fatalf("connection not closed after the shutdown notice; got %q", rest)
	}
	if st := p.Wait(10 * time.Second); st != 0 {
		t.Fatalf("exit status %d after a clean drain, want 0", st)
	}
	p.WaitLog(map[string]string{"event": "session_end", "result": "shutdown", "del": "1", "user": "demo"}, time.Second)
}

// TestOpsDrainAgainstDovecot drives a drain with real sessions in front of
// Dovecot and checks the mailbox afterwards:
//   - a session that DELE'd and did not QUIT has nothing applied;
//   - a RETR of a 20 MiB message in progress at SIGTERM completes, with
//     its terminating dot, and no \Seen is set since no QUIT followed;
//   - /readyz answers 503 (and /livez 200) while the drain waits for it;
//   - the listener is closed, and the exit status is 0.
//
// A session that QUIT before the signal is the control: its delete is
// applied, so the final check can tell applied from not applied.
func TestOpsDrainAgainstDovecot(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: "alice", Password: "alicepw"}}})
	big := bigMessage(20 << 20)
	for i := 1; i <= 3; i++ {
		d.Append(t, "alice", "INBOX", smallMessage(i))
	}
	d.Append(t, "alice", "INBOX", big)

	p := opsStart(t, bridgeproc.Binary(t), "--upstream", "imap+insecure://"+d.IMAPAddr, "--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--drain-timeout", "60s")

	login := func() *pop3client.Client {
		c := opsDial(t, p.POP3, nil)
		c.MustLine("+OK")
		c.OK("USER alice")
		c.OK("PASS alicepw")
		return c
	}

	// Control: DELE 2 and QUIT, applied.
	ctl := login()
	ctl.OK("DELE 2")
	ctl.OK("QUIT")
	if n := len(d.Messages(t, "alice", "INBOX")); n != 3 {
		t.Fatalf("control session's delete not applied: %d messages, want 3", n)
	}

	// Idle: DELE 1 (still message 1 in the new numbering), no QUIT.
	idle := login()
	idle.OK("DELE 1")

	// Busy: RETR the big message (now message 3), read a little, stall.
	busy := login()
	sz := busy.OK("LIST 3")
	if want := fmt.Sprintf("+OK 3 %d", len(big)); sz != want {
		t.Fatalf("LIST 3 = %q, want %q", sz, want)
	}
	busy.OK("RETR 3")
	head := busy.MultilinePrefix(64 << 10)

	p.Signal(syscall.SIGTERM)

	idle.MustLine("-ERR [SYS/TEMP]")
	if closed, rest := idle.Closed(); !closed {
		t.Fatalf("idle session not closed after the shutdown notice; got %q", rest)
	}
	waitFor(t, "/readyz to answer 503 during the drain", func() bool {
		code, _, err := p.Get("/readyz")
		return err == nil && code == http.StatusServiceUnavailable
	})
	if code, _, err := p.Get("/livez"); err != nil || code != http.StatusOK {
		t.Errorf("/livez = %d %v during the drain, want 200", code, err)
	}
	waitFor(t, "the POP3 listener to close", func() bool {
		c, err := net.DialTimeout("tcp", p.POP3, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case <-p.Done():
		t.Fatal("popbridge exited while a RETR was still in progress")
	default:
	}

	// The stalled RETR now finishes, whole and terminated.
	rest := busy.Multiline()
	got := append(head, rest...)
	if !bytes.Equal(got, big) {
		t.Fatalf("RETR during drain delivered %d octets, want the %d-octet message byte for byte", len(got), len(big))
	}
	busy.MustLine("-ERR [SYS/TEMP]")

	if st := p.Wait(30 * time.Second); st != 0 {
		t.Fatalf("exit status %d after a clean drain, want 0", st)
	}

	msgs := d.Messages(t, "alice", "INBOX")
	if len(msgs) != 3 {
		t.Fatalf("%d messages upstream after the drain, want 3 (nothing applied without QUIT)", len(msgs))
	}
	for i, m := range msgs {
		if slices.Contains(m.Flags, imap.FlagDeleted) || slices.Contains(m.Flags, imap.FlagSeen) {
			t.Errorf("message %d has flags %v after a session without QUIT", i+1, m.Flags)
		}
	}
}

// TestOpsDrainTimeoutCutsTransfer: a RETR that does not finish within
// --drain-timeout is cut off without the terminating dot, so the client
// never takes a truncated message for a whole one, and nothing is applied.
func TestOpsDrainTimeoutCutsTransfer(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: "bob", Password: "bobpw"}}})
	big := bigMessage(20 << 20)
	d.Append(t, "bob", "INBOX", big)

	p := opsStart(t, bridgeproc.Binary(t), "--upstream", "imap+insecure://"+d.IMAPAddr, "--listen", "127.0.0.1:0",
		"--drain-timeout", "1s", "--delete-policy", "on-download")
	c := opsDial(t, p.POP3, nil)
	c.MustLine("+OK")
	c.OK("USER bob")
	c.OK("PASS bobpw")
	c.OK("RETR 1")
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(c.Reader(), head); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGTERM)
	if st := p.Wait(20 * time.Second); st != 0 {
		t.Fatalf("exit status %d after a drain timeout, want 0", st)
	}
	rest, _ := io.ReadAll(c.Reader())
	got := append(head, rest...)
	if bytes.HasSuffix(got, []byte("\r\n.\r\n")) || len(got) >= len(big) {
		t.Fatalf("cut-off RETR delivered %d of %d octets and ended %q", len(got), len(big), got[max(0, len(got)-5):])
	}
	if msgs := d.Messages(t, "bob", "INBOX"); len(msgs) != 1 || slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Fatalf("after a cut-off session: %d messages, flags %v; want the message untouched", len(msgs), msgs)
	}
}

// waitFor waits until cond holds; the 2-minute bound only keeps a broken
// popbridge from hanging the test, it is no assertion about time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func smallMessage(i int) []byte {
	return []byte(fmt.Sprintf("From: a@example.com\r\nTo: alice@example.com\r\nSubject: small %d\r\n\r\nbody %d\r\n", i, i))
}

// bigMessage is a message of about size octets whose body has lines
// starting with dots, so dot-stuffing is exercised too.
func bigMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nTo: alice@example.com\r\nSubject: big\r\n\r\n")
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	for i := 0; b.Len() < size; i++ {
		if i%100 == 0 {
			b.WriteString(".a line that needs dot-stuffing\r\n")
		}
		b.WriteString(line)
	}
	return b.Bytes()
}
