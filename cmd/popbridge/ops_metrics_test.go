package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
)

// TestOpsMetricsAfterSession scrapes /metrics around a scripted pair of
// sessions and checks each counter moved by exactly what the sessions did.
func TestOpsMetricsAfterSession(t *testing.T) {
	p := opsStart(t, bridgeproc.Binary(t), "--demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--auth-fail-delay", "1ms")
	before := p.Scrape()

	var octets int64
	// A failed login.
	c := opsDial(t, p.POP3, nil)
	c.MustLine("+OK")
	c.OK("USER demo")
	if s := c.Cmd("PASS wrong"); !strings.HasPrefix(s, "-ERR [AUTH]") {
		t.Fatalf("PASS wrong: %s", s)
	}
	c.OK("QUIT")
	io.Copy(io.Discard, c.Reader())
	octets += c.BytesRead()

	// A session that reads one message and deletes another.
	c = opsDial(t, p.POP3, nil)
	c.MustLine("+OK")
	c.OK("USER demo")
	c.OK("PASS demo")
	c.OK("STAT")
	c.OK("LIST")
	c.Multiline()
	c.OK("RETR 1")
	c.Multiline()
	c.OK("NOOP")
	if s := c.Cmd("BOGUS"); !strings.HasPrefix(s, "-ERR") {
		t.Fatalf("BOGUS: %s", s)
	}
	c.OK("DELE 2")
	c.OK("QUIT")
	io.Copy(io.Discard, c.Reader())
	octets += c.BytesRead()

	// Session-end counters move after the client saw the connection close.
	var after map[string]float64
	deadline := time.Now().Add(2 * time.Minute)
	for {
		after = p.Scrape()
		if after[`popbridge_sessions_ended_total{result="quit"}`]-before[`popbridge_sessions_ended_total{result="quit"}`] == 2 &&
			after["popbridge_sessions_active"] == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	want := map[string]float64{
		`popbridge_sessions_total`:                                             2,
		`popbridge_sessions_ended_total{result="quit"}`:                        2,
		`popbridge_logins_total{result="ok"}`:                                  1,
		`popbridge_logins_total{result="auth_failed"}`:                         1,
		`popbridge_logins_total{result="temp_failure"}`:                        0,
		`popbridge_commands_total{result="ok",verb="USER"}`:                    2,
		`popbridge_commands_total{result="err",verb="PASS"}`:                   1,
		`popbridge_commands_total{result="ok",verb="PASS"}`:                    1,
		`popbridge_commands_total{result="ok",verb="STAT"}`:                    1,
		`popbridge_commands_total{result="ok",verb="LIST"}`:                    1,
		`popbridge_commands_total{result="ok",verb="RETR"}`:                    1,
		`popbridge_commands_total{result="ok",verb="NOOP"}`:                    1,
		`popbridge_commands_total{result="ok",verb="DELE"}`:                    1,
		`popbridge_commands_total{result="ok",verb="QUIT"}`:                    2,
		`popbridge_commands_total{result="err",verb="UNKNOWN"}`:                1,
		`popbridge_sent_bytes_total`:                                           float64(octets),
		`popbridge_upstream_command_duration_seconds_count{command="connect"}`: 2,
		`popbridge_upstream_command_duration_seconds_count{command="login"}`:   2,
		`popbridge_upstream_errors_total{kind="connect"}`:                      0,
		`popbridge_upstream_errors_total{kind="login"}`:                        0, // a wrong password is not an upstream error
		`popbridge_updates_applied_total{action="expunge"}`:                    1,
		`popbridge_updates_applied_total{action="seen"}`:                       1,
		`popbridge_prefetch_served_total`:                                      1, // RETR 1 reads in order
		`popbridge_prefetch_bytes`:                                             0, // given back at the end
	}
	for series, d := range want {
		if got := after[series] - before[series]; got != d {
			t.Errorf("%s moved by %v, want %v", series, got, d)
		}
	}
	if got := after["popbridge_sessions_active"]; got != 0 {
		t.Errorf("popbridge_sessions_active = %v after both sessions ended", got)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds", "popbridge_cache_hits_total",
		"popbridge_cache_misses_total", "popbridge_prefetch_bytes", "popbridge_prefetch_served_total"} {
		if _, ok := after[name]; !ok {
			t.Errorf("%s missing from /metrics", name)
		}
	}
	found := false
	for series := range after {
		if strings.HasPrefix(series, "popbridge_build_info{") && strings.Contains(series, `goversion="go`) {
			found = true
		}
	}
	if !found {
		t.Error("popbridge_build_info{version,goversion} missing from /metrics")
	}

	// Probes, while healthy.
	for _, path := range []string{"/livez", "/readyz"} {
		if code, body, err := p.Get(path); err != nil || code != http.StatusOK {
			t.Errorf("GET %s = %d %q %v, want 200", path, code, body, err)
		}
	}
}
