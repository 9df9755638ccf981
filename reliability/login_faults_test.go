package reliability

import (
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/fakeimap"
)

// TestLoginFaults: whatever the upstream does wrong before the maildrop is
// open, the client gets -ERR [SYS/TEMP] (never [AUTH]) within the login
// deadline, can still QUIT, popbridge keeps no upstream connection and no
// goroutine, and the mailbox is untouched.
func TestLoginFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule fakeimap.Rule
	}{
		{"hang at greeting", fakeimap.Rule{At: fakeimap.Greeting, Step: fakeimap.Hang}},
		{"BYE as greeting", fakeimap.Rule{At: fakeimap.Greeting, Step: fakeimap.Bye}},
		{"cut at greeting", fakeimap.Rule{At: fakeimap.Greeting, Step: fakeimap.Cut}},
		{"endless greeting line", fakeimap.Rule{At: fakeimap.Greeting, Step: fakeimap.EndlessLine}},
		{"huge literal in greeting", fakeimap.Rule{At: fakeimap.Greeting, Step: fakeimap.HugeLiteral}},
		{"hang at LOGIN", fakeimap.Rule{At: fakeimap.Login, Step: fakeimap.Hang}},
		{"BYE at LOGIN", fakeimap.Rule{At: fakeimap.Login, Step: fakeimap.Bye}},
		{"cut at LOGIN", fakeimap.Rule{At: fakeimap.Login, Step: fakeimap.Cut}},
		{"NO [UNAVAILABLE] at LOGIN", fakeimap.Rule{At: fakeimap.Login, Step: fakeimap.No}},
		{"endless line at LOGIN", fakeimap.Rule{At: fakeimap.Login, Step: fakeimap.EndlessLine}},
		{"hang at SELECT", fakeimap.Rule{At: fakeimap.Select, Step: fakeimap.Hang}},
		{"NO [SERVERBUG] at SELECT", fakeimap.Rule{At: fakeimap.Select, Step: fakeimap.No, Text: "[SERVERBUG] oops"}},
		{"BYE at SELECT", fakeimap.Rule{At: fakeimap.Select, Step: fakeimap.Bye}},
		{"endless line at SELECT", fakeimap.Rule{At: fakeimap.Select, Step: fakeimap.EndlessLine}},
		{"hang at listing", fakeimap.Rule{At: fakeimap.List, Step: fakeimap.Hang}},
		{"cut at listing", fakeimap.Rule{At: fakeimap.List, Step: fakeimap.Cut}},
		{"huge literal in listing", fakeimap.Rule{At: fakeimap.List, Step: fakeimap.HugeLiteral}},
		{"endless line in listing", fakeimap.Rule{At: fakeimap.List, Step: fakeimap.EndlessLine}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := startFake(t, fakeimap.Options{}, 3)
			b := startBridge(t, bridgeOptions{upstream: fake.URL()})
			q := startQuiet(t)
			before := fake.Messages("alice", "INBOX")
			fake.AddRule(tc.rule)

			c := dialPOP3(t, b.addr)
			var got string
			within(t, loginTimeout+deadlineSlack, "failed login", func() {
				var err error
				if got, err = c.TryLogin("alice", "secret"); err != nil {
					t.Fatalf("login: %q %v", got, err)
				}
			})
			if !strings.HasPrefix(got, "-ERR [SYS/TEMP]") {
				t.Fatalf("PASS answered %q, want -ERR [SYS/TEMP]", got)
			}
			quit(c, "+OK")
			q.check(b, fake, logoutBound+slack)
			mailboxUnchanged(t, fake, "alice", before)
		})
	}
}

// TestLoginFaultIsPerConnection: after a fault, the next login works.
func TestLoginFaultIsPerConnection(t *testing.T) {
	fake := startFake(t, fakeimap.Options{}, 2)
	b := startBridge(t, bridgeOptions{upstream: fake.URL()})
	fake.AddRule(fakeimap.Rule{At: fakeimap.Select, Step: fakeimap.Hang, Times: 1})
	c := dialPOP3(t, b.addr)
	if r, _ := c.TryLogin("alice", "secret"); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Fatalf("first login: %q", r)
	}
	c = dialPOP3(t, b.addr)
	c.Login("alice", "secret")
	c.CmdPrefix("STAT", "+OK 2 ")
	quit(c, "+OK")
}
