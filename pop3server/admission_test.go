package pop3server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// fakeNet serves srv on loopback and dials it from any 127.0.0.0/8
// address (all of which Linux routes to lo), so a test has many clients
// with distinct addresses and no PROXY protocol.
type fakeNet struct {
	t    *testing.T
	addr string
}

func newFakeNet(t *testing.T, srv *Server) *fakeNet {
	return &fakeNet{t: t, addr: serveOn(t, srv, nil)}
}

// dialFrom connects from the loopback address from and returns the client
// and the first line the server sent.
func (n *fakeNet) dialFrom(from string) (*pop3client.Client, string) {
	n.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", n.addr)
	if err != nil {
		n.t.Fatalf("dial from %s: %v", from, err)
	}
	c := pop3client.New(n.t, nc, clientOptions)
	return c, c.ReadLine()
}

// A flood of idle unauthenticated connections, kept up by an attacker
// who reconnects whatever is closed, never keeps real clients out: each
// new connection evicts the oldest unauthenticated one of the address
// holding the most, and logged-in sessions are never evicted.
func TestPreLoginFloodEvictsOldestUnauthenticated(t *testing.T) {
	const maxSessions, maxPreLogin, perIP = 40, 30, 10
	rec := &recorder{}
	srv := NewServer(newFake(), Options{
		Limits: Limits{
			MaxSessions:      maxSessions,
			MaxPreLoginConns: maxPreLogin,
			MaxConnsPerIP:    perIP,
			AuthFailDelay:    time.Millisecond,
		},
		PlaintextAuth: PlaintextAlways, Observer: rec,
	})
	n := newFakeNet(t, srv)

	// Logged-in sessions first: they must survive everything below.
	var sessions []*pop3client.Client
	for i := range 5 {
		c, greeting := n.dialFrom(fmt.Sprintf("127.0.2.%d", 100+i))
		if greeting != "+OK popbridge ready." {
			t.Fatalf("greeting %q", greeting)
		}
		loginAlice(c)
		sessions = append(sessions, c)
	}

	// The flood: 4 attacker addresses × 10 idle connections, more than
	// the 30 unauthenticated slots, re-opened as they are evicted.
	var flood []*pop3client.Client
	for i := range 4 * perIP {
		c, greeting := n.dialFrom(fmt.Sprintf("127.0.1.%d", 1+i%4))
		if greeting != "+OK popbridge ready." {
			t.Fatalf("flood connection %d: %q", i, greeting)
		}
		flood = append(flood, c)
	}
	if got := srv.Evictions(); got < 4*perIP-maxPreLogin {
		t.Fatalf("%d evictions after %d idle connections with %d slots", got, 4*perIP, maxPreLogin)
	}
	// An evicted connection is told why, then closed.
	flood[0].Expect("-ERR [SYS/TEMP] too many connections, closing the oldest unauthenticated ones")
	flood[0].ExpectClosed()

	// Real clients, each from its own address, log in and retrieve mail
	// while the attacker opens a new connection before each of them.
	for i := range 20 {
		n.dialFrom(fmt.Sprintf("127.0.1.%d", 1+i%4))
		c, greeting := n.dialFrom(fmt.Sprintf("127.0.3.%d", 1+i))
		if greeting != "+OK popbridge ready." {
			t.Fatalf("legitimate client %d refused during the flood: %q", i, greeting)
		}
		n.dialFrom(fmt.Sprintf("127.0.1.%d", 1+i%4))
		stillWorks(loginAndKeep(c))
	}
	for _, c := range sessions {
		stillWorks(c)
	}
	for _, s := range rec.ended() {
		if s.LoggedIn && s.Result == "evicted" {
			t.Fatalf("a logged-in session was evicted: %+v", s)
		}
	}
}

func loginAndKeep(c *pop3client.Client) *pop3client.Client {
	loginAlice(c)
	return c
}

// When logged-in sessions hold every slot, a new connection is refused
// rather than any of them closed.
func TestLoggedInSessionsNeverEvicted(t *testing.T) {
	srv := NewServer(newFake(), Options{Limits: Limits{MaxSessions: 3, AuthFailDelay: time.Millisecond}, PlaintextAuth: PlaintextAlways})
	n := newFakeNet(t, srv)
	var hs []*pop3client.Client
	for i := range 3 {
		c, _ := n.dialFrom(fmt.Sprintf("127.0.2.%d", i+1))
		hs = append(hs, loginAndKeep(c))
	}
	c, line := n.dialFrom("127.0.1.1")
	if line != "-ERR [SYS/TEMP] too many connections" {
		t.Fatalf("got %q", line)
	}
	c.ExpectClosed()
	for _, h := range hs {
		stillWorks(h)
	}
}

// A connection whose credentials are being checked by the backend is not
// evicted: the upstream attempt would be wasted.
func TestLoginInProgressNotEvicted(t *testing.T) {
	b := newFake()
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv := NewServer(&gatedBackend{fakeBackend: b, gate: gate, entered: entered},
		Options{Limits: Limits{MaxPreLoginConns: 2, AuthFailDelay: time.Millisecond}, PlaintextAuth: PlaintextAlways})
	n := newFakeNet(t, srv)
	slow, _ := n.dialFrom("127.0.2.1")
	slow.Send("USER alice")
	slow.Expect("+OK")
	slow.Send("PASS secret")
	<-entered
	idle, _ := n.dialFrom("127.0.2.2")
	// Full: the idle one goes, not the one logging in.
	_, line := n.dialFrom("127.0.2.3")
	if line != "+OK popbridge ready." {
		t.Fatalf("got %q", line)
	}
	idle.Expect("-ERR [SYS/TEMP] *")
	close(gate)
	slow.Expect("+OK Logged in.")
	stillWorks(slow)
}

type gatedBackend struct {
	*fakeBackend
	gate    chan struct{}
	entered chan struct{}
}

func (g *gatedBackend) Login(ctx context.Context, conn ConnInfo, user, pass string) (Mailbox, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
	return g.fakeBackend.Login(ctx, conn, user, pass)
}

// The per-address cap counts unauthenticated connections only: behind a
// NAT, eleven users (more than the cap of 10) are all served from one
// address; after login the cap is per user and address, like Dovecot's
// mail_max_userip_connections.
func TestPerIPCapIsForUnauthenticated(t *testing.T) {
	srv := NewServer(newFake(), Options{Limits: Limits{AuthFailDelay: time.Millisecond}, PlaintextAuth: PlaintextAlways})
	if srv.opts.MaxConnsPerIP != 10 || srv.opts.MaxUserIPConns != 10 {
		t.Fatalf("defaults: per IP %d, per user+IP %d; want 10 and 10", srv.opts.MaxConnsPerIP, srv.opts.MaxUserIPConns)
	}
	n := newFakeNet(t, srv)
	const office = "127.0.1.7"
	var users []*pop3client.Client
	for i := range 11 {
		c, line := n.dialFrom(office)
		if line != "+OK popbridge ready." {
			t.Fatalf("user %d: %q", i+1, line)
		}
		c.Send(fmt.Sprintf("USER user%d", i+1))
		c.Expect("+OK")
		c.Send("PASS secret")
		c.Expect("+OK Logged in.")
		users = append(users, c)
	}
	for _, c := range users {
		c.Send("RETR 1")
		c.Expect("+OK*")
		if got := c.Multiline(); !bytes.Equal(got, sampleMsgs[0]) {
			t.Fatalf("RETR 1 = %q", got)
		}
	}
	// Unauthenticated connections from the address are still capped.
	var idle []*pop3client.Client
	for range 10 {
		c, line := n.dialFrom(office)
		if line != "+OK popbridge ready." {
			t.Fatalf("idle connection refused early: %q", line)
		}
		idle = append(idle, c)
	}
	c, line := n.dialFrom(office)
	if line != "-ERR [SYS/TEMP] too many connections from your address" {
		t.Fatalf("11th unauthenticated connection: %q", line)
	}
	c.ExpectClosed()

	// One user: 10 sessions from the address, the 11th is refused after
	// its login, and a session from elsewhere is not counted.
	for _, c := range idle {
		c.Conn().Close()
	}
	waitFor(t, func() bool { return srv.ActiveSessions() == 11 })
	for i := 1; i < 10; i++ { // user1 has one session already
		c, _ := n.dialFrom(office)
		c.Send("USER USER1") // the cap is case-insensitive, like logins
		c.Expect("+OK")
		c.Send("PASS secret")
		c.Expect("+OK Logged in.")
	}
	c, _ = n.dialFrom(office)
	c.Send("USER user1")
	c.Expect("+OK")
	c.Send("PASS secret")
	c.Expect("-ERR [IN-USE] Maximum number of connections from user+IP exceeded")
	c2, _ := n.dialFrom("127.0.2.9")
	c2.Send("USER user1")
	c2.Expect("+OK")
	c2.Send("PASS secret")
	c2.Expect("+OK Logged in.")
	// Ending a session frees its place.
	users[0].Send("QUIT")
	users[0].Expect("+OK*")
	waitFor(t, func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.userIP["user1\x00"+office] == 9
	})
	c.Send("PASS secret") // no USER: refused, proves the connection is alive
	c.Expect("-ERR USER first")
	c.Send("USER user1")
	c.Expect("+OK")
	c.Send("PASS secret")
	c.Expect("+OK Logged in.")
}

// Thunderbird sends AUTH before it shows its password prompt, so a person
// typing the password keeps the connection silent mid-exchange. The
// default pre-login idle limit is Dovecot's 180 s; the pause is tested
// with every pre-login limit scaled down by the same factor (150 s of
// 180 s, as 5 s of 6 s), so the test takes seconds, not minutes.
func TestPasswordPromptPause(t *testing.T) {
	t.Parallel()
	def := Options{}.withDefaults()
	if def.PreLoginIdleTimeout != 180*time.Second || def.PreLoginTimeout < 180*time.Second {
		t.Fatalf("pre-login idle %v, whole pre-login %v; want 180 s and at least that", def.PreLoginIdleTimeout, def.PreLoginTimeout)
	}
	const scale = 30
	idle, pause := def.PreLoginIdleTimeout/scale, 150*time.Second/scale
	_, addr := startServer(t, newFake(), Options{Limits: Limits{PreLoginIdleTimeout: idle, PreLoginTimeout: def.PreLoginTimeout / scale}})
	// In parallel: each waits out its pause.
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			c := dial(t, addr)
			c.Send("AUTH " + mech)
			c.Expect("+ *")
			if mech == "LOGIN" {
				c.Send(b64("alice"))
				c.Expect("+ *")
			}
			time.Sleep(pause) // the user types the password
			if mech == "LOGIN" {
				c.Send(b64("secret"))
			} else {
				c.Send(b64("\x00alice\x00secret"))
			}
			c.Expect("+OK Logged in.")
			stillWorks(c)
		})
	}
	t.Run("beyond the limit", func(t *testing.T) {
		t.Parallel()
		c := dial(t, addr)
		c.Send("AUTH PLAIN")
		c.Expect("+ ")
		c.Expect("-ERR Disconnected for inactivity.")
	})
}

// APOP and SASL mechanisms other than PLAIN and LOGIN are refused without
// a backend call, and the failed login says why.
func TestMechanismNotOfferedReason(t *testing.T) {
	rec := &recorder{}
	b := newFake()
	_, addr := startServer(t, b, Options{Observer: rec})
	c := dial(t, addr)
	c.Send("APOP alice c4c9334bac560ecc979e58001b3e22fb")
	c.Expect("-ERR unsupported authentication mechanism")
	c.Send("AUTH CRAM-MD5")
	c.Expect("-ERR unsupported authentication mechanism")
	c.Send("QUIT")
	c.Expect("+OK*")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.logins) != 2 {
		t.Fatalf("%d login events, want 2", len(rec.logins))
	}
	for i, want := range []string{"alice", ""} {
		e := rec.logins[i]
		if e.user != want || FailureReason(e.err) != "mechanism not offered" || !errors.Is(e.err, ErrAuthFailed) {
			t.Errorf("event %d: user %q, reason %q, err %v", i, e.user, FailureReason(e.err), e.err)
		}
	}
	if FailureReason(ErrAuthFailed) != ReasonAuthFailed {
		t.Errorf("plain refusal reason %q", FailureReason(ErrAuthFailed))
	}
	if len(b.logins) != 0 {
		t.Errorf("backend called: %q", b.logins)
	}
}
