package pop3server

import (
	"encoding/base64"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// RFC 5034 AUTH: PLAIN and LOGIN, with and without initial response, "="
// for an empty response, "*" to cancel, strict base64, no proxy
// authorization.
func TestAuthSASL(t *testing.T) {
	const (
		authFailed = "-ERR [AUTH] authentication failed"
		badB64     = "-ERR invalid base64"
		cancelled  = "-ERR authentication cancelled"
		loggedIn   = "+OK Logged in."
	)
	plain := b64("\x00alice\x00secret")
	tests := []struct {
		name  string
		steps []step
	}{
		{"bare AUTH lists mechanisms", []step{{"AUTH", []string{"+OK", "PLAIN", "LOGIN", "."}}}},
		{"plain initial response", []step{{"AUTH PLAIN " + plain, []string{loggedIn}}}},
		{"plain lower-case mechanism", []step{{"auth plain " + plain, []string{loggedIn}}}},
		{"plain without initial response", []step{{"AUTH PLAIN", []string{"+ "}}, {plain, []string{loggedIn}}}},
		{"plain authzid equal to user", []step{{"AUTH PLAIN " + b64("alice\x00alice\x00secret"), []string{loggedIn}}}},
		{"plain authzid other user", []step{{"AUTH PLAIN " + b64("bob\x00alice\x00secret"), []string{authFailed}}}},
		{"plain wrong password", []step{{"AUTH PLAIN " + b64("\x00alice\x00wrong"), []string{authFailed}}}},
		{"plain empty initial response", []step{{"AUTH PLAIN =", []string{authFailed}}}},
		{"plain empty continuation", []step{{"AUTH PLAIN", []string{"+ "}}, {"=", []string{authFailed}}}},
		{"plain missing NULs", []step{{"AUTH PLAIN " + b64("alicesecret"), []string{authFailed}}}},
		{"plain extra NUL", []step{{"AUTH PLAIN " + b64("\x00alice\x00sec\x00ret"), []string{authFailed}}}},
		{"plain cancel", []step{{"AUTH PLAIN", []string{"+ "}}, {"*", []string{cancelled}},
			{"AUTH PLAIN " + plain, []string{loggedIn}}}},
		{"plain padding missing", []step{{"AUTH PLAIN " + strings.TrimRight(plain, "="), []string{badB64}}}},
		{"plain padding short", []step{{"AUTH PLAIN " + strings.TrimSuffix(plain, "="), []string{badB64}}}},
		{"plain padding extra", []step{{"AUTH PLAIN " + plain + "=", []string{badB64}}}},
		{"plain non-canonical bits", []step{{"AUTH PLAIN AGFsaWNlAHNlY3JldB==", []string{badB64}}}},
		{"plain url alphabet", []step{{"AUTH PLAIN " + strings.ReplaceAll(b64("\x00alice\x00s?>~"), "/", "_"), []string{badB64}}}},
		{"plain invalid char", []step{{"AUTH PLAIN AGFsaWNl*HNlY3JldA==", []string{badB64}}}},
		{"plain space inside", []step{{"AUTH PLAIN AGFsaWNl AHNlY3JldA==", []string{"-ERR syntax error: AUTH mechanism [initial-response]"}}}},
		{"plain space in continuation", []step{{"AUTH PLAIN", []string{"+ "}}, {"AGFsaWNl AHNlY3JldA==", []string{badB64}}}},
		{"plain CR in continuation", []step{{"AUTH PLAIN", []string{"+ "}}, {"AGFsaWNlAH\rNlY3JldA==", []string{badB64}}}},
		{"plain tab in initial response", []step{{"AUTH PLAIN AGFsaWNlAH\tNlY3JldA==", []string{badB64}}}},
		{"plain empty line continuation", []step{{"AUTH PLAIN", []string{"+ "}}, {"", []string{badB64}}}},
		{"login", []step{{"AUTH LOGIN", []string{"+ " + b64("Username:")}},
			{b64("alice"), []string{"+ " + b64("Password:")}}, {b64("secret"), []string{loggedIn}}}},
		{"login initial response", []step{{"AUTH LOGIN " + b64("alice"), []string{"+ " + b64("Password:")}},
			{b64("secret"), []string{loggedIn}}}},
		{"login wrong password", []step{{"AUTH LOGIN " + b64("alice"), []string{"+ " + b64("Password:")}},
			{b64("nope"), []string{authFailed}}}},
		{"login empty user", []step{{"AUTH LOGIN =", []string{"+ " + b64("Password:")}},
			{b64("secret"), []string{authFailed}}}},
		{"login empty password", []step{{"AUTH LOGIN " + b64("alice"), []string{"+ " + b64("Password:")}},
			{"=", []string{authFailed}}}},
		{"login cancel at password", []step{{"AUTH LOGIN " + b64("alice"), []string{"+ " + b64("Password:")}},
			{"*", []string{cancelled}}, {"USER alice", []string{"+OK"}}, {"PASS secret", []string{loggedIn}}}},
		{"login bad base64", []step{{"AUTH LOGIN", []string{"+ " + b64("Username:")}}, {"YWxpY2U", []string{badB64}}}},
		{"unknown mechanism", []step{{"AUTH CRAM-MD5", []string{"-ERR unsupported authentication mechanism"}}}},
		{"too many arguments", []step{{"AUTH PLAIN a b", []string{"-ERR syntax error: AUTH mechanism [initial-response]"}}}},
		{"after login", []step{{"AUTH PLAIN " + plain, []string{loggedIn}},
			{"AUTH PLAIN " + plain, []string{"-ERR command not valid in this state"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFake()
			_, addr := startServer(t, b, Options{Limits: Limits{MaxBadCommandsPreLogin: 100}})
			c := runTranscript(t, addr, false, tt.steps)
			if last := tt.steps[len(tt.steps)-1].expect; last[len(last)-1] == loggedIn {
				c.Send("STAT")
				c.Expect("+OK 3 *")
			}
		})
	}
}

// Credentials the upstream must never see are refused before any backend
// contact, with the same answer as a wrong password; credentials with
// IMAP syntax in them reach the backend byte for byte.
func TestCredentialBytes(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	refused := []struct{ name, user, pass string }{
		{"NUL in user", "al\x00ice", "secret"},
		{"CR in password", "alice", "sec\rret"},
		{"LF in password", "alice", "sec\nret"},
		{"CRLF command in password", "alice", "x\r\nA1 DELETE INBOX"},
		{"LF in user", "alice\nA1 LOGOUT", "secret"},
		{"ESC in user", "alice\x1b[31m", "secret"},
		{"TAB in password", "alice", "sec\tret"},
		{"DEL in user", "alice\x7f", "secret"},
		{"C1 control in user", "alice\u0085", "secret"},
		{"invalid UTF-8 user", "alice\xff", "secret"},
		{"user too long", long(256), "secret"},
		{"password too long", "alice", long(513)},
		{"empty password", "alice", ""},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			b := newFake()
			_, addr := startServer(t, b, Options{Limits: Limits{MaxLoginFailures: 10}})
			c := dial(t, addr)
			// LOGIN carries any octet, NUL included, in either field.
			c.Send("AUTH LOGIN " + b64(tt.user))
			c.Expect("+ " + b64("Password:"))
			c.Send(b64OrEmpty(tt.pass))
			c.Expect("-ERR [AUTH] authentication failed")
			if !strings.ContainsAny(tt.user+tt.pass, "\x00\r\n") {
				c.Send("AUTH PLAIN " + b64("\x00"+tt.user+"\x00"+tt.pass))
				c.Expect("-ERR [AUTH] authentication failed")
				c.Send("USER " + tt.user)
				if validUsername(tt.user) {
					c.Expect("+OK")
					c.Send("PASS " + tt.pass)
					c.Expect("-ERR*")
				} else {
					// Refused at once: never stored, so no PASS can use it.
					c.Expect("-ERR invalid user name")
				}
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if len(b.logins) != 0 {
				t.Fatalf("backend contacted with %q", b.logins)
			}
		})
	}

	accepted := []struct{ name, user, pass string }{
		{"IMAP specials", `a"b\c{5}(x)%*]`, `p"w\{5}` + "\u00e9 () {0+}"},
		{"literal syntax", "{5}", "{5}\u00fc"},
		{"spaces in password", "alice", "  two  spaces  "},
		{"UTF-8", "j\u00fcrgen@b\u00fccher.example", "\u30d1\u30b9\u30ef\u30fc\u30c9"},
		{"longest", long(255), long(512)},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			b := newFake()
			b.password = tt.pass
			_, addr := startServer(t, b, Options{})
			c := dial(t, addr)
			c.Send("AUTH LOGIN " + b64(tt.user))
			c.Expect("+ " + b64("Password:"))
			c.Send(b64(tt.pass))
			c.Expect("+OK Logged in.")
			if ir := b64("\x00" + tt.user + "\x00" + tt.pass); len(ir) < 1000 {
				c1 := dial(t, addr)
				c1.Send("AUTH PLAIN " + ir)
				c1.Expect("+OK Logged in.")
			}
			if !strings.Contains(tt.user, " ") {
				c2 := dial(t, addr)
				c2.Send("USER " + tt.user)
				c2.Expect("+OK")
				c2.Send("PASS " + tt.pass)
				c2.Expect("+OK Logged in.")
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			for i := range b.logins {
				if b.logins[i] != tt.user || b.passwords[i] != tt.pass {
					t.Fatalf("backend got %q/%q, want %q/%q", b.logins[i], b.passwords[i], tt.user, tt.pass)
				}
			}
		})
	}
}

func b64OrEmpty(s string) string {
	if s == "" {
		return "="
	}
	return b64(s)
}

// Three refused logins per connection, whatever the mechanism, then the
// connection closes; a SASL exchange that fails to parse counts too.
func TestLoginFailuresAcrossMechanisms(t *testing.T) {
	_, addr := startServer(t, newFake(), Options{})
	c := dial(t, addr)
	c.Send("AUTH PLAIN " + b64("\x00alice\x00nope"))
	c.Expect("-ERR [AUTH] authentication failed")
	c.Send("USER alice")
	c.Expect("+OK")
	c.Send("PASS nope")
	c.Expect("-ERR [AUTH] authentication failed")
	c.Send("AUTH PLAIN " + b64("no NULs"))
	c.Expect("-ERR [AUTH] authentication failed")
	c.ExpectClosed()
}
