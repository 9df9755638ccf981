package reliability

import (
	"bytes"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/faultnet"
	"github.com/popbridge/popbridge/internal/testing/imapscript"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// clientLeg is popbridge in front of a fake upstream, with a faultnet
// relay between the POP3 client and popbridge.
type clientLeg struct {
	fake  *imapscript.Server
	b     *bridge
	relay *faultnet.Relay
	q     *quiet
}

func startClientLeg(t *testing.T, msgs int) *clientLeg {
	t.Helper()
	fake := startFake(t, imapscript.Options{}, msgs)
	b := startBridge(t, bridgeOptions{upstream: fake.URL()})
	relay, err := faultnet.Listen(b.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	return &clientLeg{fake: fake, b: b, relay: relay, q: startQuiet(t)}
}

// TestClientGoesAway: a client that resets, is cut, or simply stops
// reading in the middle of a RETR. popbridge ends the session (a client
// that stopped reading after WriteTimeout without progress), retires the
// upstream connection, and applies nothing of the session's DELEs.
func TestClientGoesAway(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		fault func(r *faultnet.Relay)
		bound time.Duration
	}{
		{"reset mid-RETR", 512 << 10, func(r *faultnet.Relay) { r.ResetAll() }, slack},
		{"cut mid-RETR", 512 << 10, func(r *faultnet.Relay) { r.CutAll() }, slack},
		// 16 MiB is more than the loopback socket buffers hold: popbridge's
		// writes block until its write deadline.
		{"stops reading mid-RETR", 16 << 20, func(r *faultnet.Relay) {
			r.Set(faultnet.ToClient, faultnet.Faults{Stall: true})
		}, writeTimeout + commandTimeout + slack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := startClientLeg(t, 0)
			l.fake.Append("alice", "INBOX", bigMessage(tc.size))
			l.fake.Append("alice", "INBOX", testMessage("alice", 2, 10))
			before := l.fake.Messages("alice", "INBOX")
			c := dialPOP3(t, l.relay.Addr())
			c.Login("alice", "secret")
			c.CmdPrefix("DELE 2", "+OK")
			// Slow the download so that the fault lands mid-message.
			l.relay.Set(faultnet.ToClient, faultnet.Faults{BytesPerSecond: 256 << 10})
			c.CmdPrefix("RETR 1", "+OK")
			if _, err := c.Line(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			tc.fault(l.relay)
			if !l.b.waitSessions(tc.bound) {
				t.Fatalf("session still open %v after the client went away", tc.bound)
			}
			t.Logf("session ended %v after the fault", time.Since(start).Round(time.Millisecond))
			l.relay.Clear()
			l.relay.CutAll()
			l.q.check(l.b, l.fake, logoutBound+slack)
			mailboxUnchanged(t, l.fake, "alice", before)
			if cs := l.fake.CommandsNamed("UID STORE", "UID EXPUNGE", "EXPUNGE"); len(cs) > 0 {
				t.Fatalf("a session that never sent QUIT updated the mailbox: %v", cs)
			}
		})
	}
}

// TestClientDropsAfterDele: DELE, then the connection drops (cut, reset,
// or the client just closes) before QUIT: nothing is applied.
func TestClientDropsAfterDele(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(c *pop3client.Client, r *faultnet.Relay)
	}{
		{"cut", func(_ *pop3client.Client, r *faultnet.Relay) { r.CutAll() }},
		{"reset", func(_ *pop3client.Client, r *faultnet.Relay) { r.ResetAll() }},
		{"client closes", func(c *pop3client.Client, _ *faultnet.Relay) { c.Close() }},
		{"QUIT never arrives", func(c *pop3client.Client, r *faultnet.Relay) {
			r.Set(faultnet.ToServer, faultnet.Faults{BlackHole: true})
			io.WriteString(c.Conn(), "QUIT\r\n") // swallowed by the relay
			r.CutAll()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := startClientLeg(t, 3)
			before := l.fake.Messages("alice", "INBOX")
			c := dialPOP3(t, l.relay.Addr())
			c.Login("alice", "secret")
			c.CmdPrefix("DELE 1", "+OK")
			c.CmdPrefix("DELE 2", "+OK")
			if _, _, err := c.TryMulti("RETR 3"); err != nil {
				t.Fatal(err)
			}
			tc.drop(c, l.relay)
			l.relay.Clear()
			l.q.check(l.b, l.fake, logoutBound+slack)
			mailboxUnchanged(t, l.fake, "alice", before)
		})
	}
}

// TestSlowClient: a client whose link is 1 octet per write, or slow, still
// gets every message whole: popbridge's deadlines count progress, not
// time.
func TestSlowClient(t *testing.T) {
	for _, tc := range []struct {
		name     string
		up, down faultnet.Faults
		extra    int
	}{
		{"1-octet writes both ways", faultnet.Faults{OneByteWrites: true}, faultnet.Faults{OneByteWrites: true}, 0},
		// 64 KiB at 16 KiB/s: 4 s against a 0.5 s write deadline.
		{"16 KiB/s", faultnet.Faults{}, faultnet.Faults{BytesPerSecond: 16 << 10}, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := startClientLeg(t, 2)
			if tc.extra > 0 {
				l.fake.Append("alice", "INBOX", bigMessage(tc.extra))
			}
			before := l.fake.Messages("alice", "INBOX")
			l.relay.Set(faultnet.ToServer, tc.up)
			l.relay.Set(faultnet.ToClient, tc.down)
			c := dialPOP3(t, l.relay.Addr())
			c.Login("alice", "secret")
			for i, m := range before {
				if _, body, err := c.TryMulti("RETR " + strconv.Itoa(i+1)); err != nil || !bytes.Equal(body, m.Body) {
					t.Fatalf("RETR %d: %v, %d of %d octets", i+1, err, len(body), len(m.Body))
				}
			}
			c.CmdPrefix("DELE 1", "+OK")
			quit(c, "+OK")
			l.relay.Clear()
			l.q.check(l.b, l.fake, logoutBound+slack)
			if after := l.fake.Messages("alice", "INBOX"); len(after) != len(before)-1 || after[0].UID == before[0].UID {
				t.Fatalf("after QUIT: %v", summarize(after))
			}
		})
	}
}
