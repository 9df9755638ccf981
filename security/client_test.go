package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// client is the raw POP3 client the attacks use.
type client = pop3client.Client

// clientOptions: a 30 s deadline for a whole connection; a reset counts
// as the server closing it.
var clientOptions = pop3client.Options{Deadline: 30 * time.Second, AllowReset: true, CloseTimeout: 10 * time.Second}

// dialPOP3 connects and reads the greeting.
func dialPOP3(t *testing.T, addr string) *client {
	t.Helper()
	c := dialRaw(t, addr)
	c.Expect("+OK*")
	return c
}

func dialRaw(t *testing.T, addr string) *client {
	t.Helper()
	return pop3client.Dial(t, addr, clientOptions)
}

// dialPOP3S connects with implicit TLS trusting ca.
func dialPOP3S(t *testing.T, addr string, ca *x509.Certificate) *client {
	t.Helper()
	c := pop3client.DialTLS(t, addr, pop3client.Trusting(ca), clientOptions)
	c.Expect("+OK*")
	return c
}

// dialVia connects through a PROXY protocol v1 header claiming src as the
// client address: how a test reaches popbridge "from" a public address.
func dialVia(t *testing.T, addr, src string) *client {
	t.Helper()
	_, dport, _ := net.SplitHostPort(addr)
	o := clientOptions
	o.Prefix = fmt.Appendf(nil, "PROXY TCP4 %s 127.0.0.1 40000 %s\r\n", src, dport)
	c := pop3client.Dial(t, addr, o)
	c.Expect("+OK*")
	return c
}

func wrap(t *testing.T, nc net.Conn) *client {
	t.Helper()
	return pop3client.New(t, nc, clientOptions)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

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
