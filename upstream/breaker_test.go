package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/faultnet"
	"github.com/popbridge/popbridge/pop3server"
)

// fakeClock is a settable time source for breakers.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestBreaker(threshold int) (*breaker, *fakeClock) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	opts := BreakerOptions{Threshold: threshold, Cooldown: time.Second, MaxCooldown: 4 * time.Second}
	return newBreaker(opts.withDefaults(), clock.now), clock
}

// attempt runs one allowed attempt with outcome o; false if refused.
func attempt(br *breaker, o outcome) bool {
	report, err := br.allow()
	if err != nil {
		if !errors.Is(err, errBreakerOpen) {
			panic(err)
		}
		return false
	}
	report(o)
	return true
}

func TestBreakerOpensAfterThreshold(t *testing.T) {
	br, _ := newTestBreaker(3)
	for i := 0; i < 3; i++ {
		if !attempt(br, outcomeFailure) {
			t.Fatalf("attempt %d refused before the threshold", i+1)
		}
	}
	if br.state() != "open" {
		t.Fatalf("state %s after 3 failures, want open", br.state())
	}
	if attempt(br, outcomeSuccess) {
		t.Fatal("open breaker let an attempt through")
	}
}

func TestBreakerSuccessResetsCount(t *testing.T) {
	br, _ := newTestBreaker(3)
	for _, o := range []outcome{outcomeFailure, outcomeFailure, outcomeSuccess, outcomeFailure, outcomeFailure, outcomeUnknown, outcomeUnknown} {
		attempt(br, o)
	}
	if br.state() != "closed" {
		t.Fatalf("state %s: failures separated by a success (or of unknown outcome) must not add up", br.state())
	}
	attempt(br, outcomeFailure)
	if br.state() != "open" {
		t.Fatalf("state %s after the 3rd failure in a row", br.state())
	}
}

func TestBreakerProbeAndRecovery(t *testing.T) {
	br, clock := newTestBreaker(1)
	attempt(br, outcomeFailure)
	clock.advance(999 * time.Millisecond)
	if attempt(br, outcomeSuccess) {
		t.Fatal("attempt allowed during the cooldown")
	}
	clock.advance(time.Millisecond)
	if br.state() != "half-open" {
		t.Fatalf("state %s after the cooldown", br.state())
	}
	report, err := br.allow()
	if err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	if _, err := br.allow(); !errors.Is(err, errBreakerOpen) {
		t.Fatalf("second attempt during the probe: %v, want fail-fast", err)
	}
	report(outcomeSuccess)
	if br.state() != "closed" || !attempt(br, outcomeSuccess) {
		t.Fatalf("state %s after a good probe, want closed", br.state())
	}
}

func TestBreakerBackoff(t *testing.T) {
	br, clock := newTestBreaker(1)
	attempt(br, outcomeFailure)
	// Failed probes double the cooldown: 1 s, 2 s, 4 s, then capped at 4 s.
	for i, want := range []time.Duration{2 * time.Second, 4 * time.Second, 4 * time.Second} {
		clock.advance(br.cooldown)
		if !attempt(br, outcomeFailure) {
			t.Fatalf("probe %d refused", i+1)
		}
		if br.cooldown != want {
			t.Fatalf("cooldown after failed probe %d: %v, want %v", i+1, br.cooldown, want)
		}
		clock.advance(want - time.Millisecond)
		if attempt(br, outcomeSuccess) {
			t.Fatalf("attempt allowed %v into a %v cooldown", want-time.Millisecond, want)
		}
		clock.advance(time.Millisecond)
	}
	// A probe of unknown outcome (the client gave up) frees the slot.
	if !attempt(br, outcomeUnknown) || !attempt(br, outcomeSuccess) {
		t.Fatal("no probe after an unknown outcome")
	}
	if br.cooldown != time.Second {
		t.Fatalf("cooldown %v after recovery, want it reset to 1s", br.cooldown)
	}
}

func TestBreakerLateSuccessCloses(t *testing.T) {
	br, _ := newTestBreaker(1)
	slow, err := br.allow() // in flight while others fail
	if err != nil {
		t.Fatal(err)
	}
	attempt(br, outcomeFailure)
	if br.state() != "open" {
		t.Fatal("not open")
	}
	slow(outcomeSuccess)
	if br.state() != "closed" {
		t.Fatalf("state %s: a connection that got through proves the upstream up", br.state())
	}
}

// TestBackendBreaker drives the breaker through Login: an upstream that
// accepts and never greets costs the first clients the login timeout; the
// next ones fail at once without a connection; when the upstream answers
// again a login after the cooldown succeeds.
func TestBackendBreaker(t *testing.T) {
	checkGoroutines(t)
	mem := startMem(t, capsFull)
	relay, err := faultnet.Listen(mem.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	relay.SetAccept(faultnet.AcceptHang)
	b := newBackend(t, &URL{Scheme: SchemeInsecure, Host: relay.Addr()}, func(o *Options) {
		o.LoginTimeout = 200 * time.Millisecond
		o.Breaker = BreakerOptions{Threshold: 3, Cooldown: 300 * time.Millisecond}
	})
	for i := 1; i <= 3; i++ {
		_, err := b.Login(context.Background(), testConn, testUser, testPass)
		wantCode(t, err, pop3server.ErrTemporary)
		if errors.Is(err, errBreakerOpen) {
			t.Fatalf("login %d failed fast before the threshold", i)
		}
	}
	accepted := relay.Accepted()
	for i := 0; i < 20; i++ {
		_, err := b.Login(context.Background(), testConn, testUser, testPass)
		wantCode(t, err, pop3server.ErrTemporary)
		if !errors.Is(err, errBreakerOpen) {
			t.Fatalf("login after the threshold: %v, want fail-fast", err)
		}
	}
	if n := relay.Accepted() - accepted; n != 0 {
		t.Fatalf("%d connections reached the upstream while the breaker was open", n)
	}

	relay.SetAccept(faultnet.AcceptForward)
	relay.CutAll()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mb, err := b.Login(context.Background(), testConn, testUser, testPass)
		if err == nil {
			mb.Close()
			break
		}
		if !errors.Is(err, errBreakerOpen) || time.Now().After(deadline) {
			t.Fatalf("login after the upstream came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := b.breakers.get((&URL{Scheme: SchemeInsecure, Host: relay.Addr()}).String(), b.opts.Breaker, b.opts.Logger).state(); s != "closed" {
		t.Fatalf("breaker %s after a successful login", s)
	}
}

// TestBackendBreakerIgnoresAuthFailures: a wrong password proves the
// upstream reachable and never opens the breaker.
func TestBackendBreakerIgnoresAuthFailures(t *testing.T) {
	mem := startMem(t, capsFull)
	b := newBackend(t, mem.url(), func(o *Options) { o.Breaker = BreakerOptions{Threshold: 1} })
	for i := 0; i < 3; i++ {
		_, err := b.Login(context.Background(), testConn, testUser, "wrong")
		wantCode(t, err, pop3server.ErrAuthFailed)
	}
}

func TestBackendBreakerDisabled(t *testing.T) {
	relay, err := faultnet.Listen("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	relay.SetAccept(faultnet.AcceptReset)
	b := newBackend(t, &URL{Scheme: SchemeInsecure, Host: relay.Addr()}, func(o *Options) {
		o.Breaker = BreakerOptions{Threshold: -1}
	})
	for i := 0; i < 8; i++ {
		_, err := b.Login(context.Background(), testConn, testUser, testPass)
		if errors.Is(err, errBreakerOpen) {
			t.Fatal("disabled breaker opened")
		}
	}
	if relay.Accepted() != 8 {
		t.Fatalf("%d connections, want all 8 tried", relay.Accepted())
	}
}

// TestBackendHealth: Health counts the server-wide upstream's failed
// connects in a row, logins failed fast by the open breaker included, also
// with the breaker disabled; Probe finds the upstream back, which resets
// the count and closes the breaker.
func TestBackendHealth(t *testing.T) {
	for _, threshold := range []int{2, -1} {
		mem := startMem(t, capsFull)
		relay, err := faultnet.Listen(mem.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		b := newBackend(t, &URL{Scheme: SchemeInsecure, Host: relay.Addr()}, func(o *Options) {
			o.Breaker = BreakerOptions{Threshold: threshold, Cooldown: time.Hour}
		})
		if h := b.Health(); h != (Health{}) {
			t.Fatalf("threshold %d: health %+v before any login", threshold, h)
		}
		relay.Down()
		for range 4 {
			_, err := b.Login(context.Background(), testConn, testUser, testPass)
			wantCode(t, err, pop3server.ErrTemporary)
		}
		want := Health{ConnectFailures: 4, Open: threshold > 0}
		if h := b.Health(); h != want {
			t.Fatalf("threshold %d: health %+v after 4 failed logins, want %+v", threshold, h, want)
		}
		if err := b.Probe(context.Background()); err == nil {
			t.Fatalf("threshold %d: probe succeeded with the upstream down", threshold)
		}
		if err := relay.Up(); err != nil {
			t.Fatal(err)
		}
		if err := b.Probe(context.Background()); err != nil {
			t.Fatalf("threshold %d: probe with the upstream back: %v", threshold, err)
		}
		if h := b.Health(); h != (Health{}) {
			t.Fatalf("threshold %d: health %+v after a good probe", threshold, h)
		}
		mb, err := b.Login(context.Background(), testConn, testUser, testPass)
		if err != nil {
			t.Fatalf("threshold %d: login after a good probe: %v", threshold, err)
		}
		mb.Close()
	}
}

// TestNegativeTimeoutsDisable: as in pop3server.Options, a negative
// timeout switches the limit off (zero is the default): a login with
// every timeout negative still works.
func TestNegativeTimeoutsDisable(t *testing.T) {
	mem := startMem(t, capsFull)
	msg := testMessage("negative", 50)
	mem.append(t, "INBOX", msg)
	b := newBackend(t, mem.url(), func(o *Options) {
		o.DialTimeout, o.LoginTimeout, o.CommandTimeout = -1, -1, -1
	})
	if b.opts.DialTimeout != -1 || b.opts.LoginTimeout != -1 || b.opts.CommandTimeout != -1 {
		t.Fatalf("negative timeouts replaced: %v %v %v", b.opts.DialTimeout, b.opts.LoginTimeout, b.opts.CommandTimeout)
	}
	mb, err := b.Login(context.Background(), testConn, testUser, testPass)
	if err != nil {
		t.Fatalf("login with timeouts disabled: %v", err)
	}
	body, err := mb.Retrieve(context.Background(), 1)
	if err != nil {
		t.Fatalf("RETR with timeouts disabled: %v", err)
	}
	if got, err := io.ReadAll(body); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("body with timeouts disabled: %d octets, %v", len(got), err)
	}
	body.Close()
	mb.Close()
	d := newBackend(t, mem.url(), func(o *Options) { o.CommandTimeout = 0 })
	if d.opts.DialTimeout != DefaultDialTimeout || d.opts.LoginTimeout != DefaultLoginTimeout || d.opts.CommandTimeout != DefaultCommandTimeout {
		t.Fatalf("zero timeouts not the defaults: %v %v %v", d.opts.DialTimeout, d.opts.LoginTimeout, d.opts.CommandTimeout)
	}
}
