package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// TestReloadSIGHUP: SIGHUP applies a changed policy to new sessions while
// a session already open keeps its own; a broken file keeps the running
// configuration with one error line; the config-load metrics tell.
func TestReloadSIGHUP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "popbridge.yaml")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("users:\n  demo:\n    delete-policy: leave\n")
	p := opsStart(t, bridgeproc.Binary(t), "--demo", "--config", path, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")

	// expire logs in as the demo user and returns the EXPIRE capability
	// after login: NEVER for leave, 0 for on-download (RFC 2449).
	loginAs := func(user string) *pop3client.Client {
		c := opsDial(t, p.POP3, nil)
		c.MustLine("+OK")
		c.Login(user, "demo")
		return c
	}
	login := func() *pop3client.Client { return loginAs("demo") }
	expire := func(c *pop3client.Client) string {
		for _, l := range c.Capa() {
			if v, ok := strings.CutPrefix(l, "EXPIRE "); ok {
				return v
			}
		}
		return ""
	}
	metric := func(name string) string {
		_, body, err := p.Get("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				return v
			}
		}
		return ""
	}
	old := login()
	if got := expire(old); got != "NEVER" {
		t.Fatalf("EXPIRE under leave = %q", got)
	}
	if got := metric("popbridge_config_last_load_success"); got != "1" {
		t.Errorf("config load success at start = %q", got)
	}

	write("users:\n  demo:\n    delete-policy: on-download\n")
	p.Signal(syscall.SIGHUP)
	p.WaitLog(map[string]string{"message": "configuration reloaded: policies and overrides apply to new sessions"}, 15*time.Second)
	if got := expire(login()); got != "0" {
		t.Errorf("EXPIRE of a session after the reload = %q, want 0 (on-download)", got)
	}
	if got := expire(old); got != "NEVER" {
		t.Errorf("EXPIRE of the session open across the reload = %q, want NEVER (its policy)", got)
	}

	write("users:\n  demo:\n    delete-policy: sometimes\n")
	p.Signal(syscall.SIGHUP)
	e := p.WaitLog(map[string]string{"message": "configuration reload failed; keeping the running configuration"}, 15*time.Second)
	if msg, _ := e["error"].(string); !strings.Contains(msg, path+":3") || strings.Contains(msg, "\n") {
		t.Errorf("reload error %q does not name the file and line on one line", msg)
	}
	if n := p.CountLog(map[string]string{"level": "error"}); n != 1 {
		t.Errorf("%d error lines, want 1", n)
	}
	if got := expire(login()); got != "0" {
		t.Errorf("EXPIRE after a failed reload = %q, want 0 (the running configuration)", got)
	}
	if got := metric("popbridge_config_last_load_success"); got != "0" {
		t.Errorf("config load success after a bad file = %q", got)
	}
	if metric("popbridge_config_last_load_timestamp_seconds") == "" {
		t.Error("no popbridge_config_last_load_timestamp_seconds")
	}

	// The session that was open all along still QUITs with its policy:
	// leave applies nothing upstream (another device still sees all; the
	// demo's in-memory store hides the message from the demo login itself).
	stat := old.OK("STAT")
	old.OK("DELE 1")
	old.OK("QUIT")
	if got := loginAs("demo#check").OK("STAT"); got != stat {
		t.Errorf("STAT after the old session's DELE and QUIT = %q, want %q (leave)", got, stat)
	}
}
