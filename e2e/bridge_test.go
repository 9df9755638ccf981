package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// startTimeout bounds how long the bridge may take to print its
// "popbridge started" line.
const startTimeout = 30 * time.Second

// startBridge starts popbridge in front of d (no TLS upstream) listening on
// a free loopback port, with extra flags appended. It is stopped with
// SIGTERM when the test ends, and must then exit with status 0 within 40 s
// (its drain timeout is 30 s); the test fails if the bridge logged at
// level error or above (none of the e2e scenarios should cause one); if
// the test failed its log is dumped.
func startBridge(t testing.TB, d *testenv.Dovecot, extra ...string) *bridgeproc.Bridge {
	t.Helper()
	args := append([]string{
		"--upstream", "imap+insecure://" + d.IMAPAddr,
		"--listen", "127.0.0.1:0",
		"--log-format", "json",
		"--log-level", "debug",
	}, extra...)
	b := bridgeproc.Start(t, bridgeproc.Options{
		Args:            args,
		Env:             cleanEnv(),
		StartTimeout:    startTimeout,
		StopTimeout:     40 * time.Second,
		MustExitCleanly: true,
		NoErrorLogs:     true,
	})
	if b.POP3 == "" {
		t.Fatalf("bridge: \"popbridge started\" without a listen address: %v", b.Started)
	}
	return b
}

// cleanEnv is the environment without POPBRIDGE_* variables, so a
// developer's settings cannot change what the tests run.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POPBRIDGE_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitSessionEnd waits for the bridge's "session end" line of the client
// connection whose local port is clientPort, and returns it. The bridge
// writes it after the session's Mailbox is closed, so whatever the session
// did (or did not do) upstream is done once it is logged.
func waitSessionEnd(t testing.TB, b *bridgeproc.Bridge, clientPort int) map[string]any {
	t.Helper()
	e := b.WaitEntry(30*time.Second, func(e map[string]any) bool {
		port, _ := e["client_port"].(float64)
		return e["event"] == "session_end" && int(port) == clientPort
	})
	if e == nil {
		t.Fatalf("bridge: no session end logged for client port %d", clientPort)
	}
	return e
}

// bridgeURL returns the pop3:// URL of b for user and password, with
// path appended (e.g. "/1").
func bridgeURL(b *bridgeproc.Bridge, user, pass, path string) string {
	return fmt.Sprintf("pop3://%s:%s@%s%s", user, pass, b.POP3, path)
}

// password is the password of every test user: a function of the name, so
// tests need not carry it around.
func password(user string) string { return "pw-" + user + "-secret" }

// startDovecot starts a Dovecot with the named users (password(name)),
// optionally with Dovecot's own POP3 server for comparisons.
func startDovecot(t testing.TB, pop3 bool, users ...string) *testenv.Dovecot {
	t.Helper()
	var us []testenv.User
	for _, u := range users {
		us = append(us, testenv.User{Name: u, Password: password(u)})
	}
	return testenv.StartDovecot(t, testenv.DovecotOptions{Users: us, POP3: pop3})
}
