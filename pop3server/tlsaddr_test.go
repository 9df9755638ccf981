package pop3server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// fromAddr wraps a listener so every accepted connection reports remote as
// its client address: how the tests reach the server "from" a public or
// private address while connecting over loopback (a PROXY protocol
// listener does the same in production).
func fromAddr(remote string) func(net.Listener) net.Listener {
	ap := netip.MustParseAddrPort(remote)
	return func(l net.Listener) net.Listener {
		return &addrListener{Listener: l, remote: net.TCPAddrFromAddrPort(ap)}
	}
}

type addrListener struct {
	net.Listener
	remote net.Addr
}

func (l *addrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &addrConn{Conn: c, remote: l.remote}, nil
}

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c *addrConn) RemoteAddr() net.Addr { return c.remote }

// CloseWrite keeps the server's graceful close (FIN, then drain).
func (c *addrConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

var testCert = sync.OnceValues(func() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "popbridge test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
})

// serverTLS is a server configuration with a fresh self-signed certificate.
func serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// clientTLS trusts serverTLS's certificate.
func clientTLS(t testing.TB) *tls.Config {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// wrapClient makes a test client of an open connection.
func wrapClient(t *testing.T, nc net.Conn) *client {
	t.Helper()
	return pop3client.New(t, nc, clientOptions)
}

// startTLS runs STLS on c and swaps its connection for the TLS one. The
// +OK must be the last thing the server sent in clear.
func startTLS(c *client) {
	c.TB().Helper()
	c.StartTLSWant(clientTLS(c.TB()), "+OK Begin TLS negotiation now.")
}
