package security

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

const canary = "Canary-7Qz!pw-41d9"

// leaks lists the forms in which the canary must never appear.
func leaks(user string) map[string]string {
	hx := hex.EncodeToString([]byte(canary))
	return map[string]string{
		"raw":           canary,
		"base64":        base64.StdEncoding.EncodeToString([]byte(canary)),
		"base64 raw":    base64.RawStdEncoding.EncodeToString([]byte(canary)),
		"hex":           hx,
		"HEX":           strings.ToUpper(hx),
		"PLAIN blob":    base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + canary)),
		"PLAIN blob 2":  base64.StdEncoding.EncodeToString([]byte(user + "\x00" + user + "\x00" + canary)),
		"password tail": canary[4:], // a truncated or partly masked copy
	}
}

// logins runs good and bad logins with every mechanism; ok is the answer
// a right password gets from this upstream.
func logins(t *testing.T, addr, user, ok string) {
	for _, pass := range []string{canary, canary + "-wrong", "x" + canary} {
		want := ok
		if pass != canary && ok == "+OK*" {
			want = errAuth
		}
		c := dialPOP3(t, addr)
		c.Send("USER " + user)
		c.Expect("+OK*")
		c.Send("PASS " + pass)
		c.Expect(want)
		c = dialPOP3(t, addr)
		c.Send("AUTH PLAIN " + b64("\x00"+user+"\x00"+pass))
		c.Expect(want)
		c = dialPOP3(t, addr)
		c.Send("AUTH PLAIN")
		c.Expect("+ ")
		c.Send(b64(user + "\x00" + user + "\x00" + pass))
		c.Expect(want)
		c = dialPOP3(t, addr)
		c.Send("AUTH LOGIN")
		c.Expect("+ *")
		c.Send(b64(user))
		c.Expect("+ *")
		c.Send(b64(pass))
		c.Expect(want)
		// Broken exchanges carrying the password.
		c = dialPOP3(t, addr)
		c.Send("AUTH PLAIN " + b64("\x00" + user + "\x00" + pass)[1:])
		c.Expect("-ERR invalid base64")
		c.Send("AUTH PLAIN " + b64("other\x00"+user+"\x00"+pass))
		c.Expect(errAuth)
		c.Send("AUTH LOGIN " + b64(user))
		c.Expect("+ *")
		c.Send(b64(pass + "\r\n"))
		c.Expect(errAuth)
		c.Send("QUIT")
	}
}

func checkNoLeak(t *testing.T, where, text, user string) {
	t.Helper()
	for form, s := range leaks(user) {
		if strings.Contains(text, s) {
			t.Errorf("%s contains the password (%s form %q)", where, form, s)
		}
	}
}

// At debug level, against a real Dovecot and against an unreachable
// upstream, the password appears in no log line and no metric, in any
// form; every line stays one JSON object; each refused login is one
// login_failed line with the client address.
func TestPasswordNeverLogged(t *testing.T) {
	const user = "canary-user"
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: user, Password: canary}}})
	fast := []string{"--auth-fail-delay", "1ms", "--auth-penalty-max", "1ms", "--max-login-failures", "100",
		"--max-bad-commands-prelogin", "100", "--log-level", "debug", "--admin-listen", "127.0.0.1:0", "--max-conns-per-ip", "1000"}

	b := startBridge(t, append([]string{"--upstream", "imap+insecure://" + d.IMAPAddr}, fast...)...)
	logins(t, b.POP3, user, "+OK*")
	// 2 bad passwords × (USER, PLAIN, PLAIN continued, LOGIN) refused by
	// Dovecot, plus 3 × 2 refused by popbridge itself.
	waitCount(t, b, map[string]string{"event": "login_failed", "client_ip": "127.0.0.1"}, 2*4+3*2)
	checkNoLeak(t, "log (Dovecot upstream)", b.LogText(), user)
	checkNoLeak(t, "stdout", b.Stdout(), user)
	if b.Admin != "" {
		checkNoLeak(t, "/metrics", scrape(t, b.Admin), user)
	} else {
		t.Log("no admin listener: /metrics not checked")
	}

	dead := testenv.RefusedAddr(t)
	b2 := startBridge(t, append([]string{"--upstream", "imap+insecure://" + dead}, fast...)...)
	logins(t, b2.POP3, user, errTemp)
	waitCount(t, b2, map[string]string{"event": "login_failed", "client_ip": "127.0.0.1"}, 3*2)
	checkNoLeak(t, "log (unreachable upstream)", b2.LogText(), user)
	if b2.Admin != "" {
		checkNoLeak(t, "/metrics", scrape(t, b2.Admin), user)
	}
	b2.Entries() // every line one JSON object
}

// waitCount checks that exactly n log lines match want. popbridge logs a
// refused login before it answers, so once the test's clients have their
// answers every line about them has been written; a refused APOP of a
// marker user, logged after all of them, is a barrier: when its line has
// been read, the count is final. No time limit is part of the check.
func waitCount(t *testing.T, b *bridgeproc.Bridge, want map[string]string, n int) {
	t.Helper()
	barrier := logBarrier(t, b)
	got := 0
	for _, e := range b.Entries() {
		if bridgeproc.Matches(e, want) && e["user"] != barrier {
			got++
		}
	}
	if got != n {
		t.Fatalf("%d log lines %v, want exactly %d (one per failure)", got, want, n)
	}
}

// logBarrier returns once every line popbridge logged before it was
// called has been read (see waitCount), and the marker user it logged.
func logBarrier(t *testing.T, b *bridgeproc.Bridge) string {
	t.Helper()
	barrier := fmt.Sprintf("log-barrier-%d", time.Now().UnixNano())
	c := dialPOP3(t, b.POP3)
	c.Send("APOP " + barrier + " 0123456789abcdef0123456789abcdef")
	c.Expect("-ERR*")
	b.WaitLog(map[string]string{"user": barrier}, logWait)
	return barrier
}

// logWait bounds waiting for a log line that must come: not an assertion
// about time, only a guard against hanging until go test's timeout.
const logWait = 2 * time.Minute

func scrape(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// Usernames that try to break a log line (quotes, braces, newlines via
// SASL, ANSI escapes) leave every line a single JSON object, with the
// username as a value.
func TestUsernamesCannotBreakLogLines(t *testing.T) {
	b := startBridge(t, "--demo", "--auth-fail-delay", "1ms", "--auth-penalty-max", "1ms", "--max-login-failures", "100",
		"--log-level", "debug")
	evil := []string{`x","event":"login_ok","client_ip":"10.9.9.9`, "ansi\x1b[2J\x1b[31mred", "new\nline\",\"client_ip\":\"6.6.6.6",
		`}{"message":"forged"}`, "tab\tand\rcr", "\u202eevil-bidi", strings.Repeat("{", 200)}
	for _, u := range evil {
		c := dialPOP3(t, b.POP3)
		c.Send("AUTH LOGIN " + b64(u))
		c.Expect("+ *")
		c.Send(b64("pw"))
		c.Expect(errAuth)
		if !strings.ContainsAny(u, "\r\n") {
			c.Send("USER " + u)
			if strings.ContainsFunc(u, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				c.Expect("-ERR invalid user name") // never stored
				continue
			}
			c.Expect("+OK*")
			c.Send("PASS pw")
			c.Expect(errAuth)
		}
	}
	logBarrier(t, b)
	for _, m := range b.Entries() { // fails on any line that is not one JSON object
		if m["message"] == "forged" || m["event"] == "login_ok" {
			t.Fatalf("forged log line: %v", m)
		}
		if ip, ok := m["client_ip"]; ok && ip != "127.0.0.1" {
			t.Fatalf("log line with a forged client_ip: %v", m)
		}
		if u, ok := m["user"].(string); ok && strings.ContainsAny(u, "\x1b\r\n") {
			t.Fatalf("log line carries control characters in user: %q", u)
		}
	}
}

// "USER name password" on one line (a client, or a person, putting the
// password in the user field) is refused at once, and the password is in
// no log line, at debug level, whatever follows: tab or space, a PASS
// after it, the same thing through AUTH PLAIN and LOGIN. Against a real
// Dovecot, so a login that did reach the upstream would show here.
func TestUserWithPasswordOnOneLineNotLogged(t *testing.T) {
	const user = "canary-user"
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: user, Password: canary}}})
	b := startBridge(t, "--upstream", "imap+insecure://"+d.IMAPAddr, "--auth-fail-delay", "1ms", "--auth-penalty-max", "1ms",
		"--max-login-failures", "100", "--max-bad-commands-prelogin", "100", "--log-level", "debug")
	for _, sep := range []string{" ", "\t", "  "} {
		c := dialPOP3(t, b.POP3)
		c.Send("USER " + user + sep + canary)
		c.Expect("-ERR invalid user name")
		c.Send("PASS " + canary)
		c.Expect("-ERR USER first")
		c.Send("AUTH PLAIN " + b64("\x00"+user+sep+canary+"\x00"+canary))
		c.Expect(errAuth)
		c.Send("AUTH LOGIN " + b64(user+sep+canary))
		c.Expect("+ *")
		c.Send(b64(canary))
		c.Expect(errAuth)
		c.Send("QUIT")
		c.Expect("+OK*")
	}
	// The right login still works, and is logged.
	c := dialPOP3(t, b.POP3)
	c.Login(user, canary)
	c.Send("QUIT")
	c.Expect("+OK*")
	waitCount(t, b, map[string]string{"event": "login_failed", "user": user + "[refused]"}, 3*2)
	b.WaitLog(map[string]string{"event": "session_end", "user": user, "logged_in": "true"}, 10*time.Second)
	lines := strings.Split(b.LogText(), "\n")
	for i, line := range lines {
		checkNoLeak(t, fmt.Sprintf("log line %d", i+1), line, user)
	}
	if n := strings.Count(d.Log(), "auth failed"); n != 0 {
		t.Errorf("Dovecot saw %d failed logins: a refused user name reached the upstream", n)
	}
	b.Entries() // every line one JSON object
}
