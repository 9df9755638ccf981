package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Readiness probing: while unready because of the upstream, Ready tries a
// TCP connect to it at most every probeInterval, for probeTimeout.
const (
	probeInterval = 5 * time.Second
	probeTimeout  = 2 * time.Second
)

// errDraining is Ready's answer once Shutdown or Close has begun.
var errDraining = errors.New("draining")

// Ready says whether the bridge should get new clients: nil, or why not
// ("draining", or the upstream unreachable with --ready-upstream-failures).
// It is /readyz.
func (b *Bridge) Ready() error {
	if b.Draining() {
		return errDraining
	}
	if err := b.storeReady.check(b); err != nil {
		return err
	}
	return b.ready.upstream()
}

// Draining reports whether Shutdown or Close has begun.
func (b *Bridge) Draining() bool { return b.draining.Load() || b.pop3.Draining() }

// readiness decides the upstream part of Ready from the backend's own
// health (its circuit breaker); probing is serialized so that a burst of
// checks from several load balancers costs one upstream connection.
type readiness struct {
	b        *Bridge
	interval time.Duration // between probes: probeInterval

	mu        sync.Mutex
	lastProbe time.Time
}

func (r *readiness) upstream() error {
	max := r.b.cfg.ReadyUpstreamFailures
	failures := func() int { return r.b.backend.Health().ConnectFailures }
	if max <= 0 || failures() < max {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if failures() < max {
		return nil // a concurrent probe or login succeeded
	}
	if time.Since(r.lastProbe) >= r.interval {
		r.lastProbe = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		err := r.b.backend.Probe(ctx)
		cancel()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("upstream unreachable: %d connection attempts failed in a row", failures())
}
