// Package bridge is popbridge's one assembly: it turns the typed
// configuration of internal/config into a running bridge — the upstream
// IMAP backend, the listing cache, the POP3 server in front of them, its
// listeners and TLS, metrics and the admin HTTP endpoints — and derives,
// in one place, the values that tie those packages together (the POP3
// login deadline from the upstream one, CAPA EXPIRE from the delete
// policy, the cache size).
//
// cmd/popbridge, bench/inproc, bench/soak and the reliability tests all
// start popbridge through New; none wires pop3server and upstream by hand.
//
//	b, err := bridge.New(cfg, bridge.Options{Logger: log})
//	served := b.Start() // or b.Serve(), which blocks
//	...
//	b.Shutdown(ctx) // drain; then b.Close()
//
// A new feature (a state store, another authenticator, a journal) is one
// field in config.Config and one step in New, where the comments in New
// say where it goes.
package bridge

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/demo"
	"github.com/popbridge/popbridge/internal/telemetry"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/upstream"
)

// Options are what the assembly needs besides the configuration.
type Options struct {
	// Logger receives every component's log; its zero value discards.
	Logger zerolog.Logger
	// Version is popbridge_build_info's version label; "" means the
	// module version of the running binary.
	Version string
	// Breaker tunes the upstream circuit breaker; no flag sets it, so the
	// zero value (upstream's defaults) is what production runs. Tests
	// shorten it.
	Breaker upstream.BreakerOptions
}

// Addrs are the bound addresses ("" for what is not listening).
type Addrs struct {
	POP3, POP3S, Admin string
	// Demo is the embedded IMAP server's address with --demo.
	Demo string
}

// ConfigError is a configuration problem found while assembling (a
// certificate that does not load, a CA bundle without certificates):
// cmd/popbridge prints it as one line and exits with status 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Bridge is an assembled popbridge: listening once New returns, serving
// once Serve is called.
type Bridge struct {
	cfg     config.Config // a copy: --demo rewrites Upstream
	log     zerolog.Logger
	metrics *telemetry.Metrics
	backend *upstream.Backend
	url     *upstream.URL // the server-wide upstream
	pop3    *pop3server.Server
	certs   *certReloader // nil without --tls-cert
	ready   *readiness

	listeners []net.Listener // POP3 and POP3S, bound, served by Serve
	admin     *http.Server   // nil without --admin-listen
	adminLn   net.Listener
	addrs     Addrs

	draining  atomic.Bool
	closeOnce sync.Once
	closers   []func() // run in reverse order by Close

	storeMu sync.Mutex
	store   *store.LazyStore // the shared state store (sharedStore)

	storeReady storeReadiness // the store's part of /readyz
}

// New assembles popbridge from cfg (which it does not modify) and binds
// its listeners; nothing is served until Serve. Configuration problems are
// *ConfigError; anything else (a port in use) is an ordinary error.
func New(cfg *config.Config, opts Options) (_ *Bridge, err error) {
	b := &Bridge{cfg: *cfg, log: opts.Logger}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	b.metrics = telemetry.NewMetrics(buildVersion(opts.Version))
	b.metrics.ConfigLoaded(time.Now(), true)
	if b.cfg.Demo {
		if err := b.startDemo(); err != nil {
			return nil, err
		}
	}
	// The upstream side (newBackend): listing cache, read-ahead, circuit
	// breaker, the state store's features (stateOptions; the store itself,
	// sharedStore, opens at first use) and the upstream login
	// (authenticator). A feature of the upstream side is one line there.
	if b.backend, err = b.newBackend(opts.Breaker); err != nil {
		return nil, err
	}
	// The POP3 side (newServer): TLS, the login guard, session locks
	// (sessionLocker) and every limit, derived in serverOptions.
	if b.pop3, err = b.newServer(); err != nil {
		return nil, err
	}
	b.closers = append(b.closers, func() { b.pop3.Close() })
	b.metrics.WatchSessions(b.pop3.ActiveSessions)
	b.ready = &readiness{b: b, interval: probeInterval}
	if err := b.listen(); err != nil {
		return nil, err
	}
	if err := b.listenAdmin(); err != nil {
		return nil, err
	}
	return b, nil
}

// startDemo runs the embedded IMAP server and points the bridge at it.
func (b *Bridge) startDemo() error {
	d, err := demo.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	b.closers = append(b.closers, func() { d.Close() })
	b.addrs.Demo = d.Addr
	// The demo always serves its own server, whatever --upstream says.
	b.cfg.Upstream = &upstream.URL{Scheme: upstream.SchemeInsecure, Host: d.Addr}
	return nil
}

// Addrs returns the bound addresses.
func (b *Bridge) Addrs() Addrs { return b.addrs }

// Upstream is the server-wide upstream actually served (the demo's with
// --demo), for logs.
func (b *Bridge) Upstream() *upstream.URL { return b.cfg.Upstream }

// ActiveSessions is the number of open POP3 connections.
func (b *Bridge) ActiveSessions() int { return b.pop3.ActiveSessions() }

// Serve serves every listener until Shutdown or Close, then returns nil;
// a listener that fails otherwise ends Serve with its error at once.
func (b *Bridge) Serve() error { return <-b.Start() }

// Start is Serve in the background: every listener is being served when
// it returns (so a goroutine count taken then is the baseline), and the
// channel receives what Serve would return.
func (b *Bridge) Start() <-chan error {
	errc := make(chan error, len(b.listeners)+1)
	for _, l := range b.listeners {
		go func() { errc <- b.pop3.Serve(l) }()
	}
	n := len(b.listeners)
	if b.admin != nil {
		n++
		go func() { errc <- b.admin.Serve(b.adminLn) }()
	}
	done := make(chan error, 1)
	go func() {
		for range n {
			if err := <-errc; !errors.Is(err, pop3server.ErrServerClosed) && !errors.Is(err, http.ErrServerClosed) {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

// Shutdown drains: /readyz fails from now on, no new connection is
// accepted, idle sessions end and busy ones may finish their command until
// ctx is done, when the rest are cut (and ctx's error returned). Nothing
// is applied upstream for a session that did not QUIT. The admin endpoint
// keeps answering until Close, so the drain can be watched.
func (b *Bridge) Shutdown(ctx context.Context) error {
	b.draining.Store(true)
	return b.pop3.Shutdown(ctx)
}

// Close stops everything at once: sessions, listeners, the admin endpoint
// and the demo server.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		b.draining.Store(true)
		for i := len(b.closers) - 1; i >= 0; i-- {
			b.closers[i]()
		}
		// pop3server closed the listeners it serves (and Serve returned
		// ErrServerClosed); these are for a bridge never served.
		for _, l := range b.listeners {
			l.Close()
		}
	})
	return nil
}

// ReloadCerts reads --tls-cert and --tls-key again (SIGHUP); on error the
// old certificate stays. Without TLS it does nothing.
func (b *Bridge) ReloadCerts() error {
	if b.certs == nil {
		return nil
	}
	return b.certs.Reload()
}
