package pop3server

import (
	"bytes"
	"context"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// healthy is a logged-in session that must keep working while another
// session hits a limit.
func healthy(t *testing.T, addr string) *pop3client.Client {
	c := dial(t, addr)
	loginAlice(c)
	return c
}

// stillWorks checks a healthy session after the limit fired elsewhere.
func stillWorks(c *pop3client.Client) {
	c.TB().Helper()
	c.Send("STAT")
	c.Expect("+OK 3 *")
	c.Send("RETR 2")
	c.Expect("+OK*")
	if got := c.Multiline(); !bytes.Equal(got, sampleMsgs[1]) {
		c.TB().Fatalf("RETR 2 = %q", got)
	}
	c.Send("QUIT")
	c.Expect("+OK popbridge signing off")
}

// Every limit ends only the session that exceeds it, with -ERR or a clean
// close.
func TestLimits(t *testing.T) {
	t.Run("line length before login", func(t *testing.T) {
		_, addr := startServer(t, newFake(), Options{Limits: Limits{MaxLineLength: 255}})
		h := healthy(t, addr)
		c := dial(t, addr)
		c.Send("USER " + strings.Repeat("a", 300))
		c.Expect("-ERR line too long")
		c.ExpectClosed()
		stillWorks(h)
	})
	t.Run("line length after login", func(t *testing.T) {
		_, addr := startServer(t, newFake(), Options{Limits: Limits{MaxLineLength: 255}})
		h := healthy(t, addr)
		c := healthy(t, addr)
		// A megabyte without a line end: the server must not buffer it.
		io.WriteString(c.Conn(), strings.Repeat("x", 1<<20))
		c.Expect("-ERR line too long")
		expectClosedOrReset(c)
		stillWorks(h)
	})
	t.Run("pre-login idle", func(t *testing.T) {
		_, addr := startServer(t, newFake(), Options{Limits: Limits{PreLoginIdleTimeout: time.Second}})
		h := healthy(t, addr)
		c := dial(t, addr)
		c.Expect("-ERR Disconnected for inactivity.")
		c.ExpectClosed()
		stillWorks(h)
	})
	t.Run("pre-login idle in a SASL exchange", func(t *testing.T) {
		_, addr := startServer(t, newFake(), Options{Limits: Limits{PreLoginIdleTimeout: time.Second}})
		c := dial(t, addr)
		c.Send("AUTH PLAIN")
		c.Expect("+ ")
		c.Expect("-ERR Disconnected for inactivity.")
		c.ExpectClosed()
	})
	// The idle timeouts leave the healthy sessions (which log in at once,
	// or talk every 100 ms) most of a second of headroom on a loaded
	// machine; the idle ones are ended whenever the server gets to it.
	t.Run("post-login idle", func(t *testing.T) {
		_, addr := startServer(t, newFake(), Options{Limits: Limits{IdleTimeout: time.Second}})
		h := healthy(t, addr)
		c := healthy(t, addr)
		// The healthy session keeps talking past the idle timeout.
		for start := time.Now(); time.Since(start) < 1500*time.Millisecond; {
			time.Sleep(100 * time.Millisecond)
			h.Send("NOOP")
			h.Expect("+OK")
		}
		c.Expect("-ERR Disconnected for inactivity.")
		c.ExpectClosed()
		stillWorks(h)
	})
	t.Run("bad commands before login", func(t *testing.T) {
		_, addr := startServer(t, newFake(), Options{})
		h := healthy(t, addr)
		c := dial(t, addr)
		for i := 0; i < 2; i++ {
			c.Send("STAT")
			c.Expect("-ERR command not valid in this state")
		}
		c.Send("XYZZY")
		c.Expect("-ERR unknown command", "-ERR too many bad commands, closing connection")
		c.ExpectClosed()
		stillWorks(h)
	})
	t.Run("bad commands after login", func(t *testing.T) {
		_, addr := startServer(t, newFake(), Options{})
		h := healthy(t, addr)
		c := healthy(t, addr)
		for i := 0; i < 19; i++ {
			c.Send("RETR x")
			c.Expect("-ERR invalid message number")
		}
		c.Send("USER bob")
		c.Expect("-ERR command not valid in this state", "-ERR too many bad commands, closing connection")
		c.ExpectClosed()
		stillWorks(h)
	})
	t.Run("connections per address", func(t *testing.T) {
		srv := NewServer(newFake(), Options{Limits: Limits{MaxConnsPerIP: 2, AuthFailDelay: time.Millisecond}, PlaintextAuth: PlaintextAlways})
		addr := serveOn(t, srv, fromAddr("203.0.113.5:1"))
		other := serveOn(t, srv, nil)
		h := healthy(t, other)
		dial(t, addr)
		c2 := dial(t, addr)
		c := dialRaw(t, addr)
		c.Expect("-ERR [SYS/TEMP] too many connections from your address")
		c.ExpectClosed()
		stillWorks(h)
		c2.Send("QUIT")
		c2.Expect("+OK*")
		c2.ExpectClosed()
		waitFor(t, func() bool { return srv.ActiveSessions() == 1 })
		dial(t, addr)
	})
	t.Run("sessions in all", func(t *testing.T) {
		// Logged-in sessions are never evicted: when they hold every
		// slot, a new connection is refused.
		srv := NewServer(newFake(), Options{Limits: Limits{MaxSessions: 3, AuthFailDelay: time.Millisecond}, PlaintextAuth: PlaintextAlways})
		addrA := serveOn(t, srv, fromAddr("203.0.113.5:1"))
		addrB := serveOn(t, srv, fromAddr("198.51.100.5:1"))
		h := healthy(t, addrA)
		healthy(t, addrA)
		c3 := healthy(t, addrB)
		c := dialRaw(t, addrB)
		c.Expect("-ERR [SYS/TEMP] too many connections")
		c.ExpectClosed()
		stillWorks(h)
		c3.Conn().Close()
		waitFor(t, func() bool { return srv.ActiveSessions() == 1 })
		loginAlice(dial(t, addrB))
	})
}

// expectClosedOrReset accepts a close after unread input, which the
// kernel may turn into a reset.
func expectClosedOrReset(c *pop3client.Client) {
	c.TB().Helper()
	if closed, rest := c.Closed(); !closed {
		c.TB().Fatalf("want close, got %q and no close", rest)
	}
}

// lineGen is an endless message body: 78-octet lines.
type lineGen struct{ off int }

func (g *lineGen) Read(p []byte) (int, error) {
	const line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\r\n"
	for i := range p {
		p[i] = line[g.off]
		g.off = (g.off + 1) % len(line)
	}
	return len(p), nil
}

// A client that stops reading mid-RETR cannot pin memory or the session:
// the write that makes no progress for WriteTimeout ends it, and the heap
// does not grow with the 20 MiB message.
func TestWriteStall(t *testing.T) {
	const size = 20 << 20
	b := newFake()
	b.bodyReader = func(ctx context.Context, _ io.Reader) io.Reader {
		return io.LimitReader(&lineGen{}, size)
	}
	rec := &recorder{}
	_, addr := startServer(t, b, Options{Limits: Limits{WriteTimeout: 300 * time.Millisecond}, Observer: rec})
	h := healthy(t, addr)
	c := healthy(t, addr)
	if tc, ok := c.Conn().(interface{ SetReadBuffer(int) error }); ok {
		tc.SetReadBuffer(4096)
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseline, peak := ms.HeapInuse, ms.HeapInuse
	c.Send("RETR 1")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		if len(rec.ended()) == 1 {
			break // the stalled session ended
		}
		if time.Now().After(deadline) {
			t.Fatal("stalled session still open after 2 minutes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if grew := int64(peak) - int64(baseline); grew > 8<<20 {
		t.Errorf("heap grew by %d KiB during a stalled %d MiB RETR", grew>>10, size>>20)
	}
	st := rec.ended()
	if len(st) != 1 || st[0].Result != "error" || st[0].Retr != 0 {
		t.Fatalf("session end = %+v, want one failed RETR", st)
	}
	t.Logf("heap in use: baseline %d KiB, peak %d KiB; %d KiB reached the socket before the stall",
		baseline>>10, peak>>10, st[0].BytesSent>>10)
	if updates, _ := b.snapshot(); len(updates) != 0 {
		t.Fatalf("Update called: %+v", updates)
	}
	b.bodyReader = nil
	stillWorks(h)
}
