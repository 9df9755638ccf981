package bridge

import (
	"context"
	stdlog "log"
	"runtime/debug"
	"time"

	"github.com/popbridge/popbridge/internal/admin"
)

// listenAdmin binds --admin-listen for /metrics, /livez and /readyz. The
// endpoint keeps serving while the POP3 side drains (so /readyz can say
// 503 and the drain can be watched) and stops last, in Close.
func (b *Bridge) listenAdmin() error {
	if b.cfg.AdminListen == "" {
		return nil
	}
	// Bounded (internal/admin): header size, timeouts and a connection
	// cap, so that whoever reaches this port cannot take the POP3 side's
	// memory or file descriptors.
	l, err := admin.Listen(b.cfg.AdminListen)
	if err != nil {
		return err
	}
	b.adminLn = l
	b.addrs.Admin = l.Addr().String()
	b.admin = admin.NewServer(admin.Handler(admin.Options{
		Gatherer: b.metrics.Registry(),
		Ready:    b.Ready,
	}),
		// zerolog.Logger is an io.Writer that logs each write as a line.
		stdlog.New(b.log.With().Str("component", "admin").Logger(), "", 0))
	b.closers = append(b.closers, func() {
		l.Close() // in case Serve never ran
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		b.admin.Shutdown(ctx)
	})
	return nil
}

// buildVersion is version, or else the module version the binary was
// built from ("(devel)" for a build from a checkout), for
// popbridge_build_info.
func buildVersion(version string) string {
	if version != "" {
		return version
	}
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
