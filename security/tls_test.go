package security

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/certs"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// TLS 1.0 and 1.1 are refused on POP3S and after STLS; on TLS 1.2 only
// ECDHE key exchange with AEAD ciphers is accepted.
func TestTLSVersionsAndSuites(t *testing.T) {
	b, cert := tlsBridge(t)
	try := func(t *testing.T, stls bool, cfg *tls.Config) error {
		nc, err := net.DialTimeout("tcp", map[bool]string{false: b.POP3S, true: b.POP3}[stls], 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c := wrap(t, nc)
		if stls {
			c.Expect("+OK*")
			c.Send("STLS")
			c.Expect("+OK*")
		}
		tc := tls.Client(nc, cfg)
		if err := tc.Handshake(); err != nil {
			return err
		}
		c.Upgrade(tc)
		return nil
	}
	cases := []struct {
		name string
		cfg  func() *tls.Config
		ok   bool
	}{
		{"TLS 1.0", func() *tls.Config {
			c := certs.Trusting(cert)
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
			return c
		}, false},
		{"TLS 1.1", func() *tls.Config {
			c := certs.Trusting(cert)
			c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
			return c
		}, false},
		{"TLS 1.2 CBC only", func() *tls.Config {
			c := certs.Trusting(cert)
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
			return c
		}, false},
		{"TLS 1.2 GCM", func() *tls.Config {
			c := certs.Trusting(cert)
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
			return c
		}, true},
		{"TLS 1.2 ChaCha20", func() *tls.Config {
			c := certs.Trusting(cert)
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
			return c
		}, true},
		{"TLS 1.3", func() *tls.Config { c := certs.Trusting(cert); c.MinVersion = tls.VersionTLS13; return c }, true},
	}
	for _, tt := range cases {
		for _, stls := range []bool{false, true} {
			name := tt.name + map[bool]string{false: " POP3S", true: " STLS"}[stls]
			t.Run(name, func(t *testing.T) {
				err := try(t, stls, tt.cfg())
				if tt.ok && err != nil {
					t.Fatalf("handshake refused: %v", err)
				}
				if !tt.ok && err == nil {
					t.Fatal("handshake accepted")
				}
			})
		}
	}
}

// STLS with CAPA and a login pipelined in the same write: nothing after
// STLS is answered in clear or executed after the handshake; the CAPA
// asked over TLS shows USER and no STLS.
func TestSTLSPipelinedInjection(t *testing.T) {
	b, cert := tlsBridge(t, "--plaintext-auth", "never")
	c := dialPOP3(t, b.POP3)
	if caps := c.Capa(); !pop3client.HasCap(caps, "STLS") || pop3client.HasCap(caps, "USER") || pop3client.HasCap(caps, "SASL") {
		t.Fatalf("CAPA in clear = %q, want STLS, no USER, no SASL", caps)
	}
	io.WriteString(c.Conn(), "STLS\r\nCAPA\r\nUSER demo\r\nPASS demo\r\n")
	c.Expect("+OK*")
	time.Sleep(100 * time.Millisecond)
	if n := c.Reader().Buffered(); n > 0 {
		got, _ := c.Reader().Peek(n)
		t.Fatalf("answered in clear after STLS: %q", got)
	}
	tc := tls.Client(c.Conn(), certs.Trusting(cert))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.Upgrade(tc)
	caps := c.Capa()
	if pop3client.HasCap(caps, "STLS") || !pop3client.HasCap(caps, "USER") || !pop3client.HasCap(caps, "SASL") {
		t.Fatalf("CAPA after STLS = %q", caps)
	}
	if got := c.Cmd("PASS demo"); got != "-ERR USER first" {
		t.Fatalf("PASS after STLS = %q: the pipelined USER was kept", got)
	}
	if got := c.Cmd("STAT"); got != "-ERR command not valid in this state" {
		t.Fatalf("STAT = %q: the pipelined login was executed", got)
	}
	c.Login("demo", "demo")
	if got := c.Cmd("STLS"); got != "-ERR command not valid in this state" {
		t.Fatalf("STLS after login = %q", got)
	}
	if got := c.Cmd("STAT"); len(got) < 3 || got[:3] != "+OK" {
		t.Fatalf("STAT after login = %q", got)
	}
}

// A USER given before STLS is forgotten after it; STLS after login is
// refused.
func TestSTLSForgetsUserAndNotAfterLogin(t *testing.T) {
	b, cert := tlsBridge(t)
	c := dialPOP3(t, b.POP3)
	c.Send("USER demo")
	c.Expect("+OK*")
	c.StartTLS(certs.Trusting(cert))
	if got := c.Cmd("PASS demo"); got != "-ERR USER first" {
		t.Fatalf("PASS after STLS = %q", got)
	}
	c2 := dialPOP3(t, b.POP3)
	c2.Login("demo", "demo")
	if got := c2.Cmd("STLS"); got != "-ERR command not valid in this state" {
		t.Fatalf("STLS after login = %q", got)
	}
}

// A client that opens a TLS connection and never completes the handshake
// is cut at the pre-login deadline, on POP3S and after STLS.
func TestStalledHandshake(t *testing.T) {
	b, _ := tlsBridge(t, "--prelogin-idle-timeout", "1s", "--prelogin-timeout", "2s")
	for _, stls := range []bool{false, true} {
		start := time.Now()
		var c *pop3client.Client
		if stls {
			c = dialPOP3(t, b.POP3)
			c.Send("STLS")
			c.Expect("+OK*")
		} else {
			c = dialRaw(t, b.POP3S)
			c.Conn().Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00}) // half a record header
		}
		c.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c.Conn()); err != nil && !pop3client.IsReset(err) {
			t.Fatalf("stls=%v: want close, got %v", stls, err)
		}
		if d := time.Since(start); d > 6*time.Second {
			t.Fatalf("stls=%v: closed after %v, pre-login idle is 1s", stls, d)
		}
	}
}

// SIGHUP reloads certificate and key: new connections get the new
// certificate, an open session carries on, a broken file keeps the old.
func TestCertReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, oldCert := certs.Files(t, dir, "server", "127.0.0.1")
	b := startBridge(t, "--demo", "--listen-tls", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)

	open := dialPOP3S(t, b.POP3S, oldCert)
	open.Login("demo", "demo")
	old := dialPOP3(t, b.POP3) // STLS session, logged in before the reload
	old.StartTLS(certs.Trusting(oldCert))
	old.Login("demo", "demo")

	newCertFile, newKeyFile, newCert := certs.Files(t, dir, "renewed", "127.0.0.1")
	replace := func(src, dst string) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		// Write then rename, as certbot and friends do.
		if err := os.WriteFile(dst+".tmp", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dst+".tmp", dst); err != nil {
			t.Fatal(err)
		}
	}
	replace(newCertFile, certFile)
	replace(newKeyFile, keyFile)
	b.Signal(syscall.SIGHUP)
	b.WaitLog(map[string]string{"message": "TLS certificate reloaded"}, 10*time.Second)

	for _, sess := range []*pop3client.Client{open, old} {
		if got := sess.Cmd("STAT"); got[:3] != "+OK" {
			t.Fatalf("open session after reload: STAT = %q", got)
		}
	}
	fresh := dialPOP3S(t, b.POP3S, newCert) // verifies against the new certificate only
	if got := fresh.Conn().(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(newCert.SerialNumber) != 0 {
		t.Fatalf("new connection got serial %v, want the renewed %v", got, newCert.SerialNumber)
	}
	fresh.Login("demo", "demo")
	viaSTLS := dialPOP3(t, b.POP3)
	viaSTLS.StartTLS(certs.Trusting(newCert))

	// A broken renewal: the error is logged and the current certificate stays.
	os.WriteFile(certFile, []byte("not a certificate"), 0o644)
	b.Signal(syscall.SIGHUP)
	b.WaitLog(map[string]string{"message": "TLS certificate reload failed; keeping the old one"}, 10*time.Second)
	dialPOP3S(t, b.POP3S, newCert).Login("demo", "demo")
	for _, sess := range []*pop3client.Client{open, old} {
		sess.Send("QUIT")
		sess.Expect("+OK*")
	}
}
