// Package admin is popbridge's operator HTTP interface (--admin-listen):
// /metrics for Prometheus, /livez and /readyz for orchestrators and load
// balancers.
//
// /livez answers 200 while the process can serve HTTP at all: it never
// depends on the upstream, so an IMAP outage does not get every replica
// restarted. /readyz answers 503 with the reason Ready gives (draining,
// the upstream unreachable), so a load balancer stops sending new clients
// to a replica that cannot serve them. What readiness means is the
// bridge's business (bridge.Bridge.Ready); this package only serves it.
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
	// Ready returns nil when the process should get new clients, or why
	// not (the 503's body); nil Ready means always ready.
	Ready func() error
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
		if opts.Ready != nil {
			if err := opts.Ready(); err != nil {
				writeText(w, http.StatusServiceUnavailable, err.Error())
				return
			}
		}
		writeText(w, http.StatusOK, "ok")
	})
	return mux
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, body)
}
