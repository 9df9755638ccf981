package telemetry

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

// The upstream layer finds the rematch counters by this interface.
var _ upstream.UIDLObserver = (*Metrics)(nil)

var testConn = pop3server.ConnInfo{
	SessionID:  "s1",
	RemoteAddr: netip.MustParseAddrPort("203.0.113.7:40000"),
	LocalAddr:  netip.MustParseAddrPort("192.0.2.1:110"),
}

func TestLoginResult(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, LoginOK},
		{pop3server.ErrAuthFailed, LoginAuthFailed},
		{pop3server.ErrAuthFailed.Wrap(errors.New("NO [AUTHENTICATIONFAILED]")), LoginAuthFailed},
		{pop3server.ErrInUse, LoginInUse},
		{pop3server.ErrTemporary.Wrap(errors.New("dial: refused")), LoginTempFailure},
		// A temporary failure whose cause happens to be an [AUTH] error is
		// still temporary: the outermost code is what the client saw.
		{pop3server.ErrTemporary.Wrap(pop3server.ErrAuthFailed), LoginTempFailure},
		{&pop3server.Error{Code: pop3server.CodeSysPerm, Text: "x"}, LoginTempFailure},
		{errors.New("plain error"), LoginTempFailure},
	} {
		if got := LoginResult(tc.err); got != tc.want {
			t.Errorf("LoginResult(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestMetricsCountEvents(t *testing.T) {
	m := NewMetrics("v1.2.3")
	var o pop3server.Observer = m

	o.ConnectionOpened(testConn)
	o.ConnectionOpened(testConn)
	o.LoginAttempted(testConn, "bob", nil)
	o.LoginAttempted(testConn, "bob", pop3server.ErrAuthFailed)
	o.LoginAttempted(testConn, "bob", pop3server.ErrAuthFailed)
	o.LoginAttempted(testConn, "bob", pop3server.ErrTemporary)
	o.LoginAttempted(testConn, "bob", pop3server.ErrInUse)
	o.CommandDone("RETR", true)
	o.CommandDone("RETR", true)
	o.CommandDone("RETR", false)
	o.CommandDone("UNKNOWN", false)
	o.SessionClosed(testConn, pop3server.SessionStats{BytesSent: 1000, Result: "quit"})
	o.SessionClosed(testConn, pop3server.SessionStats{BytesSent: 234, Result: "shutdown"})

	m.ObserveCommand("connect", 20*time.Millisecond, nil)
	m.ObserveCommand("login", 3*time.Millisecond, pop3server.ErrAuthFailed.Wrap(errors.New("NO")))
	m.ObserveCommand("fetch", 2*time.Second, errors.New("i/o timeout"))
	m.UpdateApplied("expunge", 3)
	m.UpdateApplied("seen", 1)
	m.UpdateApplied("expunge", 2)
	m.UIDLsAssigned(false, 0, 4, 0)
	m.UIDLsAssigned(true, 7, 1, 2)

	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"sessions_total", testutil.ToFloat64(m.sessionsTotal), 2},
		{"sessions_ended quit", testutil.ToFloat64(m.sessionsEnded.WithLabelValues("quit")), 1},
		{"sessions_ended shutdown", testutil.ToFloat64(m.sessionsEnded.WithLabelValues("shutdown")), 1},
		{"logins ok", testutil.ToFloat64(m.logins.WithLabelValues(LoginOK)), 1},
		{"logins auth_failed", testutil.ToFloat64(m.logins.WithLabelValues(LoginAuthFailed)), 2},
		{"logins temp_failure", testutil.ToFloat64(m.logins.WithLabelValues(LoginTempFailure)), 1},
		{"logins in_use", testutil.ToFloat64(m.logins.WithLabelValues(LoginInUse)), 1},
		{"RETR ok", testutil.ToFloat64(m.commands.WithLabelValues("RETR", "ok")), 2},
		{"RETR err", testutil.ToFloat64(m.commands.WithLabelValues("RETR", "err")), 1},
		{"UNKNOWN err", testutil.ToFloat64(m.commands.WithLabelValues("UNKNOWN", "err")), 1},
		{"sent bytes", testutil.ToFloat64(m.sentBytes), 1234},
		{"upstream errors login (bad password is not one)", testutil.ToFloat64(m.upstreamErrors.WithLabelValues("login")), 0},
		{"upstream errors fetch", testutil.ToFloat64(m.upstreamErrors.WithLabelValues("fetch")), 1},
		{"upstream errors connect", testutil.ToFloat64(m.upstreamErrors.WithLabelValues("connect")), 0},
		{"updates expunge", testutil.ToFloat64(m.updatesApplied.WithLabelValues("expunge")), 5},
		{"updates seen", testutil.ToFloat64(m.updatesApplied.WithLabelValues("seen")), 1},
		{"uidl rematches", testutil.ToFloat64(m.uidlRematches), 1},
		{"uidl matched", testutil.ToFloat64(m.uidlAssigned.WithLabelValues("matched")), 7},
		{"uidl fresh", testutil.ToFloat64(m.uidlAssigned.WithLabelValues("fresh")), 5},
		{"uidl ambiguous", testutil.ToFloat64(m.uidlAssigned.WithLabelValues("ambiguous")), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.upstreamDuration); n != 3 {
		t.Errorf("upstream duration series = %d, want 3 (connect, login, fetch)", n)
	}
}

func TestMetricsExposition(t *testing.T) {
	m := NewMetrics("v1.2.3")
	hits, misses := uint64(7), uint64(3)
	m.WatchCache(func() (uint64, uint64) { return hits, misses })
	active := 4
	m.WatchSessions(func() int { return active })
	m.ObserveCommand("select", 30*time.Millisecond, nil)

	want := `
# HELP popbridge_cache_hits_total Logins whose mailbox listing came from the cache.
# TYPE popbridge_cache_hits_total counter
popbridge_cache_hits_total 7
# HELP popbridge_cache_misses_total Logins whose mailbox listing had to be fetched.
# TYPE popbridge_cache_misses_total counter
popbridge_cache_misses_total 3
# HELP popbridge_sessions_active POP3 connections open now.
# TYPE popbridge_sessions_active gauge
popbridge_sessions_active 4
`
	err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"popbridge_cache_hits_total", "popbridge_cache_misses_total", "popbridge_sessions_active")
	if err != nil {
		t.Error(err)
	}
	// Read at scrape time, not copied at registration.
	hits = 8
	err = testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP popbridge_cache_hits_total Logins whose mailbox listing came from the cache.
# TYPE popbridge_cache_hits_total counter
popbridge_cache_hits_total 8
`), "popbridge_cache_hits_total")
	if err != nil {
		t.Error(err)
	}

	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetName() == "popbridge_build_info" {
			labels := map[string]string{}
			for _, l := range mf.GetMetric()[0].GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["version"] != "v1.2.3" || !strings.HasPrefix(labels["goversion"], "go") {
				t.Errorf("build_info labels = %v", labels)
			}
		}
	}
	for _, n := range []string{
		"popbridge_build_info", "go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds",
		"popbridge_logins_total", "popbridge_upstream_errors_total", "popbridge_upstream_command_duration_seconds",
	} {
		if !names[n] {
			t.Errorf("metric %s missing from the registry", n)
		}
	}
}

// TestUpstreamErrorsByExchange: failed exchanges are counted by name;
// readiness is not the metrics' business (see upstream.Backend.Health).
func TestUpstreamErrorsByExchange(t *testing.T) {
	m := NewMetrics("")
	fail := errors.New("connection refused")
	for range 3 {
		m.ObserveCommand("connect", time.Millisecond, fail)
	}
	m.ObserveCommand("connect", time.Millisecond, nil)
	m.ObserveCommand("login", time.Millisecond, fail)
	if got := testutil.ToFloat64(m.upstreamErrors.WithLabelValues("connect")); got != 3 {
		t.Errorf("connect errors = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.upstreamErrors.WithLabelValues("login")); got != 1 {
		t.Errorf("login errors = %v, want 1", got)
	}
}
