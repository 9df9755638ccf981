package bridge

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// storeProbeInterval is how often /readyz pings a state store the
// configuration needs; storeProbeTimeout how long a ping may take.
const (
	storeProbeInterval = 2 * time.Second
	storeProbeTimeout  = 2 * time.Second
)

// storeReadiness is the state store's part of /readyz: when the
// configuration needs the store for every session (an explicit --store,
// which turns on the journal, or an OAuth2 auth mode), a store that does
// not answer makes the bridge unready, so a load balancer sends clients to
// a replica that can serve them. Pings are at most one per
// storeProbeInterval, whatever the number of load balancers asking.
type storeReadiness struct {
	mu       sync.Mutex
	lastPing time.Time
	lastErr  error
}

func (r *storeReadiness) check(b *Bridge) error {
	if b.cfg.Store == "none" || !(b.cfg.StoreExplicit() || b.cfg.UsesOAuth()) {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.lastPing) >= storeProbeInterval {
		ctx, cancel := context.WithTimeout(context.Background(), storeProbeTimeout)
		r.lastErr = b.sharedStore().Ping(ctx)
		cancel()
		r.lastPing = time.Now()
	}
	if r.lastErr != nil {
		return fmt.Errorf("state store unavailable: %w", r.lastErr)
	}
	return nil
}
