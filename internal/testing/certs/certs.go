// Package certs makes throwaway TLS certificates for tests: fresh ECDSA
// P-256 certificates that are their own CA, so a certificate doubles as the
// trust anchor its clients are given. It is the one certificate helper of
// the test tree (Dovecot's, popbridge's listeners, scripted upstreams).
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// DefaultNames are the names of a certificate made without any: the
// loopback addresses and localhost, where tests listen.
var DefaultNames = []string{"127.0.0.1", "::1", "localhost"}

// Generate returns a fresh self-signed certificate for names (IP addresses
// or DNS names; DefaultNames when none), its parsed form in Leaf. It needs
// no testing.TB, for benchmarks and sync.OnceValues.
func Generate(names ...string) (tls.Certificate, error) {
	if len(names) == 0 {
		names = DefaultNames
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "popbridge test " + names[0]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
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
		return tls.Certificate{}, fmt.Errorf("certs: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Write writes a fresh certificate for names (see Generate) to certFile
// and its PKCS#8 key to keyFile (mode 0600), and returns the certificate.
func Write(certFile, keyFile string, names ...string) (*x509.Certificate, error) {
	c, err := Generate(names...)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("certs: marshal key: %w", err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o644); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return c.Leaf, nil
}

// Files writes a fresh certificate for names into dir as base.crt and
// base.key (dir "" means a temporary directory of t) and returns their
// paths and the certificate.
func Files(t testing.TB, dir, base string, names ...string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	certFile, keyFile = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	cert, err := Write(certFile, keyFile, names...)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// Configs returns a server configuration with a fresh certificate for
// names and a client configuration that trusts only it.
func Configs(t testing.TB, names ...string) (server, client *tls.Config) {
	t.Helper()
	c, err := Generate(names...)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}}, Trusting(c.Leaf)
}

// Trusting is a client configuration that trusts only ca and expects the
// server to be 127.0.0.1.
func Trusting(ca *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}
