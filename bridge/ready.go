package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	return b.ready.upstream()
}

// Draining reports whether Shutdown or Close has begun.
func (b *Bridge) Draining() bool { return b.draining.Load() || b.pop3.Draining() }

// readiness decides the upstream part of Ready; probing is serialized so
// that a burst of checks from several load balancers costs one upstream
// connection.
type readiness struct {
	b *Bridge

	mu        sync.Mutex
	lastProbe time.Time
}

func (r *readiness) upstream() error {
	max := r.b.cfg.ReadyUpstreamFailures
	failures := r.b.metrics.ConnectFailureStreak
	if max <= 0 || failures() < max {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if failures() < max {
		return nil // a concurrent probe or login succeeded
	}
	if time.Since(r.lastProbe) >= probeInterval {
		r.lastProbe = time.Now()
		if r.probe() == nil {
			return nil
		}
	}
	return fmt.Errorf("upstream unreachable: %d connection attempts failed in a row", failures())
}

// probe lets an unready replica find out that the upstream is back: while
// it is unready it gets no clients, so no login would ever end the failure
// streak. A TCP connect to the server-wide upstream is the test; TLS or
// login trouble shows up again in real logins.
func (r *readiness) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", r.b.url.Host)
	if err != nil {
		return err
	}
	c.Close()
	r.b.metrics.UpstreamReachable()
	return nil
}
