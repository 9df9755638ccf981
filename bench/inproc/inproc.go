// Package inproc runs popbridge's POP3 server and IMAP backend in the
// test process, assembled by package bridge as cmd/popbridge is, against a seeded
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
	"io"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/bridge"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/upstream"
)

// Bridge is a popbridge serving POP3 on Addr for the upstream IMAP server
// it was started with.
type Bridge struct {
	Addr   string
	b      *bridge.Bridge
	served <-chan error
}

// Start serves POP3 on a loopback port for the IMAP server at imapAddr
// (no TLS), with cmd/popbridge's defaults (listing cache, metrics, a JSON
// session log to log) and the connection limits raised for load from one
// address.
func Start(imapAddr string, log io.Writer) (*Bridge, error) {
	cfg := config.Default()
	cfg.Upstream = &upstream.URL{Scheme: upstream.SchemeInsecure, Host: imapAddr}
	cfg.Listen = "127.0.0.1:0"
	cfg.MaxConnsPerIP = 10000
	cfg.MaxUserIPConns = 10000
	cfg.MaxPreLoginConns = 10000
	cfg.MaxSessions = 10000
	b, err := bridge.New(cfg, bridge.Options{
		Logger:  zerolog.New(log).With().Timestamp().Logger(),
		Version: "bench",
	})
	if err != nil {
		return nil, err
	}
	return &Bridge{Addr: b.Addrs().POP3, b: b, served: b.Start()}, nil
}

// Close stops serving and closes every session.
func (b *Bridge) Close() error {
	b.b.Close()
	return <-b.served
}
