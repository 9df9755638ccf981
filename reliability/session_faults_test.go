package reliability

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/testing/imapscript"
)

// TestBodyFaults: RETR and TOP when the upstream fails while the body is
// fetched. Before the body starts the client gets -ERR [SYS/TEMP] (-ERR
// for a NO, which also means "expunged"); once it has started, the
// connection closes without the terminating dot, after at most the
// no-progress deadline. What the client got is a prefix of the message,
// the pending DELE is not applied, nothing is marked seen.
//
// A small message is read ahead whole before its +OK (docs/prefetch.md):
// a fault mid-literal then strikes before the body starts, and the client
// gets -ERR [SYS/TEMP]. The same faults on a message larger than the
// session's read-ahead limit (streams) exercise the streaming path, where
// the +OK has gone out and only a close without the dot is safe.
func TestBodyFaults(t *testing.T) {
	type outcome int
	const (
		tempErr outcome = iota // -ERR [SYS/TEMP] and the session goes on
		plainErr
		noDot // +OK, then the connection closes without "."
	)
	for _, tc := range []struct {
		name string
		rule imapscript.Rule
		top  bool
		want outcome
		// streams: the session's read-ahead limit is below the
		// message's size, so RETR streams it instead of reading it
		// ahead whole.
		streams bool
	}{
		{"RETR, hang mid-literal, read ahead", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.HangMidBody}, false, tempErr, false},
		{"RETR, cut mid-literal, read ahead", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.CutMidBody}, false, tempErr, false},
		{"RETR, literal longer than announced, read ahead", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.LiteralOverrun}, false, tempErr, false},
		{"RETR, hang mid-literal, streams", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.HangMidBody}, false, noDot, true},
		{"RETR, cut mid-literal, streams", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.CutMidBody}, false, noDot, true},
		{"RETR, literal longer than announced, streams", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.LiteralOverrun}, false, noDot, true},
		{"RETR, no answer", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.Hang}, false, tempErr, false},
		{"RETR, BYE instead of the body", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.Bye}, false, tempErr, false},
		{"RETR, cut instead of the body", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.Cut}, false, tempErr, false},
		{"RETR, BAD", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.Bad}, false, tempErr, false},
		{"RETR, endless line", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.EndlessLine}, false, tempErr, false},
		{"RETR, NO", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.No}, false, plainErr, false},
		{"TOP, hang mid-header", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.HangMidBody}, true, noDot, false},
		{"TOP, cut mid-text", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.CutMidBody, Times: 1}, true, noDot, false},
		{"TOP, no answer", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.Hang}, true, tempErr, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := startFake(t, imapscript.Options{}, 3)
			before := fake.Messages("alice", "INBOX")
			o := bridgeOptions{upstream: fake.URL()}
			if tc.streams {
				o.config = func(c *config.Config) { c.PrefetchSessionBytes = len(before[0].Body) - 1 }
			}
			b := startBridge(t, o)
			q := startQuiet(t)
			c := dialPOP3(t, b.addr)
			c.Login("alice", "secret")
			c.CmdPrefix("DELE 2", "+OK")
			fake.AddRule(tc.rule)

			cmd, whole := "RETR 1", before[0].Body
			if tc.top {
				cmd = "TOP 1 5"
			}
			var status string
			var body []byte
			var err error
			within(t, boundFor(tc.rule.Step), cmd, func() { status, body, err = c.TryMulti(cmd) })
			endedBySizeLimit(t, b, tc.rule.Step)
			switch tc.want {
			case noDot:
				// A small message's +OK may still sit in popbridge's
				// buffer when the fault strikes: then the client sees
				// the close and nothing else, which is just as safe.
				sawClose := status == "" && (errors.Is(err, io.EOF) || isReset(err))
				if !sawClose && (!strings.HasPrefix(status, "+OK") || !errors.Is(err, errNoDot)) {
					t.Fatalf("%s: %q, %v; want a close without the dot", cmd, status, err)
				}
				if !bytes.HasPrefix(whole, body) {
					t.Fatalf("the client got octets that are not the message's: %q", body)
				}
			case tempErr, plainErr:
				want := "-ERR [SYS/TEMP]"
				if tc.want == plainErr {
					want = "-ERR"
				}
				if err != nil || !strings.HasPrefix(status, want) {
					t.Fatalf("%s: %q, %v; want %s", cmd, status, err, want)
				}
				c.CmdPrefix("STAT", "+OK")
				if tc.want == plainErr {
					// A NO is "expunged by another client": the
					// connection is still good, the DELE applies.
					quit(c, "+OK")
					q.check(b, fake, logoutBound+slack)
					othersUnchanged(t, before, fake.Messages("alice", "INBOX"), before[1].UID)
					if len(fake.Messages("alice", "INBOX")) != 2 {
						t.Fatal("DELE 2 not applied at QUIT")
					}
					return
				}
				// The upstream connection is gone: the pending DELE
				// cannot be applied, and QUIT must say so.
				quit(c, "-ERR [SYS/TEMP] some deleted messages not removed")
			}
			q.check(b, fake, logoutBound+slack)
			mailboxUnchanged(t, fake, "alice", before)
			noUnscopedExpunge(t, fake)
		})
	}
}

// boundFor is how long a command may take to fail under step: the
// no-progress deadline. An endless stream never trips that deadline (the
// octets keep flowing): it fails on the size limit, as fast as megabytes
// pass a race-instrumented reader on a loaded machine, which is no figure
// to assert; its bound is only a hang guard, and endedBySizeLimit checks
// that the limit ended it.
func boundFor(step imapscript.Step) time.Duration {
	if step == imapscript.EndlessLine || step == imapscript.HugeLiteral {
		return 2 * time.Minute
	}
	return commandTimeout + deadlineSlack
}

// endedBySizeLimit fails the test unless popbridge logged that the
// upstream's endless line hit the response-line limit.
func endedBySizeLimit(t *testing.T, b *bridge, step imapscript.Step) {
	t.Helper()
	if step == imapscript.EndlessLine && !strings.Contains(b.logs.String(), "upstream response line too long") {
		t.Error("the endless line did not end on the response-line limit")
	}
}

// TestUpdateFaults: QUIT after DELE 1 when the update fails somewhere. The
// client is told "-ERR [SYS/TEMP] some deleted messages not removed"
// within the deadline; every message is still there, and those the session
// did not delete are exactly as they were.
func TestUpdateFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule imapscript.Rule
		// atLogin adds the rule before login (else after it).
		atLogin bool
		// untouched: not even the deleted message may have changed.
		untouched bool
	}{
		{"NO to UID EXPUNGE", imapscript.Rule{At: imapscript.UIDExpunge, Step: imapscript.No}, false, false},
		{"no answer to UID EXPUNGE", imapscript.Rule{At: imapscript.UIDExpunge, Step: imapscript.Hang}, false, false},
		{"BYE to UID EXPUNGE", imapscript.Rule{At: imapscript.UIDExpunge, Step: imapscript.Bye}, false, false},
		{"endless line at UID EXPUNGE", imapscript.Rule{At: imapscript.UIDExpunge, Step: imapscript.EndlessLine}, false, false},
		{"cut between UID STORE and UID EXPUNGE", imapscript.Rule{At: imapscript.Store, Step: imapscript.CutAfter}, false, false},
		{"cut at UID STORE", imapscript.Rule{At: imapscript.Store, Step: imapscript.Cut}, false, true},
		{"no answer to UID STORE", imapscript.Rule{At: imapscript.Store, Step: imapscript.Hang}, false, false},
		{"NO to UID STORE", imapscript.Rule{At: imapscript.Store, Step: imapscript.No}, false, true},
		{"no answer to the SELECT before the update", imapscript.Rule{At: imapscript.Select, Step: imapscript.Hang}, false, true},
		{"NO to the SELECT before the update", imapscript.Rule{At: imapscript.Select, Step: imapscript.No}, false, true},
		{"UIDVALIDITY changed between login and QUIT", imapscript.Rule{At: imapscript.Select, Step: imapscript.ChangeUIDValidity, Times: 1}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := startFake(t, imapscript.Options{}, 3)
			b := startBridge(t, bridgeOptions{upstream: fake.URL()})
			q := startQuiet(t)
			before := fake.Messages("alice", "INBOX")
			if tc.atLogin {
				fake.AddRule(tc.rule)
			}
			c := dialPOP3(t, b.addr)
			c.Login("alice", "secret")
			if !tc.atLogin {
				fake.AddRule(tc.rule)
			}
			c.CmdPrefix("DELE 1", "+OK")
			within(t, boundFor(tc.rule.Step), "QUIT", func() {
				quit(c, "-ERR [SYS/TEMP] some deleted messages not removed")
			})
			endedBySizeLimit(t, b, tc.rule.Step)
			q.check(b, fake, logoutBound+slack)
			noUnscopedExpunge(t, fake)
			if tc.untouched {
				mailboxUnchanged(t, fake, "alice", before)
				if tc.atLogin {
					if cs := fake.CommandsNamed("UID STORE", "UID EXPUNGE"); len(cs) > 0 {
						t.Errorf("sent %v after UIDVALIDITY changed", cs)
					}
				}
				return
			}
			after := fake.Messages("alice", "INBOX")
			if len(after) != len(before) || after[0].UID != before[0].UID {
				t.Fatalf("a failed update removed messages: %v -> %v", summarize(before), summarize(after))
			}
			othersUnchanged(t, before, after, before[0].UID)
			// Only the session's own message may carry our \Deleted.
			if after[0].HasFlag(`\Deleted`) {
				t.Logf("note: message 1 keeps \\Deleted after the failed update")
			}
		})
	}
}

// TestSizeMismatch: an upstream whose RFC822.SIZE is smaller than the
// body it then sends. LIST shows what the upstream said; RETR delivers the
// real message whole (it is the octets that matter, not the count), and
// popbridge logs the discrepancy.
func TestSizeMismatch(t *testing.T) {
	fake := startFake(t, imapscript.Options{}, 2)
	b := startBridge(t, bridgeOptions{upstream: fake.URL()})
	fake.AddRule(imapscript.Rule{At: imapscript.List, Step: imapscript.UnderstateSize})
	want := fake.Messages("alice", "INBOX")[0].Body
	c := dialPOP3(t, b.addr)
	c.Login("alice", "secret")
	c.CmdPrefix("LIST 1", "+OK 1 "+strconv.Itoa(len(want)-10))
	if _, body, err := c.TryMulti("RETR 1"); err != nil || !bytes.Equal(body, want) {
		t.Fatalf("RETR: %v, %d octets of %d", err, len(body), len(want))
	}
	quit(c, "+OK")
	b.waitSessions(slack)
	if !strings.Contains(b.logs.String(), "differs from RFC822.SIZE") {
		t.Error("the size mismatch was not logged")
	}
}
