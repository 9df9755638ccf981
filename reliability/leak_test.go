package reliability

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/faultnet"
	"github.com/popbridge/popbridge/internal/testing/imapscript"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// TestRepeatedFaultsLeaveNoTrace runs a few hundred sessions that each end
// in a different fault and checks that popbridge's goroutines return to
// the baseline and that its live heap after GC does not grow.
func TestRepeatedFaultsLeaveNoTrace(t *testing.T) {
	fake := startFake(t, imapscript.Options{}, 3)
	fake.Append("alice", "INBOX", bigMessage(256<<10))
	// Production-like deadlines: none of these faults needs one to end (each
	// closes, resets or overflows a limit), and the fault tests' short ones
	// made a healthy login on a loaded CI machine answer [SYS/TEMP] (a
	// 1 s login deadline overshot under -race beside other packages).
	b := startBridge(t, bridgeOptions{upstream: fake.URL(), noLogs: true,
		dial: time.Minute, login: time.Minute, command: time.Minute})
	relay, err := faultnet.Listen(b.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })

	faults := []func(){
		func() { // the upstream cuts the body
			fake.AddRule(imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.CutMidBody, Times: 1})
			c := mustSession(t, b.addr)
			c.TryMulti("RETR 4")
			c.Close()
		},
		func() { // the update is cut between STORE and EXPUNGE
			fake.AddRule(imapscript.Rule{At: imapscript.Store, Step: imapscript.CutAfter, Times: 1})
			c := mustSession(t, b.addr)
			c.TryCmd("DELE 1")
			c.TryCmd("QUIT")
			c.Close()
		},
		func() { // BYE instead of a body, then QUIT
			fake.AddRule(imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.Bye, Times: 1})
			c := mustSession(t, b.addr)
			c.TryMulti("TOP 2 3")
			c.TryCmd("QUIT")
			c.Close()
		},
		func() { // an endless greeting line
			fake.AddRule(imapscript.Rule{At: imapscript.Greeting, Step: imapscript.EndlessLine, Times: 1})
			c, err := tryDialPOP3(b.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.TryLogin("alice", "secret")
			c.Close()
		},
		func() { // the client resets mid-RETR
			c := mustSession(t, relay.Addr())
			c.TryCmd("RETR 4")
			relay.ResetAll()
		},
		func() { // a good session
			c := mustSession(t, b.addr)
			c.TryMulti("RETR 1")
			c.TryCmd("QUIT")
			c.Close()
		},
	}
	round := func(n int) {
		for i := 0; i < n; i++ {
			faults[i%len(faults)]()
		}
		if !b.waitSessions(slack) {
			t.Fatal("sessions left open")
		}
		fake.ResetCommands()
	}
	round(30) // warm up pools and caches
	q := startQuiet(t)
	heap0 := heapAfterGC()
	round(300)
	q.check(b, fake, logoutBound+slack)
	heap1 := heapAfterGC()
	t.Logf("live heap after GC: %d KiB before, %d KiB after 300 faulty sessions; %d goroutines",
		heap0>>10, heap1>>10, runtime.NumGoroutine())
	if growth := int64(heap1) - int64(heap0); growth > 2<<20 {
		t.Errorf("live heap grew by %d KiB over 300 sessions", growth>>10)
	}
}

// mustSession dials addr and logs in as alice. The caller closes the
// connection: a t.Cleanup per session would itself grow the heap.
func mustSession(t *testing.T, addr string) *pop3client.Client {
	t.Helper()
	c, err := tryDialPOP3(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTB(t)
	if r, err := c.TryLogin("alice", "secret"); err != nil || !strings.HasPrefix(r, "+OK") {
		t.Fatalf("login: %q %v", r, err)
	}
	return c
}
