package pop3server

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// capa reads a CAPA response and returns its capability lines.
func capa(c *pop3client.Client) []string {
	c.TB().Helper()
	c.Send("CAPA")
	c.Expect("+OK Capability list follows")
	return c.LinesToDot()
}

// Commands pipelined after STLS in the same write were sent in clear and
// may have been injected by a man in the middle (CVE-2011-0411): they are
// discarded, neither answered in clear nor executed after the handshake.
func TestSTLSDiscardsPipelinedCommands(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{TLSConfig: serverTLS(t), PlaintextAuth: PlaintextNever})
	c := dial(t, addr)
	if caps := capa(c); !pop3client.HasCap(caps, "STLS") || pop3client.HasCap(caps, "USER") || pop3client.HasCap(caps, "SASL") {
		t.Fatalf("CAPA in clear with plaintext-auth never = %q, want STLS and no USER/SASL", caps)
	}
	io.WriteString(c.Conn(), "STLS\r\nCAPA\r\nUSER alice\r\nPASS secret\r\nNOOP\r\n")
	c.Expect("+OK Begin TLS negotiation now.")
	// Nothing else in clear: an answer to the pipelined CAPA would sit in
	// the buffer now, or break the handshake below.
	time.Sleep(50 * time.Millisecond)
	if n := c.Reader().Buffered(); n > 0 {
		got, _ := c.Reader().Peek(n)
		t.Fatalf("pipelined command answered in clear: %q", got)
	}
	tc := tls.Client(c.Conn(), clientTLS(t))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.Upgrade(tc)
	caps := capa(c) // the first answer over TLS is to this CAPA, not the pipelined one
	if pop3client.HasCap(caps, "STLS") || !pop3client.HasCap(caps, "USER") || !pop3client.HasCap(caps, "SASL") {
		t.Fatalf("CAPA after STLS = %q, want USER and SASL, no STLS", caps)
	}
	// The pipelined USER was not executed: PASS now has no USER.
	c.Send("PASS secret")
	c.Expect("-ERR USER first")
	c.Send("STAT")
	c.Expect("-ERR command not valid in this state")
	b.mu.Lock()
	logins := len(b.logins)
	b.mu.Unlock()
	if logins != 0 {
		t.Fatalf("pipelined PASS reached the backend: %d logins", logins)
	}
	loginAlice(c)
}

// A USER given in clear is forgotten by STLS: the client logs in afresh.
func TestSTLSForgetsUser(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{TLSConfig: serverTLS(t)})
	c := dial(t, addr)
	c.Send("USER alice")
	c.Expect("+OK")
	startTLS(c)
	c.Send("PASS secret")
	c.Expect("-ERR USER first")
	loginAlice(c)
	c.Send("STAT")
	c.Expect("+OK 3 *")
}

func TestSTLSRefusals(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{TLSConfig: serverTLS(t), Limits: Limits{MaxBadCommandsPreLogin: 10}})

	t.Run("after login", func(t *testing.T) {
		c := dial(t, addr)
		loginAlice(c)
		c.Send("STLS")
		c.Expect("-ERR command not valid in this state")
		c.Send("STAT")
		c.Expect("+OK 3 *")
	})
	t.Run("twice", func(t *testing.T) {
		c := dial(t, addr)
		startTLS(c)
		c.Send("STLS")
		c.Expect("-ERR TLS already active")
		if caps := capa(c); pop3client.HasCap(caps, "STLS") {
			t.Fatalf("CAPA over TLS offers STLS: %q", caps)
		}
	})
	t.Run("with argument", func(t *testing.T) {
		c := dial(t, addr)
		c.Send("STLS now")
		c.Expect("-ERR STLS takes no argument")
	})
}

// Implicit TLS (POP3S): no STLS offered, logins allowed whatever the
// plaintext-auth setting.
func TestImplicitTLS(t *testing.T) {
	b := newFake()
	srv := NewServer(b, Options{TLSConfig: serverTLS(t), PlaintextAuth: PlaintextNever, Limits: Limits{AuthFailDelay: time.Millisecond}})
	cfg := serverTLS(t)
	addr := serveOn(t, srv, func(l net.Listener) net.Listener { return tls.NewListener(l, cfg) })
	nc, err := tls.Dial("tcp", addr, clientTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	c := wrapClient(t, nc)
	c.Expect("+OK popbridge ready.")
	caps := capa(c)
	if pop3client.HasCap(caps, "STLS") || !pop3client.HasCap(caps, "USER") {
		t.Fatalf("CAPA on POP3S = %q", caps)
	}
	c.Send("STLS")
	c.Expect("-ERR TLS already active")
	loginAlice(c)
}

// A TLS handshake that stalls, or fails, ends the connection within the
// pre-login deadline, on STLS and on implicit TLS.
func TestStalledHandshakeClosed(t *testing.T) {
	opts := Options{TLSConfig: serverTLS(t), Limits: Limits{PreLoginIdleTimeout: 200 * time.Millisecond, PreLoginTimeout: 400 * time.Millisecond}}
	cases := map[string]func(t *testing.T) *pop3client.Client{
		"stls silent": func(t *testing.T) *pop3client.Client {
			_, addr := startServer(t, newFake(), opts)
			c := dial(t, addr)
			c.Send("STLS")
			c.Expect("+OK Begin TLS negotiation now.")
			return c
		},
		"stls garbage": func(t *testing.T) *pop3client.Client {
			_, addr := startServer(t, newFake(), opts)
			c := dial(t, addr)
			c.Send("STLS")
			c.Expect("+OK Begin TLS negotiation now.")
			c.Send("USER alice") // not a ClientHello
			return c
		},
		"implicit silent": func(t *testing.T) *pop3client.Client {
			srv := NewServer(newFake(), opts)
			addr := serveOn(t, srv, func(l net.Listener) net.Listener { return tls.NewListener(l, opts.TLSConfig) })
			return dialRaw(t, addr)
		},
		"implicit half hello": func(t *testing.T) *pop3client.Client {
			srv := NewServer(newFake(), opts)
			addr := serveOn(t, srv, func(l net.Listener) net.Listener { return tls.NewListener(l, opts.TLSConfig) })
			c := dialRaw(t, addr)
			c.Conn().Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a record header promising 512 octets
			return c
		},
	}
	for name, start := range cases {
		t.Run(name, func(t *testing.T) {
			begin := time.Now()
			c := start(t)
			c.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.Copy(io.Discard, c.Conn())
			if err != nil {
				t.Fatalf("want the server to close, got %v", err)
			}
			if d := time.Since(begin); d > 3*time.Second {
				t.Fatalf("closed after %v, want about the 400ms pre-login deadline", d)
			}
		})
	}
}
