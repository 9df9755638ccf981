package pop3server

import (
	"net/netip"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// Which client addresses count as local for --plaintext-auth local.
func TestPlaintextAllowedAddresses(t *testing.T) {
	local := []string{"127.0.0.1", "127.1.2.3", "::1", "10.0.0.1", "172.16.0.1", "172.31.255.255",
		"192.168.1.1", "fd00::1", "fc12::1", "fe80::1", "169.254.1.1", "::ffff:192.168.1.1"}
	public := []string{"8.8.8.8", "172.32.0.1", "100.64.0.1", "192.0.2.1", "2001:db8::1", "2a00:1450::1",
		"::ffff:8.8.8.8", "0.0.0.0", "::"}
	for mode, name := range map[PlaintextAuth]string{PlaintextLocal: "local", PlaintextAlways: "always", PlaintextNever: "never"} {
		s := NewServer(newFake(), Options{PlaintextAuth: mode})
		for _, a := range local {
			if got, want := s.plaintextAllowed(netip.MustParseAddr(a)), mode != PlaintextNever; got != want {
				t.Errorf("%s: plaintextAllowed(%s) = %v, want %v", name, a, got, want)
			}
		}
		for _, a := range public {
			if got, want := s.plaintextAllowed(netip.MustParseAddr(a)), mode == PlaintextAlways; got != want {
				t.Errorf("%s: plaintextAllowed(%s) = %v, want %v", name, a, got, want)
			}
		}
	}
}

// On the wire: without TLS from a public address, CAPA hides USER and
// SASL, the bare AUTH lists nothing, and USER, PASS and AUTH answer -ERR
// without the backend hearing of it; STLS then opens the door.
func TestPlaintextAuthOnTheWire(t *testing.T) {
	const refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections"
	cases := []struct {
		name   string
		mode   PlaintextAuth
		remote string
		allow  bool
	}{
		{"local from public", PlaintextLocal, "203.0.113.7:40000", false},
		{"local from public v6", PlaintextLocal, "[2001:db8::7]:40000", false},
		{"local from RFC 1918", PlaintextLocal, "192.168.7.7:40000", true},
		{"local from loopback", PlaintextLocal, "127.0.0.1:40000", true},
		{"always from public", PlaintextAlways, "203.0.113.7:40000", true},
		{"never from loopback", PlaintextNever, "127.0.0.1:40000", false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			b := newFake()
			srv := NewServer(b, Options{PlaintextAuth: tt.mode, TLSConfig: serverTLS(t), Limits: Limits{MaxBadCommandsPreLogin: 20}})
			addr := serveOn(t, srv, fromAddr(tt.remote))
			c := dial(t, addr)
			caps := capa(c)
			if pop3client.HasCap(caps, "USER") != tt.allow || pop3client.HasCap(caps, "SASL") != tt.allow || !pop3client.HasCap(caps, "STLS") {
				t.Fatalf("CAPA = %q, want USER and SASL %v, STLS", caps, tt.allow)
			}
			if tt.allow {
				c.Send("AUTH")
				c.Expect("+OK", "PLAIN", "LOGIN", ".")
				loginAlice(c)
				return
			}
			c.Send("AUTH")
			c.Expect("+OK", ".")
			c.Send("USER alice")
			c.Expect(refused)
			c.Send("PASS secret")
			c.Expect(refused)
			c.Send("AUTH PLAIN " + b64("\x00alice\x00secret"))
			c.Expect(refused)
			c.Send("AUTH LOGIN")
			c.Expect(refused)
			c.Send("STAT")
			c.Expect("-ERR command not valid in this state")
			b.mu.Lock()
			n := len(b.logins)
			b.mu.Unlock()
			if n != 0 {
				t.Fatalf("backend saw %d logins", n)
			}
			startTLS(c)
			if caps := capa(c); !pop3client.HasCap(caps, "USER") || !pop3client.HasCap(caps, "SASL PLAIN LOGIN") || pop3client.HasCap(caps, "STLS") {
				t.Fatalf("CAPA over TLS = %q", caps)
			}
			loginAlice(c)
		})
	}
}
