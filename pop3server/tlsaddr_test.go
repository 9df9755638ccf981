package pop3server

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/certs"
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

var testCert = sync.OnceValues(func() (tls.Certificate, error) { return certs.Generate("127.0.0.1", "localhost") })

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
func wrapClient(t *testing.T, nc net.Conn) *pop3client.Client {
	t.Helper()
	return pop3client.New(t, nc, clientOptions)
}

// startTLS runs STLS on c and swaps its connection for the TLS one. The
// +OK must be the last thing the server sent in clear.
func startTLS(c *pop3client.Client) {
	c.TB().Helper()
	c.StartTLSWant(clientTLS(c.TB()), "+OK Begin TLS negotiation now.")
}
