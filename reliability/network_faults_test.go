package reliability

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/faultnet"
	"github.com/popbridge/popbridge/internal/testing/imapscript"
)

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// upstreamLeg is a fake upstream behind a faultnet relay, and popbridge
// pointed at the relay.
type upstreamLeg struct {
	fake  *imapscript.Server
	relay *faultnet.Relay
	b     *bridge
	q     *quiet
}

func startUpstreamLeg(t *testing.T, msgs int) *upstreamLeg {
	t.Helper()
	return startUpstreamLegWith(t, msgs, bridgeOptions{})
}

// startUpstreamLegWith is startUpstreamLeg with popbridge shaped by o (its
// upstream is set here).
func startUpstreamLegWith(t *testing.T, msgs int, o bridgeOptions) *upstreamLeg {
	t.Helper()
	fake := startFake(t, imapscript.Options{}, msgs)
	relay, err := faultnet.Listen(fake.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	o.upstream = "imap+insecure://" + relay.Addr()
	b := startBridge(t, o)
	return &upstreamLeg{fake: fake, relay: relay, b: b, q: startQuiet(t)}
}

// idle checks that sessions, relayed connections and goroutines are gone.
func (u *upstreamLeg) idle(t *testing.T) {
	t.Helper()
	u.relay.Clear()
	u.q.check(u.b, u.relay, logoutBound+slack)
	if !u.fake.WaitIdle(slack) {
		t.Error("upstream connections still open")
	}
}

// TestUpstreamUnreachable: an upstream that refuses, resets, accepts and
// says nothing, or swallows what it is sent gives -ERR [SYS/TEMP] within
// the dial or login deadline.
func TestUpstreamUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(r *faultnet.Relay)
		bound time.Duration
	}{
		{"connection refused", func(r *faultnet.Relay) { r.Down() }, dialTimeout + deadlineSlack},
		{"reset on connect", func(r *faultnet.Relay) { r.SetAccept(faultnet.AcceptReset) }, dialTimeout + deadlineSlack},
		{"accepts and never answers", func(r *faultnet.Relay) { r.SetAccept(faultnet.AcceptHang) }, loginTimeout + deadlineSlack},
		{"server silent", func(r *faultnet.Relay) { r.Set(faultnet.ToClient, faultnet.Faults{Stall: true}) }, loginTimeout + deadlineSlack},
		{"commands black-holed", func(r *faultnet.Relay) { r.Set(faultnet.ToServer, faultnet.Faults{BlackHole: true}) }, loginTimeout + deadlineSlack},
		{"cut after the greeting", func(r *faultnet.Relay) { r.Set(faultnet.ToClient, faultnet.Faults{CutAfter: 20}) }, loginTimeout + deadlineSlack},
		{"reset after the greeting", func(r *faultnet.Relay) { r.Set(faultnet.ToClient, faultnet.Faults{ResetAfter: 20}) }, loginTimeout + deadlineSlack},
		{"latency above the login deadline", func(r *faultnet.Relay) {
			r.Set(faultnet.ToClient, faultnet.Faults{Latency: 2 * loginTimeout})
		}, loginTimeout + deadlineSlack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := startUpstreamLeg(t, 2)
			before := u.fake.Messages("alice", "INBOX")
			tc.fault(u.relay)
			c := dialPOP3(t, u.b.addr)
			var r string
			within(t, tc.bound, "login", func() { r, _ = c.TryLogin("alice", "secret") })
			if !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
				t.Fatalf("PASS: %q, want -ERR [SYS/TEMP]", r)
			}
			quit(c, "+OK")
			if err := u.relay.Up(); err != nil {
				t.Fatal(err)
			}
			u.idle(t)
			mailboxUnchanged(t, u.fake, "alice", before)
		})
	}
}

// TestUpstreamDiesMidRetr: the upstream connection stalls, resets or is
// cut while a RETR streams. The client's connection closes without the
// terminating dot, within the no-progress deadline for a stall; what it
// got is a prefix of the message; the pending DELE is not applied.
func TestUpstreamDiesMidRetr(t *testing.T) {
	big := bigMessage(256 << 10)
	for _, tc := range []struct {
		name string
		// before is set before RETR, during is applied after the first
		// lines arrived (nil: none).
		before faultnet.Faults
		during func(r *faultnet.Relay)
		bound  time.Duration
	}{
		// Only the stall is about the no-progress deadline; the other
		// cases run with a 5 s one, so that a relay starved of CPU on a
		// loaded machine is not taken for a stalled upstream (the 500 ms
		// deadline fired before the reset in the full suite).
		{"stall", faultnet.Faults{BytesPerSecond: 128 << 10}, func(r *faultnet.Relay) {
			r.Set(faultnet.ToClient, faultnet.Faults{Stall: true})
		}, commandTimeout + deadlineSlack},
		{"reset", faultnet.Faults{BytesPerSecond: 128 << 10}, func(r *faultnet.Relay) { r.ResetAll() }, slack},
		{"cut", faultnet.Faults{BytesPerSecond: 128 << 10}, func(r *faultnet.Relay) { r.CutAll() }, slack},
		{"cut after 64 KiB", faultnet.Faults{CutAfter: 64 << 10}, nil, slack},
		{"reset after 64 KiB", faultnet.Faults{ResetAfter: 64 << 10}, nil, slack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := bridgeOptions{command: 5 * time.Second}
			if tc.name == "stall" {
				o = bridgeOptions{}
			}
			u := startUpstreamLegWith(t, 0, o)
			for i := 0; i < 2; i++ {
				u.fake.Append("alice", "INBOX", big)
			}
			before := u.fake.Messages("alice", "INBOX")
			c := dialPOP3(t, u.b.addr)
			c.Login("alice", "secret")
			c.CmdPrefix("DELE 2", "+OK")
			u.relay.Set(faultnet.ToClient, tc.before)
			status, err := c.TryCmd("RETR 1")
			if err != nil || !strings.HasPrefix(status, "+OK") {
				t.Fatalf("RETR: %q %v", status, err)
			}
			first, err := c.Line()
			if err != nil {
				t.Fatal(err)
			}
			if tc.during != nil {
				tc.during(u.relay)
			}
			var body []byte
			within(t, tc.bound, "the end of the RETR", func() { body, err = c.Body() })
			if !errors.Is(err, errNoDot) {
				t.Fatalf("RETR ended with %v after %d octets; want a close without the dot", err, len(body))
			}
			got := append([]byte(first+"\r\n"), body...)
			if !bytes.HasPrefix(big, got) || len(got) >= len(big) {
				t.Fatalf("got %d octets, not a strict prefix of the %d-octet message", len(got), len(big))
			}
			u.idle(t)
			mailboxUnchanged(t, u.fake, "alice", before)
		})
	}
}

// TestSlowButAliveUpstream: latency, a bandwidth limit and 1-octet writes
// slow the upstream down but never past a deadline: the session works,
// every byte is exact, the update applies.
func TestSlowButAliveUpstream(t *testing.T) {
	for _, tc := range []struct {
		name        string
		up, down    faultnet.Faults
		bigMsgBytes int
		o           bridgeOptions
	}{
		{"1-octet writes both ways", faultnet.Faults{OneByteWrites: true}, faultnet.Faults{OneByteWrites: true}, 0, bridgeOptions{}},
		// A login is some eight one-way trips (greeting, LOGIN, SELECT,
		// the listing...): 0.8 s of latency, all of the fault tests' 1 s
		// login deadline, which a loaded machine overshot. Deadlines ten
		// times the delays keep this case about slowness, not a race
		// with the deadline.
		{"100 ms latency both ways", faultnet.Faults{Latency: 100 * time.Millisecond}, faultnet.Faults{Latency: 100 * time.Millisecond}, 0,
			bridgeOptions{login: 10 * time.Second, command: 2 * time.Second}},
		// 192 KiB at 32 KiB/s takes 6 s, three times the no-progress
		// deadline: it is not a deadline for the whole RETR. 2 s, not the
		// fault tests' 500 ms: a relay starved of CPU on a loaded machine
		// paused longer than that between writes in the full suite.
		{"32 KiB/s", faultnet.Faults{}, faultnet.Faults{BytesPerSecond: 32 << 10}, 192 << 10, bridgeOptions{command: 2 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := startUpstreamLegWith(t, 3, tc.o)
			if tc.bigMsgBytes > 0 {
				u.fake.Append("alice", "INBOX", bigMessage(tc.bigMsgBytes))
			}
			before := u.fake.Messages("alice", "INBOX")
			u.relay.Set(faultnet.ToServer, tc.up)
			u.relay.Set(faultnet.ToClient, tc.down)
			c := dialPOP3(t, u.b.addr)
			c.Login("alice", "secret")
			for i, m := range before {
				_, body, err := c.TryMulti("RETR " + strconv.Itoa(i+1))
				if err != nil || !bytes.Equal(body, m.Body) {
					t.Fatalf("RETR %d: %v, %d octets of %d, equal=%v", i+1, err, len(body), len(m.Body), bytes.Equal(body, m.Body))
				}
			}
			if _, body, err := c.TryMulti("TOP 1 2"); err != nil || !bytes.HasPrefix(before[0].Body, body) {
				t.Fatalf("TOP: %v %q", err, body)
			}
			c.CmdPrefix("DELE 1", "+OK")
			quit(c, "+OK")
			u.idle(t)
			after := u.fake.Messages("alice", "INBOX")
			if len(after) != len(before)-1 {
				t.Fatalf("DELE 1 not applied: %v", summarize(after))
			}
			for _, m := range after {
				if m.UID == before[0].UID {
					t.Fatal("message 1 still there")
				}
			}
		})
	}
}

// TestUpstreamDiesAtQuit: the upstream goes silent or resets just before
// QUIT. QUIT answers -ERR [SYS/TEMP] within the no-progress deadline, and
// the command held in the stalled relay, delivered late, applies nothing.
func TestUpstreamDiesAtQuit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(r *faultnet.Relay)
	}{
		{"commands stalled", func(r *faultnet.Relay) { r.Set(faultnet.ToServer, faultnet.Faults{Stall: true}) }},
		{"answers stalled", func(r *faultnet.Relay) { r.Set(faultnet.ToClient, faultnet.Faults{Stall: true}) }},
		{"reset", func(r *faultnet.Relay) { r.ResetAll() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := startUpstreamLeg(t, 3)
			before := u.fake.Messages("alice", "INBOX")
			c := dialPOP3(t, u.b.addr)
			c.Login("alice", "secret")
			c.CmdPrefix("DELE 1", "+OK")
			c.CmdPrefix("DELE 3", "+OK")
			tc.fault(u.relay)
			within(t, commandTimeout+deadlineSlack, "QUIT", func() {
				quit(c, "-ERR [SYS/TEMP] some deleted messages not removed")
			})
			u.idle(t)
			after := u.fake.Messages("alice", "INBOX")
			if len(after) != len(before) {
				t.Fatalf("a failed update removed messages: %v", summarize(after))
			}
			if tc.name == "commands stalled" {
				mailboxUnchanged(t, u.fake, "alice", before)
			}
			othersUnchanged(t, before, after, before[0].UID, before[2].UID)
		})
	}
}
