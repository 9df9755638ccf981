package pop3server

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// A logged-in client silent for ReleaseAfter has its Mailbox released,
// once per wait for a command; the commands that follow are unaffected.
func TestReleaseWhileIdle(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{Limits: Limits{ReleaseAfter: time.Millisecond}})
	c := dial(t, addr)
	loginAlice(c)
	waitFor(t, func() bool { return b.released() == 1 })
	c.Send("STAT")
	c.Expect("+OK 3 *")
	waitFor(t, func() bool { return b.released() == 2 })
	c.Send("RETR 2")
	c.Expect("+OK*")
	if got := c.Multiline(); !bytes.Equal(got, sampleMsgs[1]) {
		t.Fatalf("RETR after release = %q", got)
	}
	waitFor(t, func() bool { return b.released() == 3 })
	c.Send("QUIT")
	c.Expect("+OK*")
	c.ExpectClosed()
	if got := b.released(); got != 3 {
		t.Errorf("%d releases for 3 waits", got)
	}
}

// A command that has begun to arrive ends the wait for a release without
// losing its first octets.
func TestReleaseWaitKeepsSplitCommand(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{Limits: Limits{ReleaseAfter: time.Hour}})
	c := dial(t, addr)
	loginAlice(c)
	io.WriteString(c.Conn(), "NO")
	c.Send("OP")
	c.Expect("+OK")
	if n := b.released(); n != 0 {
		t.Errorf("%d releases", n)
	}
}

// Release is off with a negative ReleaseAfter, and never comes when the
// idle timeout would fire first: that timeout ends the session as ever.
func TestReleaseDisabled(t *testing.T) {
	for _, lim := range []Limits{
		{ReleaseAfter: -1, IdleTimeout: 20 * time.Millisecond},
		{ReleaseAfter: time.Hour, IdleTimeout: 20 * time.Millisecond},
	} {
		b := newFake()
		_, addr := startServer(t, b, Options{Limits: lim})
		c := dial(t, addr)
		loginAlice(c)
		c.Expect("-ERR Disconnected for inactivity.")
		c.ExpectClosed()
		if n := b.released(); n != 0 {
			t.Errorf("%+v: %d releases", lim, n)
		}
	}
}

// After a release the idle timeout still ends a silent session.
func TestIdleTimeoutAfterRelease(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{Limits: Limits{ReleaseAfter: time.Millisecond, IdleTimeout: 50 * time.Millisecond}})
	c := dial(t, addr)
	loginAlice(c)
	c.Expect("-ERR Disconnected for inactivity.")
	c.ExpectClosed()
	if n := b.released(); n != 1 {
		t.Errorf("%d releases, want 1", n)
	}
}

// A Shutdown while a session waits to release is not lost: the session
// says goodbye at once, whichever of the two waits it was in.
func TestShutdownWhileWaitingToRelease(t *testing.T) {
	for _, after := range []time.Duration{time.Hour, time.Millisecond} {
		b := newFake()
		srv, addr := startServer(t, b, Options{Limits: Limits{ReleaseAfter: after}})
		c := dial(t, addr)
		loginAlice(c)
		c.Send("STAT")
		c.Expect("+OK 3 *")
		if after == time.Millisecond {
			waitFor(t, func() bool { return b.released() == 1 })
		}
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		c.Expect("-ERR [SYS/TEMP] server shutting down, try again later")
		c.ExpectClosed()
	}
}

// Over POP3S the wait for a release times out inside crypto/tls, which
// keeps the connection usable after a timeout: the session goes on.
func TestReleaseOverImplicitTLS(t *testing.T) {
	b := newFake()
	srv := NewServer(b, Options{Limits: Limits{ReleaseAfter: time.Millisecond, AuthFailDelay: time.Millisecond}})
	cfg := serverTLS(t)
	addr := serveOn(t, srv, func(l net.Listener) net.Listener { return tls.NewListener(l, cfg) })
	nc, err := tls.Dial("tcp", addr, clientTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	c := wrapClient(t, nc)
	c.Expect("+OK popbridge ready.")
	loginAlice(c)
	for i := 1; i <= 3; i++ {
		waitFor(t, func() bool { return b.released() == i })
		c.Send("RETR 1")
		c.Expect("+OK*")
		if got := c.Multiline(); !bytes.Equal(got, sampleMsgs[0]) {
			t.Fatalf("RETR after release %d = %q", i, got)
		}
	}
}
