package bridge

import (
	"context"
	"fmt"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/telemetry"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/uidlmap"
	"github.com/popbridge/popbridge/upstream"
)

// newBackend builds the upstream IMAP backend and its listing cache.
func (b *Bridge) newBackend(breaker upstream.BreakerOptions) (*upstream.Backend, error) {
	opts, err := backendOptions(&b.cfg)
	if err != nil {
		return nil, err
	}
	b.url = opts.URL
	if opts.Cache, err = b.newListingCache(); err != nil {
		return nil, err
	}
	opts.Prefetch = b.prefetch()
	opts.Breaker = breaker
	opts.Logger = b.log.With().Str("component", "upstream").Logger()
	opts.Metrics = b.metrics
	if err := b.stateOptions(&opts); err != nil {
		return nil, err
	}
	if opts.Authenticator, err = b.authenticator(); err != nil {
		return nil, err
	}
	be, err := upstream.New(opts)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("upstream: %w", err)}
	}
	b.metrics.WatchReleases(be.IdleReleases)
	b.warnIfDovecotWithoutSendID(be)
	return be, nil
}

// backendOptions are the upstream options every backend of cfg shares:
// the upstream, its TLS, the per-user settings and the timeouts.
func backendOptions(cfg *config.Config) (upstream.Options, error) {
	tc, err := upstreamTLS(cfg)
	if err != nil {
		return upstream.Options{}, &ConfigError{err}
	}
	return upstream.Options{
		URL:               cfg.Upstream,
		TLSConfig:         tc,
		Mailbox:           cfg.Mailbox,
		UIDLFormat:        cfg.UIDLFormat,
		Policy:            cfg.Policy(),
		Resolver:          cfg.Resolver(),
		DialTimeout:       cfg.UpstreamDialTimeout,
		LoginTimeout:      cfg.UpstreamLoginTimeout,
		CommandTimeout:    cfg.UpstreamCommandTimeout,
		SendID:            cfg.UpstreamSendID,
		QuarantineMailbox: cfg.QuarantineMailbox,
	}, nil
}

// ToolBackend is an upstream backend for the admin subcommands (uidl
// import): the bridge's upstream and per-user settings on st (nil: no
// state at all), with no cache, no listeners and pass-through logins.
// close releases what it opened.
func ToolBackend(cfg *config.Config, st store.Store) (be *upstream.Backend, close func(), err error) {
	return toolBackend(cfg, st, false)
}

// RestoreBackend is ToolBackend for popbridge restore: a restored message
// keeps its UIDL through st's UIDL map, and with OAuth2 configured the
// application mode's token opens mailboxes for immediate restores.
func RestoreBackend(cfg *config.Config, st store.Store) (be *upstream.Backend, close func(), err error) {
	return toolBackend(cfg, st, true)
}

func toolBackend(cfg *config.Config, st store.Store, oauth bool) (be *upstream.Backend, close func(), err error) {
	opts, err := backendOptions(cfg)
	if err != nil {
		return nil, nil, err
	}
	if st != nil {
		opts.State, opts.Passive, opts.UIDLs = st, true, uidlmap.OnStore(st)
	}
	tb := &Bridge{cfg: *cfg, metrics: telemetry.NewMetrics(buildVersion(""))}
	close = func() { tb.Close() }
	if oauth {
		if opts.Authenticator, err = tb.authenticator(); err != nil {
			close()
			return nil, nil, err
		}
	}
	if be, err = upstream.New(opts); err != nil {
		close()
		return nil, nil, &ConfigError{fmt.Errorf("upstream: %w", err)}
	}
	return be, close, nil
}

// warnIfDovecotWithoutSendID asks the upstream who it is, in the
// background, and warns when it is Dovecot and --upstream-send-id is off;
// Close waits for it.
func (b *Bridge) warnIfDovecotWithoutSendID(be *upstream.Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		be.WarnIfDovecotWithoutSendID(ctx)
	}()
	b.closers = append(b.closers, func() { cancel(); <-done })
}

// prefetch is the read-ahead of --prefetch-bytes and
// --prefetch-session-bytes (docs/prefetch.md), exported as metrics.
func (b *Bridge) prefetch() upstream.PrefetchOptions {
	budget := cache.NewBudget(int64(b.cfg.PrefetchBytes))
	if budget != nil {
		b.metrics.WatchPrefetch(budget.Used, budget.Served)
	}
	return upstream.PrefetchOptions{Budget: budget, SessionBytes: int64(b.cfg.PrefetchSessionBytes)}
}

// newListingCache is the listing LRU of --cache-entries (nil when 0),
// exported as metrics.
func (b *Bridge) newListingCache() (*cache.Listings, error) {
	if b.cfg.CacheEntries <= 0 {
		return nil, nil
	}
	listings, err := cache.NewListings(b.cfg.CacheEntries)
	if err != nil {
		return nil, fmt.Errorf("listing cache: %w", err)
	}
	listings.MaxAge = b.cfg.CacheMaxAge
	b.metrics.WatchCache(listings.Stats)
	return listings, nil
}
