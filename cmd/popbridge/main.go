// Command popbridge is an IMAP-to-POP3 bridge: it serves POP3 and turns
// each session into IMAP operations on an upstream server.
//
// This file is wiring only: configuration, logging, listeners, signals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/demo"
	"github.com/popbridge/popbridge/internal/telemetry"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil))
}

// usageError is a configuration problem: one line on stderr, exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// run is main with its dependencies passed in, so tests can drive it. When
// ready is not nil it receives the bound addresses once listening.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- Addrs) int {
	if code, ok := adminCommand(args, getenv, stdout, stderr); ok {
		return code
	}
	cfg, err := config.Load(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, config.Usage())
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "popbridge: %v\n", err)
		return 2
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "popbridge: %v\n", err)
		return 2
	}

	for _, w := range cfg.Warnings() {
		log.Warn().Msg(w)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	b, err := build(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "popbridge: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	defer b.close()

	if cfg.Demo {
		fmt.Fprintf(stdout, "popbridge demo: user %q, password %q, in front of an in-memory IMAP server at %s\n",
			demo.Username, demo.Password, b.demo.Addr)
		if b.addrs.POP3 != "" {
			fmt.Fprintf(stdout, "try:  curl pop3://%s:%s@%s/1\n", demo.Username, demo.Password, b.addrs.POP3)
			fmt.Fprintf(stdout, "list: curl pop3://%s:%s@%s/\n", demo.Username, demo.Password, b.addrs.POP3)
		}
	}
	log.Info().Str("listen", b.addrs.POP3).Str("listen_tls", b.addrs.POP3S).Str("admin", b.addrs.Admin).
		Str("upstream", cfg.Upstream).Msg("popbridge started")
	if ready != nil {
		ready <- b.addrs
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			b.reloadConfig(cfg, args, getenv, log)
			if b.certs != nil {
				if err := b.certs.Reload(); err != nil {
					log.Error().Err(err).Msg("TLS certificate reload failed; keeping the old one")
				} else {
					log.Info().Msg("TLS certificate reloaded")
				}
			}
			continue
		case err := <-b.serveErr:
			log.Error().Err(err).Msg("listener failed")
			return 1
		case <-ctx.Done():
		}
		break
	}

	log.Info().Dur("drain_timeout", cfg.DrainTimeout).Msg("draining")
	b.startDrain()
	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if err := b.pop3.Shutdown(dctx); err != nil {
		log.Warn().Err(err).Msg("drain timeout: remaining sessions closed")
	}
	log.Info().Msg("popbridge stopped")
	return 0
}

// Addrs are the addresses popbridge listens on ("" when disabled).
type Addrs struct {
	POP3, POP3S, Admin string
}

// bridge is everything run starts, for orderly shutdown.
type bridge struct {
	pop3     *pop3server.Server
	backend  *upstream.Backend
	metrics  *telemetry.Metrics
	demo     *demo.Server
	certs    *certReloader
	addrs    Addrs
	serveErr chan error
	closers  []func()
	draining func()
}

func (b *bridge) startDrain() {
	if b.draining != nil {
		b.draining()
	}
}

func (b *bridge) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

func build(cfg *config.Config, log zerolog.Logger) (b *bridge, err error) {
	b = &bridge{serveErr: make(chan error, 3)}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if err := upstream.ValidateUIDLFormat(cfg.UIDLFormat); err != nil {
		return b, usageError{fmt.Errorf("%s: %w", cfg.Where("uidl-format"), err)}
	}

	if cfg.Demo {
		d, err := demo.Start("127.0.0.1:0")
		if err != nil {
			return b, err
		}
		b.demo = d
		b.closers = append(b.closers, func() { d.Close() })
		// SPEC §6: the demo always points the bridge at its own server.
		cfg.Upstream = "imap+insecure://" + d.Addr
	}
	upURL, err := upstream.ParseURL(cfg.Upstream)
	if err != nil {
		return b, usageError{fmt.Errorf("%s: %w", cfg.Where("upstream"), err)}
	}
	upTLS, err := upstreamTLS(cfg)
	if err != nil {
		return b, usageError{err}
	}

	metrics := telemetry.NewMetrics(buildVersion())
	metrics.ConfigLoaded(time.Now(), true)
	b.metrics = metrics
	var listings *cache.Listings
	if cfg.CacheEntries > 0 {
		if listings, err = cache.NewListings(cfg.CacheEntries); err != nil {
			return b, fmt.Errorf("listing cache: %w", err)
		}
		listings.MaxAge = cfg.CacheMaxAge
		metrics.WatchCache(listings.Stats)
	}
	backend, err := upstream.New(upstream.Options{
		URL:            upURL,
		TLSConfig:      upTLS,
		Mailbox:        cfg.Mailbox,
		UIDLFormat:     cfg.UIDLFormat,
		Policy:         cfg.Policy(),
		Resolver:       cfg.Resolver(),
		DialTimeout:    cfg.UpstreamDialTimeout,
		LoginTimeout:   cfg.UpstreamLoginTimeout,
		CommandTimeout: cfg.UpstreamCommandTimeout,
		SendID:         cfg.UpstreamSendID,
		Cache:          listings,
		Logger:         log.With().Str("component", "upstream").Logger(),
		Metrics:        metrics,
	})
	b.backend = backend
	if err != nil {
		return b, usageError{fmt.Errorf("upstream: %w", err)}
	}

	opts := serverOptions(cfg, log)
	opts.Observer = telemetry.Multi{telemetry.LogObserver{Log: log}, metrics}
	if cfg.TLSCert != "" {
		b.certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return b, usageError{fmt.Errorf("%s: %w", cfg.Where("tls-cert"), err)}
		}
		opts.TLSConfig = b.certs.ServerConfig()
	}
	if cfg.ListenTLS != "" && opts.TLSConfig == nil {
		return b, usageError{fmt.Errorf("%s: needs --tls-cert and --tls-key", cfg.Where("listen-tls"))}
	}
	b.pop3 = pop3server.NewServer(backend, opts)
	b.closers = append(b.closers, func() { b.pop3.Close() })
	metrics.WatchSessions(b.pop3.ActiveSessions)

	if cfg.Listen != "" {
		l, err := listen(cfg, cfg.Listen, log)
		if err != nil {
			return b, fmt.Errorf("%s: %w", cfg.Where("listen"), err)
		}
		b.addrs.POP3 = l.Addr().String()
		b.serve(l)
	}
	if cfg.ListenTLS != "" {
		l, err := listen(cfg, cfg.ListenTLS, log)
		if err != nil {
			return b, fmt.Errorf("%s: %w", cfg.Where("listen-tls"), err)
		}
		b.addrs.POP3S = l.Addr().String()
		tl := tlsListener(l, opts.TLSConfig)
		b.serve(tl)
	}
	if b.addrs.POP3 == "" && b.addrs.POP3S == "" {
		return b, usageError{errors.New("no listener: set --listen or --listen-tls")}
	}
	if cfg.AdminListen != "" {
		if err := b.startAdmin(cfg, log, metrics, upURL.Host); err != nil {
			return b, fmt.Errorf("%s: %w", cfg.Where("admin-listen"), err)
		}
	}
	return b, nil
}

// serve runs the POP3 server on l; only an unexpected end is reported.
func (b *bridge) serve(l net.Listener) {
	go func() {
		if err := b.pop3.Serve(l); !errors.Is(err, pop3server.ErrServerClosed) {
			b.serveErr <- err
		}
	}()
}

func listen(cfg *config.Config, addr string, log zerolog.Logger) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return wrapProxyProtocol(cfg, l, log), nil
}

func serverOptions(cfg *config.Config, log zerolog.Logger) pop3server.Options {
	pt := pop3server.PlaintextLocal
	switch cfg.PlaintextAuth {
	case config.PlaintextAlways:
		pt = pop3server.PlaintextAlways
	case config.PlaintextNever:
		pt = pop3server.PlaintextNever
	}
	var wa pop3server.Workarounds
	for _, w := range cfg.ClientWorkarounds {
		switch w {
		case config.WorkaroundOutlookNoNULs:
			wa.OutlookNoNULs = true
		case config.WorkaroundOENSEOH:
			wa.OENSEOH = true
		}
	}
	return pop3server.Options{
		PlaintextAuth:           pt,
		Expire:                  cfg.Policy().Expire(),
		Workarounds:             wa,
		MaxLineLength:           cfg.MaxLineLength,
		PreLoginIdleTimeout:     cfg.PreLoginIdleTimeout,
		PreLoginTimeout:         cfg.PreLoginTimeout,
		IdleTimeout:             cfg.IdleTimeout,
		WriteTimeout:            cfg.WriteTimeout,
		MaxBadCommandsPreLogin:  cfg.MaxBadCommandsPreLogin,
		MaxBadCommandsPostLogin: cfg.MaxBadCommandsPostLogin,
		MaxLoginFailures:        cfg.MaxLoginFailures,
		AuthFailDelay:           cfg.AuthFailDelay,
		AuthPenaltyMax:          cfg.AuthPenaltyMax,
		MaxConnsPerIP:           cfg.MaxConnsPerIP,
		MaxUserIPConns:          cfg.MaxUserIPConns,
		MaxSessions:             cfg.MaxSessions,
		MaxPreLoginConns:        cfg.MaxPreLoginConns,
		LoginTimeout:            cfg.UpstreamLoginTimeout + 5*time.Second,
		LockSession:             cfg.LockSession,
		Logger:                  log.With().Str("component", "pop3").Logger(),
	}
}

func newLogger(cfg *config.Config, stderr io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(strings.ToLower(cfg.LogLevel))
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("%s: %w", cfg.Where("log-level"), err)
	}
	var w io.Writer = stderr
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}
