package reliability

import (
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/imapscript"
)

// TestLoginFaults: whatever the upstream does wrong before the maildrop is
// open, the client gets -ERR [SYS/TEMP] (never [AUTH]) within the login
// deadline, can still QUIT, popbridge keeps no upstream connection and no
// goroutine, and the mailbox is untouched.
func TestLoginFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule imapscript.Rule
	}{
		{"hang at greeting", imapscript.Rule{At: imapscript.Greeting, Step: imapscript.Hang}},
		{"BYE as greeting", imapscript.Rule{At: imapscript.Greeting, Step: imapscript.Bye}},
		{"cut at greeting", imapscript.Rule{At: imapscript.Greeting, Step: imapscript.Cut}},
		{"endless greeting line", imapscript.Rule{At: imapscript.Greeting, Step: imapscript.EndlessLine}},
		{"huge literal in greeting", imapscript.Rule{At: imapscript.Greeting, Step: imapscript.HugeLiteral}},
		{"hang at LOGIN", imapscript.Rule{At: imapscript.Login, Step: imapscript.Hang}},
		{"BYE at LOGIN", imapscript.Rule{At: imapscript.Login, Step: imapscript.Bye}},
		{"cut at LOGIN", imapscript.Rule{At: imapscript.Login, Step: imapscript.Cut}},
		{"NO [UNAVAILABLE] at LOGIN", imapscript.Rule{At: imapscript.Login, Step: imapscript.No}},
		{"endless line at LOGIN", imapscript.Rule{At: imapscript.Login, Step: imapscript.EndlessLine}},
		{"hang at SELECT", imapscript.Rule{At: imapscript.Select, Step: imapscript.Hang}},
		{"NO [SERVERBUG] at SELECT", imapscript.Rule{At: imapscript.Select, Step: imapscript.No, Text: "[SERVERBUG] oops"}},
		{"BYE at SELECT", imapscript.Rule{At: imapscript.Select, Step: imapscript.Bye}},
		{"endless line at SELECT", imapscript.Rule{At: imapscript.Select, Step: imapscript.EndlessLine}},
		{"hang at listing", imapscript.Rule{At: imapscript.List, Step: imapscript.Hang}},
		{"cut at listing", imapscript.Rule{At: imapscript.List, Step: imapscript.Cut}},
		{"huge literal in listing", imapscript.Rule{At: imapscript.List, Step: imapscript.HugeLiteral}},
		{"endless line in listing", imapscript.Rule{At: imapscript.List, Step: imapscript.EndlessLine}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := startFake(t, imapscript.Options{}, 3)
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
	fake := startFake(t, imapscript.Options{}, 2)
	b := startBridge(t, bridgeOptions{upstream: fake.URL()})
	fake.AddRule(imapscript.Rule{At: imapscript.Select, Step: imapscript.Hang, Times: 1})
	c := dialPOP3(t, b.addr)
	if r, _ := c.TryLogin("alice", "secret"); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Fatalf("first login: %q", r)
	}
	c = dialPOP3(t, b.addr)
	c.Login("alice", "secret")
	c.CmdPrefix("STAT", "+OK 2 ")
	quit(c, "+OK")
}
