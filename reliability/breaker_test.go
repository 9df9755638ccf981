package reliability

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/faultnet"
	"github.com/popbridge/popbridge/internal/testing/imapscript"
	"github.com/popbridge/popbridge/upstream"
)

// TestBreakerDuringOutage: once the upstream has failed Threshold
// connection attempts in a row, every login gets -ERR [SYS/TEMP] at once,
// without a connection attempt (so a crowd of clients does not each wait
// out the deadline, nor pile onto a server that is coming back); when the
// upstream returns, logins work again within the cooldown, by themselves.
func TestBreakerDuringOutage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		outage  func(r *faultnet.Relay)
		restore func(r *faultnet.Relay) error
	}{
		{"accepts and hangs",
			func(r *faultnet.Relay) { r.SetAccept(faultnet.AcceptHang) },
			func(r *faultnet.Relay) error { r.SetAccept(faultnet.AcceptForward); r.CutAll(); return nil }},
		{"refuses",
			func(r *faultnet.Relay) { r.Down() },
			func(r *faultnet.Relay) error { return r.Up() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const cooldown = 2 * time.Second
			fake := startFake(t, imapscript.Options{}, 2)
			relay, err := faultnet.Listen(fake.Addr())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { relay.Close() })
			b := startBridge(t, bridgeOptions{
				upstream: "imap+insecure://" + relay.Addr(),
				breaker:  upstream.BreakerOptions{Threshold: 3, Cooldown: cooldown},
			})
			q := startQuiet(t)

			login := func() string {
				c, err := tryDialPOP3(b.addr)
				if err != nil {
					return err.Error()
				}
				defer c.Close()
				r, _ := c.TryLogin("alice", "secret")
				c.TryCmd("QUIT")
				return r
			}
			if r := login(); !strings.HasPrefix(r, "+OK") {
				t.Fatalf("login before the outage: %q", r)
			}

			tc.outage(relay)
			for i := 0; i < 3; i++ {
				if r := login(); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
					t.Fatalf("login %d into the outage: %q", i+1, r)
				}
			}
			// The breaker is open: a crowd fails fast, and none of it
			// reaches the upstream.
			accepted := relay.Accepted()
			var wg sync.WaitGroup
			results := make(chan string, 50)
			start := time.Now()
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func() { defer wg.Done(); results <- login() }()
			}
			wg.Wait()
			close(results)
			crowd := time.Since(start)
			for r := range results {
				if !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
					t.Errorf("login during the outage: %q", r)
				}
			}
			if crowd < cooldown {
				if n := relay.Accepted() - accepted; n != 0 {
					t.Errorf("%d connection attempts reached the upstream with the breaker open", n)
				}
			}
			t.Logf("50 logins failed fast in %v", crowd.Round(time.Millisecond))

			if err := tc.restore(relay); err != nil {
				t.Fatal(err)
			}
			var r string
			within(t, cooldown+slack, "recovery", func() {
				for deadline := time.Now().Add(cooldown + slack); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					if r = login(); strings.HasPrefix(r, "+OK") {
						return
					}
				}
			})
			if !strings.HasPrefix(r, "+OK") {
				t.Fatalf("no recovery: last login %q", r)
			}
			q.check(b, relay, logoutBound+slack)
		})
	}
}
