package bridge

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/ticketkeys"
)

// certReloader serves the current certificate and swaps it on Reload
// (SIGHUP), so renewals need no restart and no session is dropped.
type certReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again; on error the old certificate stays.
func (r *certReloader) Reload() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("loading certificate: %w", err)
	}
	r.cert.Store(&cert)
	return nil
}

// ServerConfig is the POP3 side's TLS: 1.2 minimum, and on 1.2 only
// ECDHE with AEAD ciphers (1.3's suites are all AEAD and not configurable);
// session ticket keys rotate daily, the previous one still accepted
// (internal/ticketkeys).
func (r *certReloader) ServerConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cert.Load(), nil
		},
	}
	ticketkeys.New(ticketkeys.DefaultPeriod, nil).Install(cfg)
	return cfg
}

// upstreamTLS is the IMAP side's TLS: system roots plus --upstream-ca;
// verification is never switched off.
func upstreamTLS(cfg *config.Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.UpstreamCA == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(cfg.UpstreamCA)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Where("upstream-ca"), err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in %s", cfg.Where("upstream-ca"), cfg.UpstreamCA)
	}
	tc.RootCAs = pool
	return tc, nil
}
