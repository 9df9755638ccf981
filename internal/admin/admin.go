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
	"fmt"
	"net/http"

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
}

// Handler returns the admin HTTP handler.
func Handler(opts Options) http.Handler {
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
		if reason := opts.notReady(); reason != "" {
			writeText(w, http.StatusServiceUnavailable, reason)
			return
		}
		writeText(w, http.StatusOK, "ok")
	})
	return mux
}

// notReady returns why the process should get no new clients, or "".
func (o Options) notReady() string {
	if o.Draining != nil && o.Draining() {
		return "draining"
	}
	if o.MaxUpstreamFailures > 0 && o.UpstreamFailures != nil {
		if n := o.UpstreamFailures(); n >= o.MaxUpstreamFailures {
			return fmt.Sprintf("upstream unreachable: %d connection attempts failed in a row", n)
		}
	}
	return ""
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, body)
}
