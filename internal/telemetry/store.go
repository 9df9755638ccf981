package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/popbridge/popbridge/store"
)

// storeBuckets span a local SQLite write to a PostgreSQL round trip under
// load.
var storeBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// WatchStore registers popbridge_store_operation_duration_seconds{op} and
// popbridge_store_errors_total{op,kind} and returns the store.Observer that
// feeds them. Only failures of the store count as errors (kind
// unavailable, disabled, schema_too_new); not_found, conflict and locked
// are answers. Call it once per Metrics.
func (m *Metrics) WatchStore() store.Observer {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "popbridge_store_operation_duration_seconds",
		Help:    "Duration of state store operations by operation (get_mailbox, append_journal, lock, ...), failed ones included.",
		Buckets: storeBuckets,
	}, []string{"op"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "popbridge_store_errors_total",
		Help: "State store operations that failed, by operation and kind (unavailable, disabled, schema_too_new).",
	}, []string{"op", "kind"})
	m.reg.MustRegister(duration, errs)
	errs.WithLabelValues("ping", "unavailable") // exists from the start for alerts
	return store.ObserverFunc(func(op string, took time.Duration, err error) {
		duration.WithLabelValues(op).Observe(took.Seconds())
		switch kind := store.ErrorKind(err); kind {
		case "", "not_found", "conflict", "locked":
		default:
			errs.WithLabelValues(op, kind).Inc()
		}
	})
}
