package loginguard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/pop3server"
)

// upstream is a fake backend counting the attempts that reach it.
type upstream struct {
	mu        sync.Mutex
	passwords map[string]string
	calls     []string // user/password of every attempt
	down      bool
	gate      chan struct{} // when set, each Login waits for it
}

func (u *upstream) Login(ctx context.Context, _ pop3server.ConnInfo, user, pass string) (pop3server.Mailbox, error) {
	if u.gate != nil {
		<-u.gate
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls = append(u.calls, user+"/"+pass)
	if u.down {
		return nil, pop3server.ErrTemporary
	}
	if p, ok := u.passwords[user]; ok && p == pass {
		return nopMailbox{}, nil
	}
	return nil, pop3server.ErrAuthFailed
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.calls)
}

type nopMailbox struct{ pop3server.Mailbox }

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newGuard(t *testing.T, opts Options) (*Guard, *upstream, *clock) {
	up := &upstream{passwords: map[string]string{"alice": "right", "bob": "bobs"}}
	clk := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	opts.Now = clk.now
	return New(up, opts), up, clk
}

func login(g *Guard, user, pass string) error {
	_, err := g.Login(context.Background(), pop3server.ConnInfo{}, user, pass)
	return err
}

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	if !errors.Is(err, pop3server.ErrAuthFailed) || pop3server.FailureReason(err) != reason {
		t.Fatalf("got %v (reason %q), want [AUTH] with reason %q", err, pop3server.FailureReason(err), reason)
	}
}

// The same wrong password reaches the upstream once per NegativeTTL.
func TestNegativeCache(t *testing.T) {
	g, up, clk := newGuard(t, Options{})
	wantReason(t, login(g, "bob", "guess"), pop3server.ReasonAuthFailed)
	for range 5 {
		wantReason(t, login(g, "bob", "guess"), "recently refused upstream")
	}
	if n := up.count(); n != 1 {
		t.Fatalf("%d upstream attempts for one wrong password, want 1", n)
	}
	// Another password, or the same with another case of user name (the
	// upstream decides whether case matters), is its own pair.
	wantReason(t, login(g, "Bob", "guess"), pop3server.ReasonAuthFailed)
	if err := login(g, "bob", "bobs"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	clk.advance(DefaultNegativeTTL)
	wantReason(t, login(g, "bob", "guess"), pop3server.ReasonAuthFailed)
	if n := up.count(); n != 4 {
		t.Fatalf("%d upstream attempts, want 4", n)
	}
}

// A user under attack gets UserBurst unverified attempts, then one per
// UserInterval; a password that logged in before is always tried.
func TestUserThrottle(t *testing.T) {
	g, up, clk := newGuard(t, Options{})
	if err := login(g, "alice", "right"); err != nil { // known good from now on
		t.Fatal(err)
	}
	for i := range DefaultUserBurst {
		wantReason(t, login(g, "alice", fmt.Sprint("guess", i)), pop3server.ReasonAuthFailed)
	}
	for i := range 50 {
		wantReason(t, login(g, "ALICE", fmt.Sprint("more", i)), "too many failed logins for this user")
		if err := login(g, "alice", "right"); err != nil {
			t.Fatalf("the right password under attack: %v", err)
		}
	}
	if n := up.count(); n != 1+DefaultUserBurst+50 {
		t.Fatalf("%d upstream attempts, want %d", n, 1+DefaultUserBurst+50)
	}
	// Other users are not affected.
	if err := login(g, "bob", "bobs"); err != nil {
		t.Fatal(err)
	}
	// One more unverified attempt per interval.
	clk.advance(DefaultUserInterval)
	wantReason(t, login(g, "alice", "later"), pop3server.ReasonAuthFailed)
	wantReason(t, login(g, "alice", "later2"), "too many failed logins for this user")
}

// A successful unverified login (a new password) gives its token back, so
// a user whose devices log in often is never throttled by it.
func TestSuccessGivesTokenBack(t *testing.T) {
	g, up, _ := newGuard(t, Options{UserBurst: 1})
	for i := range 10 {
		g.knownGood.Purge() // as if each login used a new password
		if err := login(g, "bob", "bobs"); err != nil {
			t.Fatalf("login %d: %v", i+1, err)
		}
	}
	if n := up.count(); n != 10 {
		t.Fatalf("%d upstream attempts, want 10", n)
	}
}

// An unreachable upstream teaches nothing: not a refusal, no token spent.
func TestTemporaryFailureNotCounted(t *testing.T) {
	g, up, _ := newGuard(t, Options{UserBurst: 1})
	up.down = true
	for range 5 {
		if err := login(g, "bob", "bobs"); !errors.Is(err, pop3server.ErrTemporary) {
			t.Fatalf("got %v", err)
		}
	}
	up.down = false
	if err := login(g, "bob", "bobs"); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

// Identical attempts in flight at once cost the upstream one attempt.
func TestIdenticalAttemptsShareVerdict(t *testing.T) {
	g, up, _ := newGuard(t, Options{})
	up.gate = make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- login(g, "bob", "same-guess")
		}()
	}
	// Wait until one is at the upstream and the others wait for it.
	for {
		g.mu.Lock()
		n := len(g.inflight)
		g.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(up.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, pop3server.ErrAuthFailed) {
			t.Fatalf("got %v", err)
		}
	}
	if n := up.count(); n != 1 {
		t.Fatalf("%d upstream attempts for 20 identical ones", n)
	}
}

// The tables hold keyed hashes: the same pair gives different keys in two
// processes (guards), and the key is not a plain hash of the password.
func TestKeyedHash(t *testing.T) {
	g1, _, _ := newGuard(t, Options{})
	g2, _, _ := newGuard(t, Options{})
	if g1.pair("bob", "pw") == g2.pair("bob", "pw") {
		t.Fatal("two guards derive the same key: the HMAC key is not random")
	}
	if g1.pair("bob", "pw") == g1.pair("bo", "bpw") {
		t.Fatal("user and password are not separated")
	}
}

// Logins with a password known to be right never wait for each other
// (several devices of one user polling at once).
func TestKnownGoodNotSerialized(t *testing.T) {
	g, up, _ := newGuard(t, Options{})
	if err := login(g, "bob", "bobs"); err != nil {
		t.Fatal(err)
	}
	up.gate = make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := login(g, "bob", "bobs"); err != nil {
				t.Error(err)
			}
		}()
	}
	// All three reach the upstream together: none waits for another.
	for {
		g.mu.Lock()
		n := g.upstreamCalls
		g.mu.Unlock()
		if n == 4 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	g.mu.Lock()
	inflight := len(g.inflight)
	g.mu.Unlock()
	if inflight != 0 {
		t.Errorf("known-good logins registered as in flight")
	}
	close(up.gate)
	wg.Wait()
}

// Under attack, the attempts that come back one per UserInterval are not
// for addresses the upstream refused recently: a sustained attack from
// the same addresses adds no upstream failure after its burst, while a
// device that has not been failing can still try a new password.
func TestThrottleSlotsNotForFailingAddresses(t *testing.T) {
	g, up, clk := newGuard(t, Options{})
	from := func(ip string) pop3server.ConnInfo {
		return pop3server.ConnInfo{RemoteAddr: netip.MustParseAddrPort(ip + ":40000")}
	}
	attacker := func(i int) error {
		_, err := g.Login(context.Background(), from("192.0.2.66"), "alice", fmt.Sprint("guess", i))
		return err
	}
	for i := range DefaultUserBurst {
		wantReason(t, attacker(i), pop3server.ReasonAuthFailed)
	}
	before := up.count()
	for i := range 10 {
		clk.advance(DefaultUserInterval) // a slot comes back every time...
		wantReason(t, attacker(100+i), "too many failed logins for this user")
	}
	if n := up.count(); n != before {
		t.Fatalf("%d more upstream attempts from the failing address, want none", n-before)
	}
	// ... and another address that has not failed may use it: the real
	// user with a new password.
	if _, err := g.Login(context.Background(), from("198.51.100.7"), "alice", "right"); err != nil {
		t.Fatalf("a new password from a clean address under attack: %v", err)
	}
	// IPv6 addresses count by /64.
	_, err := g.Login(context.Background(), from("[2001:db8:1:2::5]"), "bob", "x1")
	wantReason(t, err, pop3server.ReasonAuthFailed)
	for i := range DefaultUserBurst - 1 {
		_, err = g.Login(context.Background(), from("[2001:db8:1:2::9]"), "bob", fmt.Sprint("y", i))
		wantReason(t, err, pop3server.ReasonAuthFailed)
	}
	clk.advance(DefaultUserInterval)
	_, err = g.Login(context.Background(), from("[2001:db8:1:2::77]"), "bob", "z")
	wantReason(t, err, "too many failed logins for this user")
	// Once NegativeTTL has passed, the address is not failing any more.
	clk.advance(DefaultNegativeTTL)
	wantReason(t, attacker(999), pop3server.ReasonAuthFailed)
}
