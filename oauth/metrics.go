package oauth

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the OAuth2 counters and gauges. A nil *Metrics is valid and
// records nothing.
type Metrics struct {
	refreshes *prometheus.CounterVec
	marked    prometheus.Counter
}

// NewMetrics registers popbridge_oauth_token_refreshes_total{result},
// popbridge_oauth_reenroll_marked_total and, read from the store at each
// scrape, popbridge_oauth_mailboxes_needing_reenrollment.
func NewMetrics(reg prometheus.Registerer, st Store) *Metrics {
	m := &Metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_oauth_token_refreshes_total",
			Help: "Access-token refreshes by result: ok, invalid_grant (grant revoked or expired), refused (client misconfigured), temp_failure, store_error.",
		}, []string{"result"}),
		marked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popbridge_oauth_reenroll_marked_total",
			Help: "Mailboxes marked for re-enrollment by this process.",
		}),
	}
	for _, r := range []string{"ok", "invalid_grant", "refused", "temp_failure", "store_error"} {
		m.refreshes.WithLabelValues(r)
	}
	reg.MustRegister(m.refreshes, m.marked, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "popbridge_oauth_mailboxes_needing_reenrollment",
		Help: "Enrolled mailboxes whose grant was revoked or expired (popbridge oauth devices lists them); -1 when the store cannot be read.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l, err := st.ListMailboxes(ctx)
		if err != nil {
			return -1
		}
		n := 0
		for _, r := range l {
			if r.NeedsReenroll {
				n++
			}
		}
		return float64(n)
	}))
	return m
}

func (m *Metrics) refreshed(result string) {
	if m != nil {
		m.refreshes.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) reenrollMarked() {
	if m != nil {
		m.marked.Inc()
	}
}
