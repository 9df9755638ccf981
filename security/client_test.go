package security

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// client is a line-oriented POP3 client for attacks.
type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

// dialPOP3 connects and reads the greeting.
func dialPOP3(t *testing.T, addr string) *client {
	t.Helper()
	c := dialRaw(t, addr)
	c.expect("+OK*")
	return c
}

func dialRaw(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return wrap(t, nc)
}

// dialPOP3S connects with implicit TLS trusting ca.
func dialPOP3S(t *testing.T, addr string, ca *x509.Certificate) *client {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, trusting(ca))
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	c := wrap(t, nc)
	c.expect("+OK*")
	return c
}

// dialVia connects through a PROXY protocol v1 header claiming src as the
// client address: how a test reaches popbridge "from" a public address.
func dialVia(t *testing.T, addr, src string) *client {
	t.Helper()
	c := dialRaw(t, addr)
	_, dport, _ := net.SplitHostPort(addr)
	fmt.Fprintf(c.nc, "PROXY TCP4 %s 127.0.0.1 40000 %s\r\n", src, dport)
	c.expect("+OK*")
	return c
}

func wrap(t *testing.T, nc net.Conn) *client {
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, line+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

func (c *client) readLine() string {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\r\n")
}

// expect reads one line per pattern; a trailing "*" matches a prefix.
func (c *client) expect(patterns ...string) {
	c.t.Helper()
	for _, p := range patterns {
		got := c.readLine()
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if !strings.HasPrefix(got, prefix) {
				c.t.Fatalf("got %q, want prefix %q", got, prefix)
			}
		} else if got != p {
			c.t.Fatalf("got %q, want %q", got, p)
		}
	}
}

// cmd sends line and returns the one-line answer.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.readLine()
}

func (c *client) multiline() []byte {
	c.t.Helper()
	var buf bytes.Buffer
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("multiline: %v", err)
		}
		if line == ".\r\n" {
			return buf.Bytes()
		}
		buf.WriteString(strings.TrimPrefix(line, "."))
	}
}

func (c *client) capa() []string {
	c.t.Helper()
	c.send("CAPA")
	c.expect("+OK*")
	var caps []string
	for {
		line := c.readLine()
		if line == "." {
			return caps
		}
		caps = append(caps, line)
	}
}

func hasCap(caps []string, name string) bool {
	for _, c := range caps {
		if c == name || strings.HasPrefix(c, name+" ") {
			return true
		}
	}
	return false
}

func (c *client) login(user, pass string) {
	c.t.Helper()
	c.send("USER " + user)
	c.expect("+OK*")
	c.send("PASS " + pass)
	c.expect("+OK*")
}

// expectClosed asserts the server closes the connection within 10s,
// after at most the lines in allowed.
func (c *client) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil && !isReset(err) {
		c.t.Fatalf("want close, got %v after %q", err, rest)
	}
	if len(rest) > 0 {
		c.t.Fatalf("unexpected data before close: %q", rest)
	}
}

func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

// startTLS runs STLS and the handshake; the +OK must be the last octets
// sent in clear.
func (c *client) startTLS(ca *x509.Certificate) {
	c.t.Helper()
	c.send("STLS")
	c.expect("+OK*")
	if n := c.r.Buffered(); n > 0 {
		b, _ := c.r.Peek(n)
		c.t.Fatalf("server sent %q in clear after STLS", b)
	}
	tc := tls.Client(c.nc, trusting(ca))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("STLS handshake: %v", err)
	}
	c.nc = tc
	c.r.Reset(tc)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func trusting(ca *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// writeCert writes a fresh self-signed ECDSA certificate for names (IP
// addresses or DNS names) and its key as PEM files in dir.
func writeCert(t *testing.T, dir, base string, names ...string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: base},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, base+".crt")
	keyFile = filepath.Join(dir, base+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return certFile, keyFile, cert
}

// tlsBridge starts popbridge --demo with a certificate, both listeners
// and args; it returns the bridge and the certificate to trust.
func tlsBridge(t *testing.T, args ...string) (*bridge, *x509.Certificate) {
	t.Helper()
	certFile, keyFile, cert := writeCert(t, t.TempDir(), "server", "127.0.0.1")
	all := append([]string{"--demo", "--listen-tls", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile}, args...)
	return startBridge(t, all...), cert
}
