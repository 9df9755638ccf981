package bridge

import (
	"fmt"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/upstream"
)

// newBackend builds the upstream IMAP backend and its listing cache.
func (b *Bridge) newBackend(breaker upstream.BreakerOptions) (*upstream.Backend, error) {
	cfg := &b.cfg
	if err := upstream.ValidateUIDLFormat(cfg.UIDLFormat); err != nil {
		return nil, &ConfigError{fmt.Errorf("%s: %w", cfg.Where("uidl-format"), err)}
	}
	u, err := upstream.ParseURL(cfg.Upstream)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("%s: %w", cfg.Where("upstream"), err)}
	}
	b.url = u
	tc, err := upstreamTLS(cfg)
	if err != nil {
		return nil, &ConfigError{err}
	}
	listings, err := b.newListingCache()
	if err != nil {
		return nil, err
	}
	be, err := upstream.New(upstream.Options{
		URL:            u,
		TLSConfig:      tc,
		Mailbox:        cfg.Mailbox,
		UIDLFormat:     cfg.UIDLFormat,
		Policy:         cfg.Policy(),
		Resolver:       cfg.Resolver(),
		DialTimeout:    cfg.UpstreamDialTimeout,
		LoginTimeout:   cfg.UpstreamLoginTimeout,
		CommandTimeout: cfg.UpstreamCommandTimeout,
		SendID:         cfg.UpstreamSendID,
		Cache:          listings,
		Breaker:        breaker,
		Logger:         b.log.With().Str("component", "upstream").Logger(),
		Metrics:        b.metrics,
	})
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("upstream: %w", err)}
	}
	return be, nil
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
