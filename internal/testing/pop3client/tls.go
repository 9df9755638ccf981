package pop3client

import (
	"crypto/tls"
	"crypto/x509"
)

// Trusting is a client TLS configuration that trusts only ca and expects
// the server to be 127.0.0.1.
func Trusting(ca *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}
