package telemetry

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/pop3server"
)

// failedLoginShape is the documented prefix of a failed-login line
// (docs/operations.md, deploy/fail2ban/filter.d/popbridge.conf).
var failedLoginShape = regexp.MustCompile(`^\{"level":"warn","event":"login_failed","client_ip":"203\.0\.113\.7","client_port":40000,"session":"s1","user":"[^"]*","reason":"authentication failed","tls":false,"time":"[^"]+","message":"login failed"\}$`)

func logLines(t *testing.T, f func(LogObserver)) []string {
	t.Helper()
	var buf bytes.Buffer
	f(LogObserver{Log: zerolog.New(&buf).Level(zerolog.InfoLevel).With().Timestamp().Logger()})
	return strings.Split(strings.TrimSpace(buf.String()), "\n")
}

func TestFailedLoginLineShape(t *testing.T) {
	lines := logLines(t, func(o LogObserver) {
		o.LoginAttempted(testConn, "bob", pop3server.ErrAuthFailed)
	})
	if len(lines) != 1 || !failedLoginShape.MatchString(lines[0]) {
		t.Fatalf("failed-login line changed shape:\n%s", strings.Join(lines, "\n"))
	}
}

// A username is client-controlled: it must not be able to forge the
// event or address fail2ban keys on.
func TestFailedLoginUserCannotForgeAddress(t *testing.T) {
	evil := `x","event":"login_failed","client_ip":"192.0.2.99`
	lines := logLines(t, func(o LogObserver) { o.LoginAttempted(testConn, evil, pop3server.ErrAuthFailed) })
	if strings.Count(lines[0], `"client_ip":"`) != 1 || strings.Contains(lines[0], `"client_ip":"192.0.2.99"`) {
		t.Fatalf("username leaked into the line's structure: %s", lines[0])
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["user"] != evil || m["client_ip"] != "203.0.113.7" {
		t.Fatalf("line does not round-trip: %v %v", err, m)
	}
}

// The failed-login line says why the login failed, in fixed words.
func TestFailedLoginReason(t *testing.T) {
	lines := logLines(t, func(o LogObserver) {
		o.LoginAttempted(testConn, "bob", pop3server.ErrAuthFailed.Wrap(pop3server.ErrMechanismNotOffered))
	})
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	if m["event"] != "login_failed" || m["reason"] != "mechanism not offered" {
		t.Fatalf("line %s", lines[0])
	}
}

func TestNotClientsFaultIsNotLoginFailed(t *testing.T) {
	lines := logLines(t, func(o LogObserver) {
		o.LoginAttempted(testConn, "bob", pop3server.ErrTemporary)
		o.LoginAttempted(testConn, "bob", pop3server.ErrInUse)
		o.LoginAttempted(testConn, "bob", &pop3server.Error{Code: pop3server.CodeSysPerm, Text: "x"})
		o.LoginAttempted(testConn, "bob", nil) // debug level: not written at info
	})
	want := []string{"login_temp_failure", "login_in_use", "login_temp_failure"}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i, l := range lines {
		if strings.Contains(l, `"login_failed"`) || !strings.Contains(l, `"event":"`+want[i]+`"`) {
			t.Errorf("line %d: want event %s, got %s", i, want[i], l)
		}
	}
}

func TestSessionEndLine(t *testing.T) {
	lines := logLines(t, func(o LogObserver) {
		o.SessionClosed(testConn, pop3server.SessionStats{Username: "bob", LoggedIn: true, Top: 1, Retr: 2,
			Deleted: 2, Messages: 5, MaildropSz: 5000, BytesSent: 4321, Result: "quit"})
	})
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"event": "session_end", "session": "s1", "client_ip": "203.0.113.7", "user": "bob",
		"tls": false, "top": 1.0, "retr": 2.0, "del": 2.0, "msgs": 5.0, "size": 5000.0, "bytes_sent": 4321.0,
		"result": "quit", "message": "session end", "level": "info"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, m[k], v, lines[0])
		}
	}
	if _, ok := m["duration"]; !ok {
		t.Errorf("no duration in %s", lines[0])
	}
}

func TestMultiFansOut(t *testing.T) {
	a, b := NewMetrics(""), NewMetrics("")
	Multi{a, b}.LoginAttempted(testConn, "bob", nil)
	Multi{a, b}.CommandDone("STAT", true)
	for _, m := range []*Metrics{a, b} {
		mfs, _ := m.Registry().Gather()
		found := 0
		for _, mf := range mfs {
			if n := mf.GetName(); n == "popbridge_logins_total" || n == "popbridge_commands_total" {
				for _, s := range mf.GetMetric() {
					found += int(s.GetCounter().GetValue())
				}
			}
		}
		if found != 2 {
			t.Errorf("observer saw %d events, want 2", found)
		}
	}
}
