// Package admin is popbridge's operator HTTP interface (--admin-listen):
// /metrics for Prometheus, /livez and /readyz for orchestrators and load
// balancers.
//
// /livez answers 200 while the process can serve HTTP at all: it never
// depends on the upstream, so an IMAP outage does not get every replica
// restarted. /readyz answers 503 while draining (SIGTERM) and, when
// configured, after too many consecutive upstream connection failures, so
// a load balancer stops sending new clients to a replica that cannot serve
// them.
package admin

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configures Handler. Every field may be zero.
type Options struct {
	// Gatherer serves /metrics; nil disables the endpoint (404).
	Gatherer prometheus.Gatherer
	// Draining reports whether shutdown has begun; /readyz fails then.
	Draining func() bool
	// UpstreamFailures returns how many upstream connection attempts
	// failed in a row. When MaxUpstreamFailures > 0 and the streak reaches
	// it, /readyz fails until a connection succeeds again.
	UpstreamFailures    func() int
	MaxUpstreamFailures int
	// ProbeUpstream, when set, is tried (at most every ProbeInterval)
	// while the failure streak is at the limit; nil error means the
	// upstream is back and /readyz succeeds. The probe should reset the
	// streak itself. Without it, a replica that no longer gets clients
	// would never see a connection succeed and stay unready for good.
	ProbeUpstream func(ctx context.Context) error
	// ProbeInterval defaults to 5 s; ProbeTimeout to 2 s.
	ProbeInterval, ProbeTimeout time.Duration
}

// DefaultProbeInterval and DefaultProbeTimeout apply to zero Options fields.
const (
	DefaultProbeInterval = 5 * time.Second
	DefaultProbeTimeout  = 2 * time.Second
)

// Handler returns the admin HTTP handler.
func Handler(opts Options) http.Handler {
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = DefaultProbeTimeout
	}
	r := &readiness{opts: opts}
	mux := http.NewServeMux()
	if opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
			// A broken collector still leaves the rest scrapeable.
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if reason := r.notReady(); reason != "" {
			writeText(w, http.StatusServiceUnavailable, reason)
			return
		}
		writeText(w, http.StatusOK, "ok")
	})
	return mux
}

// readiness decides /readyz; probing is serialized so that a burst of
// probes from several checkers costs one upstream connection.
type readiness struct {
	opts Options

	mu        sync.Mutex
	lastProbe time.Time
}

// notReady returns why the process should get no new clients, or "".
func (r *readiness) notReady() string {
	o := &r.opts
	if o.Draining != nil && o.Draining() {
		return "draining"
	}
	if o.MaxUpstreamFailures <= 0 || o.UpstreamFailures == nil {
		return ""
	}
	n := o.UpstreamFailures()
	if n < o.MaxUpstreamFailures {
		return ""
	}
	if o.ProbeUpstream != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if n = o.UpstreamFailures(); n < o.MaxUpstreamFailures {
			return "" // a concurrent probe or login succeeded
		}
		if time.Since(r.lastProbe) >= o.ProbeInterval {
			r.lastProbe = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), o.ProbeTimeout)
			err := o.ProbeUpstream(ctx)
			cancel()
			if err == nil {
				return ""
			}
		}
	}
	return fmt.Sprintf("upstream unreachable: %d connection attempts failed in a row", n)
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, body)
}
