package bridge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/popbridge/popbridge/internal/telemetry"
	"github.com/popbridge/popbridge/loginguard"
	"github.com/popbridge/popbridge/pop3server"
)

// loginSlack is how much longer the POP3 side waits for a login than the
// upstream login deadline: the upstream's own timeout, with its precise
// error, should fire first; the POP3 one is only a backstop.
const loginSlack = 5 * time.Second

// newServer builds the POP3 server in front of the backend, with the
// certificate reloader when TLS is configured.
func (b *Bridge) newServer() (*pop3server.Server, error) {
	opts := b.serverOptions()
	if b.cfg.TLSCert != "" {
		var err error
		if b.certs, err = newCertReloader(b.cfg.TLSCert, b.cfg.TLSKey); err != nil {
			return nil, &ConfigError{fmt.Errorf("%s: %w", b.cfg.Where("tls-cert"), err)}
		}
		opts.TLSConfig = b.certs.ServerConfig()
	}
	if b.cfg.ListenTLS != "" && opts.TLSConfig == nil {
		return nil, &ConfigError{fmt.Errorf("%s: needs --tls-cert and --tls-key", b.cfg.Where("listen-tls"))}
	}
	// Wrong passwords are kept from the upstream (negative cache, per-user
	// throttle), so that one attacker does not get popbridge's own address
	// penalized upstream for every user (docs/security.md).
	guard := loginguard.New(b.backend, loginguard.Options{
		NegativeTTL:  b.cfg.LoginNegativeTTL,
		UserBurst:    b.cfg.LoginUserBurst,
		UserInterval: b.cfg.LoginUserInterval,
	})
	b.metrics.WatchLoginGuard(guard.Stats)
	return pop3server.NewServer(guard, opts), nil
}

// serverOptions derives pop3server's options from the configuration.
func (b *Bridge) serverOptions() pop3server.Options {
	cfg := &b.cfg
	return pop3server.Options{
		PlaintextAuth: cfg.PlaintextAuth,
		Expire:        cfg.Policy().Expire(),
		Workarounds:   cfg.ClientWorkarounds,
		Limits:        cfg.Limits,

		LoginTimeout: cfg.UpstreamLoginTimeout + loginSlack,
		LockSession:  cfg.LockSession,
		Locker:       b.sessionLocker(),
		Logger:       b.log.With().Str("component", "pop3").Logger(),
		Observer:     telemetry.Multi{telemetry.LogObserver{Log: b.log}, b.metrics},
	}
}

// listen binds --listen and --listen-tls, with the PROXY protocol when
// configured; Serve serves them.
func (b *Bridge) listen() error {
	cfg := &b.cfg
	if cfg.Listen != "" {
		l, err := b.listenPOP3(cfg.Listen)
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.Where("listen"), err)
		}
		b.addrs.POP3 = l.Addr().String()
		b.listeners = append(b.listeners, l)
	}
	if cfg.ListenTLS != "" {
		l, err := b.listenPOP3(cfg.ListenTLS)
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.Where("listen-tls"), err)
		}
		b.addrs.POP3S = l.Addr().String()
		b.listeners = append(b.listeners, tls.NewListener(l, b.certs.ServerConfig()))
	}
	if len(b.listeners) == 0 {
		return &ConfigError{errors.New("no listener: set --listen or --listen-tls")}
	}
	return nil
}

func (b *Bridge) listenPOP3(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return wrapProxyProtocol(l, b.cfg.ProxyProtocol, b.cfg.PreLoginIdleTimeout, b.log), nil
}
