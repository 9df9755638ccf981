package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestLivezNeverDependsOnReadiness(t *testing.T) {
	h := Handler(Options{
		Draining:            func() bool { return true },
		UpstreamFailures:    func() int { return 100 },
		MaxUpstreamFailures: 1,
	})
	if code, _ := get(t, h, "/livez"); code != http.StatusOK {
		t.Fatalf("/livez = %d while draining with the upstream down, want 200", code)
	}
}

func TestReadyz(t *testing.T) {
	var draining atomic.Bool
	var failures atomic.Int64
	h := Handler(Options{
		Draining:            draining.Load,
		UpstreamFailures:    func() int { return int(failures.Load()) },
		MaxUpstreamFailures: 3,
	})
	steps := []struct {
		draining bool
		failures int64
		want     int
		body     string
	}{
		{false, 0, 200, "ok"},
		{false, 2, 200, "ok"},
		{false, 3, 503, "upstream unreachable"},
		{false, 0, 200, "ok"}, // a connect succeeded again
		{true, 0, 503, "draining"},
	}
	for i, s := range steps {
		draining.Store(s.draining)
		failures.Store(s.failures)
		code, body := get(t, h, "/readyz")
		if code != s.want || !strings.Contains(body, s.body) {
			t.Errorf("step %d: /readyz = %d %q, want %d %q", i, code, body, s.want, s.body)
		}
	}
}

func TestReadyzUpstreamCheckOff(t *testing.T) {
	h := Handler(Options{UpstreamFailures: func() int { return 1000 }})
	if code, _ := get(t, h, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d with MaxUpstreamFailures 0, want 200", code)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "popbridge_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(5)
	code, body := get(t, Handler(Options{Gatherer: reg}), "/metrics")
	if code != 200 || !strings.Contains(body, "popbridge_test_total 5") {
		t.Fatalf("/metrics = %d:\n%s", code, body)
	}
	if code, _ := get(t, Handler(Options{}), "/metrics"); code != http.StatusNotFound {
		t.Fatalf("/metrics without a gatherer = %d, want 404", code)
	}
}

func TestOnlyGet(t *testing.T) {
	h := Handler(Options{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/livez", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /livez = %d, want 405", rec.Code)
	}
}

func TestReadyzProbesUpstreamToRecover(t *testing.T) {
	var failures atomic.Int64
	failures.Store(5)
	var probes atomic.Int64
	var up atomic.Bool
	h := Handler(Options{
		UpstreamFailures:    func() int { return int(failures.Load()) },
		MaxUpstreamFailures: 3,
		ProbeInterval:       time.Hour, // only the first call probes, unless the streak resets
		ProbeUpstream: func(ctx context.Context) error {
			probes.Add(1)
			if !up.Load() {
				return errors.New("connection refused")
			}
			failures.Store(0)
			return nil
		},
	})
	for range 3 {
		if code, _ := get(t, h, "/readyz"); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d with the upstream down, want 503", code)
		}
	}
	if n := probes.Load(); n != 1 {
		t.Fatalf("%d probes within one interval, want 1", n)
	}

	h = Handler(Options{
		UpstreamFailures:    func() int { return int(failures.Load()) },
		MaxUpstreamFailures: 3,
		ProbeInterval:       time.Nanosecond,
		ProbeUpstream: func(ctx context.Context) error {
			probes.Add(1)
			if !up.Load() {
				return errors.New("connection refused")
			}
			failures.Store(0)
			return nil
		},
	})
	up.Store(true)
	if code, body := get(t, h, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d %q once the probe reaches the upstream, want 200", code, body)
	}
	if failures.Load() != 0 {
		t.Fatal("probe did not reset the streak")
	}
}
