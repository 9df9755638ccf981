// Package inproc runs popbridge's POP3 server and IMAP backend in the
// test process, wired as cmd/popbridge wires them, against a seeded
// Dovecot, so that go test can profile them:
//
//	go test ./bench/inproc -run '^$' -bench Poll/50k -cpuprofile cpu.out
//	go tool pprof -top bench/inproc.test cpu.out
//
// The profile also holds the load client (package bench) and Dovecot is
// another process; popbridge's share is upstream, pop3server, go-imap and
// the runtime.
package inproc

import (
	"fmt"
	"io"
	"net"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/internal/telemetry"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

// Bridge is a popbridge serving POP3 on Addr for the upstream IMAP server
// it was started with.
type Bridge struct {
	Addr string
	srv  *pop3server.Server
}

// Start serves POP3 on a loopback port for the IMAP server at imapAddr
// (no TLS), with cmd/popbridge's defaults: listing cache of 10,000
// entries, metrics, a JSON session log (to log), and limits raised for
// load from one address.
func Start(imapAddr string, log io.Writer) (*Bridge, error) {
	u, err := upstream.ParseURL("imap+insecure://" + imapAddr)
	if err != nil {
		return nil, err
	}
	logger := zerolog.New(log).With().Timestamp().Logger()
	metrics := telemetry.NewMetrics("bench")
	listings, err := cache.NewListings(10000)
	if err != nil {
		return nil, fmt.Errorf("listing cache: %w", err)
	}
	metrics.WatchCache(listings.Stats)
	backend, err := upstream.New(upstream.Options{
		URL:     u,
		Policy:  policy.Default,
		Cache:   listings,
		Logger:  logger.With().Str("component", "upstream").Logger(),
		Metrics: metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	srv := pop3server.NewServer(backend, pop3server.Options{
		PlaintextAuth: pop3server.PlaintextLocal,
		Expire:        policy.Default.Expire(),
		MaxConnsPerIP: 10000,
		MaxSessions:   10000,
		Logger:        logger.With().Str("component", "pop3").Logger(),
		Observer:      telemetry.Multi{telemetry.LogObserver{Log: logger}, metrics},
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = srv.Serve(l) }()
	return &Bridge{Addr: l.Addr().String(), srv: srv}, nil
}

// Close stops serving and closes every session.
func (b *Bridge) Close() error { return b.srv.Close() }
