package security

import (
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/certs"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// clientOptions: a 30 s deadline for a whole connection; a reset counts
// as the server closing it.
var clientOptions = pop3client.Options{Deadline: 30 * time.Second, AllowReset: true, CloseTimeout: 10 * time.Second}

// dialPOP3 connects and reads the greeting.
func dialPOP3(t *testing.T, addr string) *pop3client.Client {
	t.Helper()
	c := dialRaw(t, addr)
	c.Expect("+OK*")
	return c
}

func dialRaw(t *testing.T, addr string) *pop3client.Client {
	t.Helper()
	return pop3client.Dial(t, addr, clientOptions)
}

// dialPOP3S connects with implicit TLS trusting ca.
func dialPOP3S(t *testing.T, addr string, ca *x509.Certificate) *pop3client.Client {
	t.Helper()
	c := pop3client.DialTLS(t, addr, certs.Trusting(ca), clientOptions)
	c.Expect("+OK*")
	return c
}

// dialVia connects through a PROXY protocol v1 header claiming src as the
// client address: how a test reaches popbridge "from" a public address.
func dialVia(t *testing.T, addr, src string) *pop3client.Client {
	t.Helper()
	_, dport, _ := net.SplitHostPort(addr)
	o := clientOptions
	o.Prefix = fmt.Appendf(nil, "PROXY TCP4 %s 127.0.0.1 40000 %s\r\n", src, dport)
	c := pop3client.Dial(t, addr, o)
	c.Expect("+OK*")
	return c
}

func wrap(t *testing.T, nc net.Conn) *pop3client.Client {
	t.Helper()
	return pop3client.New(t, nc, clientOptions)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// tlsBridge starts popbridge --demo with a certificate, both listeners
// and args; it returns the bridge and the certificate to trust.
func tlsBridge(t *testing.T, args ...string) (*bridgeproc.Bridge, *x509.Certificate) {
	t.Helper()
	certFile, keyFile, cert := certs.Files(t, t.TempDir(), "server", "127.0.0.1")
	all := append([]string{"--demo", "--listen-tls", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile}, args...)
	return startBridge(t, all...), cert
}
