package reliability

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/faultnet"
	"github.com/popbridge/popbridge/internal/testing/imapscript"
	"github.com/popbridge/popbridge/policy"
)

// healthySession logs in as bob, downloads every message and checks it
// against want, and quits. It returns an error instead of failing, for use
// from many goroutines.
func healthySession(addr string, want []imapscript.Message) error {
	c, err := tryDialPOP3(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if r, err := c.TryLogin("bob", "pw"); err != nil || !strings.HasPrefix(r, "+OK") {
		return fmt.Errorf("login: %q %v", r, err)
	}
	if r, err := c.TryCmd("STAT"); err != nil || !strings.HasPrefix(r, "+OK "+strconv.Itoa(len(want))+" ") {
		return fmt.Errorf("STAT: %q %v", r, err)
	}
	for i, m := range want {
		_, body, err := c.TryMulti("RETR " + strconv.Itoa(i+1))
		if err != nil || !bytes.Equal(body, m.Body) {
			return fmt.Errorf("RETR %d: %v (%d octets)", i+1, err, len(body))
		}
	}
	if r, err := c.TryCmd("QUIT"); err != nil || !strings.HasPrefix(r, "+OK") {
		return fmt.Errorf("QUIT: %q %v", r, err)
	}
	return nil
}

// TestOtherSessionsUnaffected: while one user's sessions hang in the
// upstream (scripted hangs at SELECT and mid-literal, and a second
// upstream behind a stalled relay), another user's sessions run to the end
// as if nothing happened, all of them before any stuck one's deadline.
func TestOtherSessionsUnaffected(t *testing.T) {
	fake := startFake(t, imapscript.Options{}, 5)
	// carol lives on another upstream behind a relay that goes silent.
	other := startFake(t, imapscript.Options{}, 0)
	other.AddUser("carol", "pw")
	other.Append("carol", "INBOX", bigMessage(64<<10))
	relay, err := faultnet.Listen(other.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	carolUpstream := "imap+insecure://" + relay.Addr()
	// Long deadlines here: the stuck sessions must still be stuck when
	// every healthy one has finished.
	const stuckFor = 5 * time.Second
	b := startBridge(t, bridgeOptions{
		upstream: fake.URL(),
		users:    map[string]policy.Override{"carol": {Upstream: &carolUpstream}},
		login:    stuckFor, command: stuckFor,
	})
	q := startQuiet(t)
	want := fake.Messages("bob", "INBOX")
	before := fake.Messages("alice", "INBOX")

	// alice hangs at SELECT, dave in the middle of a literal.
	fake.AddUser("dave", "pw")
	fake.Append("dave", "INBOX", bigMessage(64<<10))
	fake.Append("dave", "INBOX", testMessage("dave", 2, 5))
	daveBefore := fake.Messages("dave", "INBOX")
	fake.AddRule(imapscript.Rule{At: imapscript.Select, Step: imapscript.Hang, User: "alice"})
	fake.AddRule(imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.HangMidBody, User: "dave"})

	var stuck sync.WaitGroup
	stuckErrs := make(chan error, 10)
	carolIn := make(chan struct{})
	var unstuck atomic.Int32
	for i := 0; i < 7; i++ {
		stuck.Add(1)
		go func(i int) {
			defer stuck.Done()
			defer unstuck.Add(1)
			c, err := tryDialPOP3(b.addr)
			if err != nil {
				stuckErrs <- err
				return
			}
			defer c.Close()
			switch {
			case i < 3:
				if r, _ := c.TryLogin("alice", "secret"); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
					stuckErrs <- fmt.Errorf("alice at SELECT: %q", r)
				}
			case i < 6:
				if r, _ := c.TryLogin("dave", "pw"); !strings.HasPrefix(r, "+OK") {
					stuckErrs <- fmt.Errorf("dave login: %q", r)
					return
				}
				c.TryCmd("DELE 2")
				// Streamed, the body stops after +OK (no dot); read
				// ahead whole (a small message, docs/prefetch.md), it
				// never arrives and RETR answers -ERR [SYS/TEMP].
				if st, _, err := c.TryMulti("RETR 1"); err != errNoDot && st != "" && !strings.HasPrefix(st, "-ERR [SYS/TEMP]") {
					stuckErrs <- fmt.Errorf("dave RETR: %q %v", st, err)
				}
			default:
				if r, _ := c.TryLogin("carol", "pw"); !strings.HasPrefix(r, "+OK") {
					stuckErrs <- fmt.Errorf("carol login: %q", r)
					close(carolIn)
					return
				}
				relay.Set(faultnet.ToClient, faultnet.Faults{Stall: true})
				close(carolIn)
				st, _, err := c.TryMulti("RETR 1")
				if !strings.HasPrefix(st, "-ERR [SYS/TEMP]") && err != errNoDot {
					stuckErrs <- fmt.Errorf("carol RETR through a stalled upstream: %q %v", st, err)
				}
			}
		}(i)
	}
	<-carolIn

	// Meanwhile bob's sessions, many at once, all succeed promptly.
	var healthy sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		healthy.Add(1)
		go func() {
			defer healthy.Done()
			if err := healthySession(b.addr, want); err != nil {
				errs <- err
			}
		}()
	}
	healthy.Wait()
	if n := unstuck.Load(); n > 0 {
		t.Errorf("%d stuck sessions ended before the healthy ones: they were not stuck, or the healthy ones waited", n)
	}
	close(errs)
	for err := range errs {
		t.Error("bob:", err)
	}
	stuck.Wait()
	close(stuckErrs)
	for err := range stuckErrs {
		t.Error(err)
	}
	relay.Clear()
	q.check(b, fake, logoutBound+slack)
	mailboxUnchanged(t, fake, "alice", before)
	mailboxUnchanged(t, fake, "dave", daveBefore)
	// bob's sessions only mark messages seen (policy.Default).
	if got := fake.Messages("bob", "INBOX"); len(got) != len(want) {
		t.Errorf("bob's mailbox changed: %v", summarize(got))
	}
}
