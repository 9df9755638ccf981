package telemetry

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/popbridge/popbridge/pop3server"
)

// Login results, the values of popbridge_logins_total's result label.
const (
	LoginOK          = "ok"
	LoginAuthFailed  = "auth_failed"  // credentials refused: the client's doing
	LoginTempFailure = "temp_failure" // upstream unreachable, slow or failing, or misconfigured
	LoginInUse       = "in_use"       // maildrop locked (--lock-session or upstream [INUSE])
)

// Metrics is popbridge's Prometheus instrumentation on a registry of its
// own (no global state, so tests and several instances never collide). It
// is a pop3server.Observer for the POP3 side and implements
// upstream.Metrics for the IMAP side; all methods are safe for concurrent
// use.
type Metrics struct {
	reg *prometheus.Registry

	sessionsTotal    prometheus.Counter
	sessionsEnded    *prometheus.CounterVec
	logins           *prometheus.CounterVec
	commands         *prometheus.CounterVec
	sentBytes        prometheus.Counter
	upstreamDuration *prometheus.HistogramVec
	upstreamErrors   *prometheus.CounterVec
	updatesApplied   *prometheus.CounterVec
	uidlRematches    prometheus.Counter
	uidlAssigned     *prometheus.CounterVec
	configLoadTime   prometheus.Gauge
	configLoadOK     prometheus.Gauge

	// commandsOK and commandsErr hold the commands counters by verb.
	commandsOK, commandsErr sync.Map
}

var _ pop3server.Observer = (*Metrics)(nil)

// upstreamBuckets span a LAN round trip to a slow FETCH of a large body's
// first bytes or a big mailbox listing.
var upstreamBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// NewMetrics registers every popbridge metric, the Go runtime and process
// collectors and popbridge_build_info{version,goversion} on a new registry.
func NewMetrics(version string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		sessionsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popbridge_sessions_total",
			Help: "POP3 connections greeted since start.",
		}),
		sessionsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_sessions_ended_total",
			Help: "POP3 connections ended, by how they ended (" + strings.Join(pop3server.SessionResults, ", ") + ").",
		}, []string{"result"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_logins_total",
			Help: "Login attempts by result: ok, auth_failed, temp_failure, in_use.",
		}, []string{"result"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_commands_total",
			Help: "POP3 commands by verb (UNKNOWN for unknown ones) and result (ok for +OK, err for -ERR).",
		}, []string{"verb", "result"}),
		sentBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popbridge_sent_bytes_total",
			Help: "Octets written to POP3 clients, counted when each session ends.",
		}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "popbridge_upstream_command_duration_seconds",
			Help:    "Duration of upstream IMAP exchanges (connect, login, select, list, fetch, update, logout), failed ones included.",
			Buckets: upstreamBuckets,
		}, []string{"command"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_upstream_errors_total",
			Help: "Failed upstream IMAP exchanges by the exchange that failed; refused credentials are not counted.",
		}, []string{"kind"}),
		updatesApplied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_updates_applied_total",
			Help: "Messages changed upstream by QUIT updates, by action (seen, expunge, flag, move).",
		}, []string{"action"}),
		uidlRematches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popbridge_uidl_rematches_total",
			Help: "Mailbox states (UIDVALIDITY change, server move) matched to remembered UIDLs (docs/migration.md).",
		}),
		uidlAssigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popbridge_uidl_assigned_total",
			Help: "Messages given a UIDL with the state store: matched (kept a remembered UIDL by fingerprint), fresh (new mail or no candidate), ambiguous (a shared fingerprint: a new UIDL, downloaded again).",
		}, []string{"result"}),
		configLoadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "popbridge_config_last_load_timestamp_seconds",
			Help: "When the configuration was last loaded (at start or on SIGHUP), successfully or not.",
		}),
		configLoadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "popbridge_config_last_load_success",
			Help: "1 if the last configuration load succeeded, 0 if it failed and the previous configuration is still in use.",
		}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "popbridge_build_info",
		Help: "Always 1; the labels tell the running build.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		m.sessionsTotal, m.sessionsEnded, m.logins, m.commands, m.sentBytes,
		m.upstreamDuration, m.upstreamErrors, m.updatesApplied,
		m.uidlRematches, m.uidlAssigned, m.configLoadTime, m.configLoadOK,
	)
	// Known label values exist from the start, so rate() and absent-series
	// alerts work before the first event.
	for _, r := range []string{LoginOK, LoginAuthFailed, LoginTempFailure, LoginInUse} {
		m.logins.WithLabelValues(r)
	}
	for _, r := range pop3server.SessionResults {
		m.sessionsEnded.WithLabelValues(r)
	}
	m.upstreamErrors.WithLabelValues("connect")
	for _, r := range []string{"matched", "fresh", "ambiguous"} {
		m.uidlAssigned.WithLabelValues(r)
	}
	return m
}

// Registry is where the metrics live, for the /metrics handler.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// WatchSessions exports popbridge_sessions_active from the server's own
// count of open connections, which (unlike a gauge moved by events) cannot
// drift when a connection is refused before its greeting.
func (m *Metrics) WatchSessions(active func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "popbridge_sessions_active",
		Help: "POP3 connections open now.",
	}, func() float64 { return float64(active()) }))
}

// WatchPrefetch exports the read-ahead (docs/prefetch.md):
// popbridge_prefetch_bytes, the octets all sessions hold fetched ahead
// now, and popbridge_prefetch_served_total, the bodies served from them;
// held and served are cache.Budget.Used and Served.
func (m *Metrics) WatchPrefetch(held func() int64, served func() uint64) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "popbridge_prefetch_bytes",
			Help: "Octets of small messages fetched ahead and held now, all sessions.",
		}, func() float64 { return float64(held()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "popbridge_prefetch_served_total",
			Help: "RETR and TOP answers served from bodies fetched ahead.",
		}, func() float64 { return float64(served()) }),
	)
}

// WatchCache exports a listing cache's counters as
// popbridge_cache_hits_total and popbridge_cache_misses_total; stats is
// cache.Listings.Stats.
func (m *Metrics) WatchCache(stats func() (hits, misses uint64)) {
	m.registerPair(prometheus.CounterOpts{
		Name: "popbridge_cache_hits_total",
		Help: "Logins whose mailbox listing came from the cache.",
	}, prometheus.CounterOpts{
		Name: "popbridge_cache_misses_total",
		Help: "Logins whose mailbox listing had to be fetched.",
	}, func() (float64, float64) { h, mi := stats(); return float64(h), float64(mi) })
}

// WatchLoginGuard exports loginguard's counters (docs/security.md):
// popbridge_login_upstream_attempts_total, the logins passed to the
// upstream, and popbridge_login_refused_locally_total, the ones answered
// by the guard (repeated or throttled wrong passwords); stats is
// loginguard.Guard.Stats.
func (m *Metrics) WatchLoginGuard(stats func() (upstream, local int64)) {
	m.registerPair(prometheus.CounterOpts{
		Name: "popbridge_login_upstream_attempts_total",
		Help: "Logins whose credentials were passed to the upstream.",
	}, prometheus.CounterOpts{
		Name: "popbridge_login_refused_locally_total",
		Help: "Logins refused without asking the upstream: a password it refused recently, or a user under attack.",
	}, func() (float64, float64) { u, l := stats(); return float64(u), float64(l) })
}

// WatchReleases exports popbridge_upstream_released_total and
// popbridge_upstream_resumed_total: the upstream clients idle sessions gave
// back and started again (docs/design.md, "Idle sessions"); stats is
// upstream.Backend.IdleReleases.
func (m *Metrics) WatchReleases(stats func() (released, resumed uint64)) {
	m.registerPair(prometheus.CounterOpts{
		Name: "popbridge_upstream_released_total",
		Help: "Upstream clients released while their POP3 client was silent.",
	}, prometheus.CounterOpts{
		Name: "popbridge_upstream_resumed_total",
		Help: "Released upstream clients started again for a command.",
	}, func() (float64, float64) { r, u := stats(); return float64(r), float64(u) })
}

// registerPair registers two counters whose values one stats call returns.
func (m *Metrics) registerPair(a, b prometheus.CounterOpts, stats func() (float64, float64)) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(a, func() float64 { v, _ := stats(); return v }),
		prometheus.NewCounterFunc(b, func() float64 { _, v := stats(); return v }),
	)
}

// ConnectionOpened counts a greeted connection.
func (m *Metrics) ConnectionOpened(pop3server.ConnInfo) { m.sessionsTotal.Inc() }

// LoginAttempted counts a login by result.
func (m *Metrics) LoginAttempted(_ pop3server.ConnInfo, _ string, err error) {
	m.logins.WithLabelValues(LoginResult(err)).Inc()
}

// CommandDone counts a command; verbs come from pop3server's fixed table
// (or "UNKNOWN"), so the label set stays small.
// Each verb's two counters are looked up once and kept: WithLabelValues
// hashes and validates its labels on every call, 3 % of popbridge's CPU
// on a TOP n 0 scan.
func (m *Metrics) CommandDone(verb string, ok bool) {
	cache, result := &m.commandsErr, "err"
	if ok {
		cache, result = &m.commandsOK, "ok"
	}
	if c, found := cache.Load(verb); found {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.commands.WithLabelValues(verb, result)
	cache.Store(verb, c)
	c.Inc()
}

// SessionClosed adds the session's output and its ending.
func (m *Metrics) SessionClosed(_ pop3server.ConnInfo, s pop3server.SessionStats) {
	m.sentBytes.Add(float64(s.BytesSent))
	m.sessionsEnded.WithLabelValues(s.Result).Inc()
}

// ObserveCommand records an upstream exchange (upstream.Metrics). A login
// refused for bad credentials is the client's error, not the upstream's.
func (m *Metrics) ObserveCommand(name string, d time.Duration, err error) {
	m.upstreamDuration.WithLabelValues(name).Observe(d.Seconds())
	if err != nil && LoginResult(err) != LoginAuthFailed {
		m.upstreamErrors.WithLabelValues(name).Inc()
	}
}

// UpdateApplied counts messages changed by a QUIT update (upstream.Metrics).
func (m *Metrics) UpdateApplied(action string, n int) {
	m.updatesApplied.WithLabelValues(action).Add(float64(n))
}

// UIDLsAssigned counts a UIDL assignment with the state store
// (upstream.UIDLObserver).
func (m *Metrics) UIDLsAssigned(rematch bool, matched, fresh, ambiguous int) {
	if rematch {
		m.uidlRematches.Inc()
	}
	m.uidlAssigned.WithLabelValues("matched").Add(float64(matched))
	m.uidlAssigned.WithLabelValues("fresh").Add(float64(fresh))
	m.uidlAssigned.WithLabelValues("ambiguous").Add(float64(ambiguous))
}

// ConfigLoaded records a configuration load: at start, and at each
// SIGHUP reload, whose failure keeps the previous configuration.
func (m *Metrics) ConfigLoaded(at time.Time, ok bool) {
	m.configLoadTime.Set(float64(at.UnixNano()) / 1e9)
	if ok {
		m.configLoadOK.Set(1)
	} else {
		m.configLoadOK.Set(0)
	}
}

// LoginResult classifies a login error as the logins_total result label:
// only an [AUTH] refusal is the client's fault (and a fail2ban event).
func LoginResult(err error) string {
	if err == nil {
		return LoginOK
	}
	var pe *pop3server.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case pop3server.CodeAuth:
			return LoginAuthFailed
		case pop3server.CodeInUse:
			return LoginInUse
		}
	}
	return LoginTempFailure
}
