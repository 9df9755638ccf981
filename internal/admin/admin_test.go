package admin

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

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
	h := Handler(Options{Ready: func() error { return errors.New("draining") }})
	if code, _ := get(t, h, "/livez"); code != http.StatusOK {
		t.Fatalf("/livez = %d while unready, want 200", code)
	}
}

func TestReadyz(t *testing.T) {
	var reason atomic.Value
	reason.Store("")
	h := Handler(Options{Ready: func() error {
		if r := reason.Load().(string); r != "" {
			return errors.New(r)
		}
		return nil
	}})
	for i, s := range []struct {
		reason string
		want   int
		body   string
	}{
		{"", 200, "ok"},
		{"upstream unreachable", 503, "upstream unreachable"},
		{"", 200, "ok"},
		{"draining", 503, "draining"},
	} {
		reason.Store(s.reason)
		code, body := get(t, h, "/readyz")
		if code != s.want || strings.TrimSpace(body) != s.body {
			t.Errorf("step %d: /readyz = %d %q, want %d %q", i, code, body, s.want, s.body)
		}
	}
	if code, _ := get(t, Handler(Options{}), "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz without Ready = %d, want 200", code)
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
