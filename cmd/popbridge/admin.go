package main

import (
	"context"
	"errors"
	stdlog "log"
	"net"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/internal/admin"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/telemetry"
)

// startAdmin serves /metrics, /livez and /readyz on --admin-listen. It
// keeps serving while the POP3 side drains (so /readyz can say 503 and the
// drain can be watched), and stops last.
func (b *bridge) startAdmin(cfg *config.Config, log zerolog.Logger, metrics *telemetry.Metrics, upstreamAddr string) error {
	l, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return err
	}
	var draining atomic.Bool
	b.draining = func() { draining.Store(true) }
	srv := &http.Server{
		Handler: admin.Handler(admin.Options{
			Gatherer:            metrics.Registry(),
			Draining:            func() bool { return draining.Load() || b.pop3.Draining() },
			UpstreamFailures:    metrics.ConnectFailureStreak,
			MaxUpstreamFailures: cfg.ReadyUpstreamFailures,
			ProbeUpstream:       probeUpstream(upstreamAddr, metrics),
		}),
		// Probes and scrapes are small: bound everything, so a stuck
		// client cannot pile up goroutines.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// zerolog.Logger is an io.Writer that logs each write as a line.
		ErrorLog: stdlog.New(log.With().Str("component", "admin").Logger(), "", 0),
	}
	b.addrs.Admin = l.Addr().String()
	go func() {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			b.serveErr <- err
		}
	}()
	b.closers = append(b.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return nil
}

// probeUpstream lets an unready replica find out that the upstream is
// back: while it is unready it gets no clients, so no login would ever
// reset the failure streak. A TCP connect to the server-wide upstream is
// the test; TLS or login trouble shows up again in real logins.
func probeUpstream(addr string, metrics *telemetry.Metrics) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		c.Close()
		metrics.UpstreamReachable()
		return nil
	}
}

// buildVersion is the module version the binary was built from
// ("(devel)" for a build from a checkout), for popbridge_build_info.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
