package security

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/certs"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

const (
	errAuth      = "-ERR [AUTH] authentication failed"
	errPlaintext = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections"
	errTemp      = "-ERR [SYS/TEMP] temporary failure, try again later"
)

// --plaintext-auth local, reached through a trusted load balancer (PROXY
// protocol from 127.0.0.1) by a client on a public address: CAPA hides
// USER and SASL, the bare AUTH lists nothing, USER/PASS/AUTH answer -ERR;
// after STLS everything is offered. A private address gets plaintext.
func TestPlaintextAuthByClientAddress(t *testing.T) {
	b, cert := tlsBridge(t, "--proxy-protocol", "127.0.0.1/32", "--max-bad-commands-prelogin", "10")
	pub := dialVia(t, b.POP3, "203.0.113.9")
	if caps := pub.Capa(); pop3client.HasCap(caps, "USER") || pop3client.HasCap(caps, "SASL") || !pop3client.HasCap(caps, "STLS") {
		t.Fatalf("CAPA to a public address without TLS = %q", caps)
	}
	pub.Send("AUTH")
	pub.Expect("+OK*", ".")
	for _, cmd := range []string{"USER demo", "PASS demo", "AUTH PLAIN " + b64("\x00demo\x00demo"), "AUTH LOGIN"} {
		if got := pub.Cmd(cmd); got != errPlaintext {
			t.Fatalf("%s from a public address = %q", strings.Fields(cmd)[0], got)
		}
	}
	pub.StartTLS(certs.Trusting(cert))
	if caps := pub.Capa(); !pop3client.HasCap(caps, "USER") || !pop3client.HasCap(caps, "SASL PLAIN LOGIN") || pop3client.HasCap(caps, "STLS") {
		t.Fatalf("CAPA after STLS = %q", caps)
	}
	pub.Send("AUTH PLAIN " + b64("\x00demo\x00demo"))
	pub.Expect("+OK*")

	priv := dialVia(t, b.POP3, "192.168.10.20")
	if caps := priv.Capa(); !pop3client.HasCap(caps, "USER") || !pop3client.HasCap(caps, "SASL") {
		t.Fatalf("CAPA to a private address = %q", caps)
	}
	priv.Login("demo", "demo")

	// The failed login is logged with the client's address, not the
	// load balancer's.
	pub2 := dialVia(t, b.POP3, "203.0.113.77")
	pub2.StartTLS(certs.Trusting(cert))
	pub2.Send("USER demo")
	pub2.Expect("+OK*")
	if got := pub2.Cmd("PASS wrong"); got != errAuth {
		t.Fatalf("wrong password = %q", got)
	}
	b.WaitLog(map[string]string{"event": "login_failed", "client_ip": "203.0.113.77"}, 5*time.Second)
}

func TestPlaintextAuthModes(t *testing.T) {
	t.Run("never", func(t *testing.T) {
		b, cert := tlsBridge(t, "--plaintext-auth", "never")
		c := dialPOP3(t, b.POP3) // loopback, yet no plaintext
		if caps := c.Capa(); pop3client.HasCap(caps, "USER") || pop3client.HasCap(caps, "SASL") {
			t.Fatalf("CAPA = %q", caps)
		}
		if got := c.Cmd("USER demo"); got != errPlaintext {
			t.Fatalf("USER = %q", got)
		}
		c.StartTLS(certs.Trusting(cert))
		c.Login("demo", "demo")
		dialPOP3S(t, b.POP3S, cert).Login("demo", "demo")
	})
	t.Run("always", func(t *testing.T) {
		b, _ := tlsBridge(t, "--plaintext-auth", "always", "--proxy-protocol", "127.0.0.1/32")
		c := dialVia(t, b.POP3, "198.51.100.1")
		if caps := c.Capa(); !pop3client.HasCap(caps, "USER") {
			t.Fatalf("CAPA = %q", caps)
		}
		c.Login("demo", "demo")
	})
}

// AUTH PLAIN and LOGIN on the wire of the real binary.
func TestSASLBlackBox(t *testing.T) {
	b := startBridge(t, "--demo", "--auth-fail-delay", "10ms", "--auth-penalty-max", "10ms",
		"--max-bad-commands-prelogin", "50", "--max-login-failures", "50")
	plain := b64("\x00demo\x00demo")
	cases := []struct {
		name  string
		lines []string // sent in turn
		want  []string // the answer to each
	}{
		{"bare AUTH", []string{"AUTH"}, []string{"+OK*"}},
		{"plain initial response", []string{"AUTH PLAIN " + plain}, []string{"+OK*"}},
		{"plain continuation", []string{"AUTH PLAIN", plain}, []string{"+ ", "+OK*"}},
		{"plain empty", []string{"AUTH PLAIN ="}, []string{errAuth}},
		{"plain empty continuation", []string{"AUTH PLAIN", "="}, []string{"+ ", errAuth}},
		{"plain cancel", []string{"AUTH PLAIN", "*"}, []string{"+ ", "-ERR authentication cancelled"}},
		{"plain no padding", []string{"AUTH PLAIN " + strings.TrimRight(plain, "=")}, []string{"-ERR invalid base64"}},
		{"plain space", []string{"AUTH PLAIN", plain[:4] + " " + plain[4:]}, []string{"+ ", "-ERR invalid base64"}},
		{"plain invalid char", []string{"AUTH PLAIN " + plain[:4] + "!" + plain[5:]}, []string{"-ERR invalid base64"}},
		{"plain authzid differs", []string{"AUTH PLAIN " + b64("admin\x00demo\x00demo")}, []string{errAuth}},
		{"plain authzid same", []string{"AUTH PLAIN " + b64("demo\x00demo\x00demo")}, []string{"+OK*"}},
		{"login", []string{"AUTH LOGIN", b64("demo"), b64("demo")}, []string{"+ VXNlcm5hbWU6", "+ UGFzc3dvcmQ6", "+OK*"}},
		{"login initial response", []string{"AUTH LOGIN " + b64("demo"), b64("demo")}, []string{"+ UGFzc3dvcmQ6", "+OK*"}},
		{"login cancel", []string{"AUTH LOGIN", "*"}, []string{"+ VXNlcm5hbWU6", "-ERR authentication cancelled"}},
		{"login wrong", []string{"AUTH LOGIN " + b64("demo"), b64("nope")}, []string{"+ UGFzc3dvcmQ6", errAuth}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c := dialPOP3(t, b.POP3)
			for i, line := range tt.lines {
				c.Send(line)
				c.Expect(tt.want[i])
			}
			if tt.name == "bare AUTH" {
				c.Expect("PLAIN", "LOGIN", ".")
			}
		})
	}
}

// upstreamProbe is a TCP listener that counts connections: the upstream
// for tests proving that popbridge never contacted it.
func upstreamProbe(t *testing.T) (addr string, conns *atomic.Int32) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns = new(atomic.Int32)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	return l.Addr().String(), conns
}

// Credentials with NUL, CR, LF or other controls, or too long, are refused
// with the usual [AUTH] answer before any upstream contact.
func TestForbiddenCredentialsNeverReachUpstream(t *testing.T) {
	up, conns := upstreamProbe(t)
	// --upstream-send-id: without it popbridge connects once at startup to
	// ask the upstream whether it is Dovecot (no credentials), which the
	// probe would count.
	b := startBridge(t, "--upstream", "imap+insecure://"+up, "--auth-fail-delay", "1ms", "--auth-penalty-max", "1ms",
		"--max-login-failures", "100", "--upstream-send-id")
	c := dialPOP3(t, b.POP3)
	bad := [][2]string{
		{"al\x00ice", "pw"}, {"alice", "p\x00w"}, {"alice", "pw\r\nA2 DELETE INBOX"}, {"alice\nA2 LOGOUT", "pw"},
		{"alice\x1b[1m", "pw"}, {"alice", "p\x7fw"}, {"alice\u009b", "pw"}, {strings.Repeat("u", 256), "pw"},
		{"alice", strings.Repeat("p", 513)}, {"alice\xff", "pw"},
	}
	for _, cr := range bad {
		c.Send("AUTH LOGIN " + b64(cr[0]))
		c.Expect("+ UGFzc3dvcmQ6")
		c.Send(b64(cr[1]))
		c.Expect(errAuth)
		if !strings.ContainsAny(cr[0]+cr[1], "\x00\r\n") && len(cr[1]) < 400 {
			c.Send("AUTH PLAIN " + b64("\x00"+cr[0]+"\x00"+cr[1]))
			c.Expect(errAuth)
		}
	}
	c.Send("USER alice\x01")
	c.Expect("-ERR invalid user name")
	c.Send("PASS pw")
	c.Expect("-ERR USER first")
	if n := conns.Load(); n != 0 {
		t.Fatalf("upstream was contacted %d times", n)
	}
}

// Dovecot users whose names and passwords are full of IMAP syntax log in
// through popbridge and see their own mailbox: nothing they type changes
// the IMAP command popbridge sends.
func TestSpecialCredentialsReachDovecot(t *testing.T) {
	users := []testenv.User{
		{Name: `{5}`, Password: `pa"ss word\`},
		{Name: `br{ace}s(par)[x]`, Password: `(x) {3+} [y] *% \"`},
		{Name: "j\u00fcrgen\u00e9\u4e16", Password: "p\u00e4\u00df w\u00f6rd \u2603"},
		{Name: `lit{0}*`, Password: "{0}\\\" \" \\"},
		{Name: `{5+}`, Password: ` leading and trailing `},
		{Name: "victim", Password: "victim-pw"},
	}
	// Dovecot's passwd-file escapes '"' and '\' in the name it looks up,
	// so users with those cannot log in there; that they reach Dovecot
	// intact is checked in its log instead.
	lookupOnly := []string{`quo"te`, `back\slash`, `both\"{5}`}
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: users,
		// Dovecot's default refuses most of these characters in names.
		ExtraConfig: "auth_username_chars =\nauth_debug = yes\n"})
	for _, u := range users {
		d.Append(t, u.Name, "INBOX", []byte("Subject: for "+u.Name+"\r\n\r\nhello "+u.Name+"\r\n"))
	}
	b := startBridge(t, "--upstream", "imap+insecure://"+d.IMAPAddr, "--auth-fail-delay", "1ms", "--auth-penalty-max", "1ms")
	for _, u := range users {
		for _, mech := range []string{"USER", "PLAIN", "LOGIN"} {
			c := dialPOP3(t, b.POP3)
			switch mech {
			case "USER":
				c.Login(u.Name, u.Password)
			case "PLAIN":
				c.Send("AUTH PLAIN " + b64("\x00"+u.Name+"\x00"+u.Password))
				c.Expect("+OK*")
			case "LOGIN":
				c.Send("AUTH LOGIN " + b64(u.Name))
				c.Expect("+ UGFzc3dvcmQ6")
				c.Send(b64(u.Password))
				c.Expect("+OK*")
			}
			c.Send("RETR 1")
			c.Expect("+OK*")
			if got, want := string(c.Multiline()), "Subject: for "+u.Name+"\r\n\r\nhello "+u.Name+"\r\n"; got != want {
				t.Fatalf("%s via %s: RETR 1 = %q, want %q", u.Name, mech, got, want)
			}
			c.Send("QUIT")
			c.Expect("+OK*")
		}
	}
	for _, name := range lookupOnly {
		c := dialPOP3(t, b.POP3)
		if got := c.Cmd("AUTH PLAIN " + b64("\x00"+name+"\x00x")); got != errAuth {
			t.Fatalf("%s: %q", name, got)
		}
		if want := "passwd-file(" + name + ",127.0.0.1,"; !strings.Contains(d.Log(), want) {
			t.Fatalf("Dovecot's log lacks %q: the name did not arrive intact", want)
		}
	}
	// Attempts to smuggle a second argument or a literal into LOGIN fail
	// as plain wrong passwords and never open the victim's mailbox.
	for _, cr := range [][2]string{{`victim" "victim-pw`, "x"}, {"victim", `victim-pw" "x`}, {"victim {9}", "victim-pw"},
		{`victim"`, "victim-pw"}, {"victim", "{9+}victim-pw"}} {
		c := dialPOP3(t, b.POP3)
		c.Send("AUTH PLAIN " + b64("\x00"+cr[0]+"\x00"+cr[1]))
		if got := c.ReadLine(); got != errAuth {
			t.Fatalf("injection %q/%q answered %q", cr[0], cr[1], got)
		}
	}
}

// Unknown user and wrong password get the same answer, and a 4th attempt
// is never possible on one connection.
func TestUnknownUserLooksLikeWrongPassword(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: "alice", Password: "right"}}})
	b := startBridge(t, "--upstream", "imap+insecure://"+d.IMAPAddr, "--auth-fail-delay", "1ms", "--auth-penalty-max", "1ms")
	answers := map[string]bool{}
	for _, cr := range [][2]string{{"alice", "wrong"}, {"nobody-here", "wrong"}, {"nobody-here", "right"}} {
		c := dialPOP3(t, b.POP3)
		c.Send("USER " + cr[0])
		c.Expect("+OK*")
		answers["USER "+c.Cmd("PASS "+cr[1])] = true
		answers["PLAIN "+c.Cmd("AUTH PLAIN "+b64("\x00"+cr[0]+"\x00"+cr[1]))] = true
		c.Send("AUTH LOGIN " + b64(cr[0]))
		c.Expect("+ UGFzc3dvcmQ6")
		answers["LOGIN "+c.Cmd(b64(cr[1]))] = true
		c.ExpectClosed() // 3 failures
	}
	if len(answers) != 3 || !answers["USER "+errAuth] || !answers["PLAIN "+errAuth] || !answers["LOGIN "+errAuth] {
		t.Fatalf("answers differ: %v", answers)
	}
	if n := b.CountLog(map[string]string{"event": "login_failed", "client_ip": "127.0.0.1"}); n != 9 {
		t.Fatalf("%d login_failed lines for 9 failures", n)
	}
}
