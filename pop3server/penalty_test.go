package pop3server

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// fakeClock is an injectable clock for the penalty tracker.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestPenaltyGrowth(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	p := newPenaltyTracker(2*time.Second, 15*time.Second)
	p.now = clk.now
	a := netip.MustParseAddr("203.0.113.1")
	want := []time.Duration{2, 4, 8, 15, 15, 15}
	for i, w := range want {
		if got := p.fail(a); got != w*time.Second {
			t.Fatalf("failure %d: delay %v, want %v", i+1, got, w*time.Second)
		}
		clk.advance(time.Minute)
	}
	// Another address starts afresh; an IPv6 /64 is one client.
	if got := p.fail(netip.MustParseAddr("203.0.113.2")); got != 2*time.Second {
		t.Fatalf("other address: %v", got)
	}
	p.fail(netip.MustParseAddr("2001:db8:1:2::1"))
	if got := p.fail(netip.MustParseAddr("2001:db8:1:2:ffff::9")); got != 4*time.Second {
		t.Fatalf("same /64: %v, want 4s", got)
	}
	if got := p.fail(netip.MustParseAddr("2001:db8:1:3::1")); got != 2*time.Second {
		t.Fatalf("other /64: %v, want 2s", got)
	}
	// An IPv4-mapped address is the IPv4 client.
	if got := p.fail(netip.MustParseAddr("::ffff:203.0.113.1")); got != 15*time.Second {
		t.Fatalf("mapped address: %v, want 15s", got)
	}
	// Forgotten after the window of quiet.
	clk.advance(penaltyWindow + time.Second)
	if n := p.failures(a); n != 0 {
		t.Fatalf("failures after the window: %d", n)
	}
	if got := p.fail(a); got != 2*time.Second {
		t.Fatalf("after the window: %v, want 2s", got)
	}
	// Disabled.
	off := newPenaltyTracker(-1, 15*time.Second)
	if got := off.fail(a); got != 0 {
		t.Fatalf("disabled tracker: %v", got)
	}
}

// However many addresses fail, the table keeps at most penaltyTableSize,
// forgetting the least recently failing.
func TestPenaltyTableBounded(t *testing.T) {
	p := newPenaltyTracker(time.Second, 15*time.Second)
	first := netip.MustParseAddr("10.0.0.0")
	a := first
	for i := 0; i < penaltyTableSize+5000; i++ {
		p.fail(a)
		a = a.Next()
	}
	if n := p.table.Len(); n != penaltyTableSize {
		t.Fatalf("table holds %d entries, want %d", n, penaltyTableSize)
	}
	if p.failures(first) != 0 {
		t.Fatal("oldest address still tracked")
	}
	if p.failures(a.Prev()) != 1 {
		t.Fatal("newest address not tracked")
	}
}

// On the wire, with short configured delays: each refused login waits at
// least the current penalty of its address, which doubles up to the
// maximum across connections, and other addresses are not affected.
func TestFailureDelayOnTheWire(t *testing.T) {
	const base, maxDelay = 40 * time.Millisecond, 250 * time.Millisecond
	srv := NewServer(newFake(), Options{Limits: Limits{AuthFailDelay: base, AuthPenaltyMax: maxDelay}, PlaintextAuth: PlaintextAlways})
	addrA := serveOn(t, srv, fromAddr("203.0.113.10:1000"))
	addrB := serveOn(t, srv, fromAddr("198.51.100.20:1000"))

	fail := func(c *pop3client.Client) time.Duration {
		c.Send("USER alice")
		c.Expect("+OK")
		start := time.Now()
		c.Send("PASS wrong")
		c.Expect("-ERR [AUTH] authentication failed")
		return time.Since(start)
	}
	want := []time.Duration{40, 80, 160, 250, 250}
	var got []time.Duration
	c := dial(t, addrA)
	for i := range want {
		if i == 3 { // the third failure closed the first connection
			c.ExpectClosed()
			c = dial(t, addrA)
		}
		got = append(got, fail(c))
	}
	for i := range want {
		if got[i] < want[i]*time.Millisecond {
			t.Errorf("failure %d answered after %v, want at least %v (all: %v)", i+1, got[i], want[i]*time.Millisecond, got)
		}
	}
	a, b := netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("198.51.100.20")
	if n := srv.penalties.failures(a); n != 5 {
		t.Errorf("failures of A = %d, want 5", n)
	}
	cb := dial(t, addrB)
	if d := fail(cb); d < base {
		t.Errorf("B's first failure after %v, want at least %v", d, base)
	}
	if n := srv.penalties.failures(b); n != 1 {
		t.Errorf("failures of B = %d, want 1 (A's penalty must not spill over)", n)
	}
	// A right password is not delayed by the penalty and does not count.
	loginAlice(cb)
	if n := srv.penalties.failures(b); n != 1 {
		t.Errorf("failures of B after a good login = %d", n)
	}
}

// A client that hangs up instead of waiting for its -ERR does not escape
// the delay: the session, and its per-address slot, last until the delay
// is over.
func TestFailureDelayHoldsConnectionSlot(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{Limits: Limits{AuthFailDelay: 500 * time.Millisecond, MaxConnsPerIP: 1}})
	c := dial(t, addr)
	c.Send("USER alice")
	c.Expect("+OK")
	c.Send("PASS wrong")
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.logins) == 1 })
	c.Conn().Close()
	c2 := dialRaw(t, addr)
	c2.Expect("-ERR [SYS/TEMP] too many connections from your address")
	c2.ExpectClosed()
	time.Sleep(600 * time.Millisecond)
	loginAlice(dial(t, addr))
}

// An unreachable upstream is [SYS/TEMP]: no delay, no penalty, and no
// failure counted towards closing the connection.
func TestUpstreamDownNotPenalized(t *testing.T) {
	b := newFake()
	b.loginErr = ErrTemporary.Wrap(errors.New("dial tcp 192.0.2.1:993: connect: connection refused"))
	srv, addr := startServer(t, b, Options{Limits: Limits{AuthFailDelay: 3 * time.Second}})
	c := dial(t, addr)
	start := time.Now()
	for i := 0; i < 5; i++ {
		c.Send("AUTH PLAIN " + b64("\x00alice\x00secret"))
		c.Expect("-ERR [SYS/TEMP] temporary failure, try again later")
	}
	if d := time.Since(start); d >= 3*time.Second {
		t.Errorf("5 upstream failures took %v: the failure delay was applied", d)
	}
	if n := srv.penalties.failures(netip.MustParseAddr("127.0.0.1")); n != 0 {
		t.Errorf("penalty failures = %d, want 0", n)
	}
	b.mu.Lock()
	b.loginErr = nil
	b.mu.Unlock()
	loginAlice(c)
}
