package security

import (
	"bufio"
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/certs"
	"github.com/popbridge/popbridge/internal/testing/imapscript"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

const upstreamSecret = "UPSTREAM-SECRET-TEXT-<script>"

// startHostile is a scripted upstream for the phase before login (the raw
// mode of imapscript, implicit TLS with tlsCfg): script plays each
// connection; everything popbridge sends is recorded (Received).
func startHostile(t *testing.T, tlsCfg *tls.Config, script func(w io.Writer, r *bufio.Reader)) *imapscript.Raw {
	return imapscript.NewRaw(t, tlsCfg, func(c *imapscript.RawConn) { script(c, c.R) })
}

// readCmd reads one command line, returning its tag and the rest.
func readCmd(r *bufio.Reader) (tag, rest string, ok bool) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", "", false
	}
	tag, rest, _ = strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	return tag, rest, true
}

// answerAll answers every command OK until the client goes away.
func answerAll(w io.Writer, r *bufio.Reader) {
	for {
		tag, _, ok := readCmd(r)
		if !ok {
			return
		}
		io.WriteString(w, tag+" OK done\r\n")
	}
}

// loginFails logs in through b and expects [SYS/TEMP]: the upstream was
// refused, and the client is told nothing more.
func loginFails(t *testing.T, b *bridgeproc.Bridge, pass string) {
	t.Helper()
	c := dialPOP3(t, b.POP3)
	c.Send("USER alice")
	c.Expect("+OK*")
	if got := c.Cmd("PASS " + pass); got != errTemp {
		t.Fatalf("login through a hostile upstream = %q, want %q", got, errTemp)
	}
	if got := c.Cmd("STAT"); got != "-ERR command not valid in this state" {
		t.Fatalf("STAT after the refused upstream = %q", got)
	}
}

func noCredentials(t *testing.T, h *imapscript.Raw, pass string) {
	t.Helper()
	time.Sleep(100 * time.Millisecond)
	got := h.Received()
	for _, s := range []string{pass, b64(pass), b64("\x00alice\x00" + pass), "LOGIN", "AUTHENTICATE"} {
		if strings.Contains(strings.ToUpper(got), strings.ToUpper(s)) {
			t.Fatalf("upstream received %q: %q", s, got)
		}
	}
}

// imap:// is STARTTLS, required: popbridge never logs in in clear when the
// server does not offer STARTTLS, refuses it, or injects a response
// before the handshake; a PREAUTH greeting is refused on every scheme.
func TestUpstreamFailsClosed(t *testing.T) {
	const pass = "Sekrit-Pw-77"
	cases := map[string]struct {
		scheme string
		script func(w io.Writer, r *bufio.Reader)
	}{
		"no STARTTLS in greeting": {"imap", func(w io.Writer, r *bufio.Reader) {
			io.WriteString(w, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN LOGIN] "+upstreamSecret+"\r\n")
			answerAll(w, r)
		}},
		"no STARTTLS in CAPABILITY": {"imap", func(w io.Writer, r *bufio.Reader) {
			io.WriteString(w, "* OK hi\r\n")
			for {
				tag, rest, ok := readCmd(r)
				if !ok {
					return
				}
				if strings.EqualFold(rest, "CAPABILITY") {
					io.WriteString(w, "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
				}
				if strings.EqualFold(rest, "STARTTLS") {
					io.WriteString(w, tag+" BAD unknown command\r\n")
					continue
				}
				io.WriteString(w, tag+" OK done\r\n")
			}
		}},
		"STARTTLS refused": {"imap", func(w io.Writer, r *bufio.Reader) {
			io.WriteString(w, "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n")
			for {
				tag, _, ok := readCmd(r)
				if !ok {
					return
				}
				io.WriteString(w, tag+" NO [UNAVAILABLE] "+upstreamSecret+"\r\n")
			}
		}},
		"STARTTLS response injection": {"imap", func(w io.Writer, r *bufio.Reader) {
			io.WriteString(w, "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n")
			tag, _, _ := readCmd(r)
			io.WriteString(w, tag+" OK begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n")
			answerAll(w, r)
		}},
		"PREAUTH": {"imap+insecure", func(w io.Writer, r *bufio.Reader) {
			io.WriteString(w, "* PREAUTH [CAPABILITY IMAP4rev1] logged in as root\r\n")
			answerAll(w, r)
		}},
		"BYE greeting": {"imap+insecure", func(w io.Writer, r *bufio.Reader) {
			io.WriteString(w, "* BYE "+upstreamSecret+"\r\n")
		}},
		"endless greeting": {"imap+insecure", func(w io.Writer, r *bufio.Reader) {
			io.WriteString(w, "* OK ")
			chunk := []byte(strings.Repeat("A", 64<<10))
			for i := 0; i < 4096; i++ { // 256 MiB at most
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}},
		"giant literal in greeting": {"imap+insecure", func(w io.Writer, r *bufio.Reader) {
			io.WriteString(w, "* OK [CAPABILITY IMAP4rev1] {2000000000}\r\n")
			chunk := []byte(strings.Repeat("B", 64<<10))
			for i := 0; i < 4096; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}},
	}
	for name, tt := range cases {
		t.Run(name, func(t *testing.T) {
			h := startHostile(t, nil, tt.script)
			b := startBridge(t, "--upstream", tt.scheme+"://"+h.Addr(), "--upstream-login-timeout", "5s")
			before := memKiB(t, b, "VmHWM")
			loginFails(t, b, pass)
			noCredentials(t, h, pass)
			if grew := memKiB(t, b, "VmHWM") - before; grew > 16<<10 {
				t.Errorf("peak RSS grew by %d KiB", grew)
			}
			if strings.Contains(b.Stdout(), upstreamSecret) {
				t.Error("upstream text on stdout")
			}
		})
	}
}

// imaps:// verifies the upstream certificate: an untrusted one, or a
// trusted one for another name, is refused before anything is sent;
// --upstream-ca adds a trust anchor without turning verification off.
func TestUpstreamCertificateVerified(t *testing.T) {
	const pass = "Sekrit-Pw-78"
	dir := t.TempDir()
	certFile, keyFile, _ := certs.Files(t, dir, "upstream", "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	otherFile, otherKey, _ := certs.Files(t, dir, "other", "imap.other.example")
	other, err := tls.LoadX509KeyPair(otherFile, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	greet := func(w io.Writer, r *bufio.Reader) {
		io.WriteString(w, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
		answerAll(w, r)
	}
	t.Run("untrusted", func(t *testing.T) {
		h := startHostile(t, &tls.Config{Certificates: []tls.Certificate{cert}}, greet)
		b := startBridge(t, "--upstream", "imaps://"+h.Addr())
		loginFails(t, b, pass)
		noCredentials(t, h, pass)
	})
	t.Run("wrong name, trusted CA", func(t *testing.T) {
		h := startHostile(t, &tls.Config{Certificates: []tls.Certificate{other}}, greet)
		b := startBridge(t, "--upstream", "imaps://"+h.Addr(), "--upstream-ca", otherFile)
		loginFails(t, b, pass)
		noCredentials(t, h, pass)
	})
	t.Run("Dovecot", func(t *testing.T) {
		d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: "alice", Password: pass}}})
		for _, up := range []string{"imaps://" + d.IMAPSAddr, "imap://" + d.IMAPAddr} {
			loginFails(t, startBridge(t, "--upstream", up), pass) // Dovecot's CA is not a system root
			c := dialPOP3(t, startBridge(t, "--upstream", up, "--upstream-ca", d.CAFile).POP3)
			c.Login("alice", pass)
			if got := c.Cmd("STAT"); got != "+OK 0 0" {
				t.Fatalf("%s: STAT = %q", up, got)
			}
		}
	})
}

// After login a hostile upstream sending an endless line or a giant
// literal outside a body cannot exhaust popbridge's memory, and its text
// never reaches the POP3 client; other sessions carry on.
func TestHostileUpstreamAfterLogin(t *testing.T) {
	cases := []struct {
		name string
		rule imapscript.Rule
		want string // the POP3 answer to PASS, or to RETR 1 when at a fetch
		retr bool
	}{
		{"endless line at SELECT", imapscript.Rule{At: imapscript.Select, Step: imapscript.EndlessLine, User: "victim"}, errTemp, false},
		{"giant literal at SELECT", imapscript.Rule{At: imapscript.Select, Step: imapscript.HugeLiteral, User: "victim"}, errTemp, false},
		{"endless line at listing", imapscript.Rule{At: imapscript.List, Step: imapscript.EndlessLine, User: "victim"}, errTemp, false},
		{"giant literal at listing", imapscript.Rule{At: imapscript.List, Step: imapscript.HugeLiteral, User: "victim"}, errTemp, false},
		{"endless line at RETR", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.EndlessLine, User: "victim"}, "", true},
		{"NO with text at LOGIN", imapscript.Rule{At: imapscript.Login, Step: imapscript.No, User: "victim",
			Text: "[AUTHENTICATIONFAILED] " + upstreamSecret}, errAuth, false},
		{"NO with text at SELECT", imapscript.Rule{At: imapscript.Select, Step: imapscript.No, User: "victim",
			Text: "[UNAVAILABLE] " + upstreamSecret}, errTemp, false},
		{"BYE at LOGIN", imapscript.Rule{At: imapscript.Login, Step: imapscript.Bye, User: "victim"}, errTemp, false},
		{"NO with text at RETR", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.No, User: "victim",
			Text: upstreamSecret}, "", true},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			up, err := imapscript.New(imapscript.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { up.Close() })
			for _, u := range []string{"victim", "bystander"} {
				up.AddUser(u, "pw")
				up.Append(u, "INBOX", []byte("Subject: hi\r\n\r\nhello\r\n"))
			}
			up.AddRule(tt.rule)
			b := startBridge(t, "--upstream", up.URL(), "--upstream-command-timeout", "3s", "--upstream-login-timeout", "5s",
				"--auth-fail-delay", "1ms", "--auth-penalty-max", "1ms")
			by := dialPOP3(t, b.POP3)
			by.Login("bystander", "pw")
			before := memKiB(t, b, "VmHWM")

			c := dialPOP3(t, b.POP3)
			c.Send("USER victim")
			c.Expect("+OK*")
			var answer string
			if tt.retr {
				c.Send("PASS pw")
				c.Expect("+OK*")
				c.Conn().SetReadDeadline(time.Now().Add(15 * time.Second))
				c.Send("RETR 1")
				answer = c.ReadLine()
				t.Logf("RETR answered %q", answer)
				switch {
				case answer == errTemp || answer == "-ERR no such message":
				case strings.HasPrefix(answer, "+OK"):
					// The body broke after +OK: the connection must close
					// without the terminating dot, and nothing of the
					// upstream's protocol may be in what came before.
					rest, _ := io.ReadAll(c.Reader())
					answer += "\n" + string(rest)
					if strings.HasSuffix(answer, "\r\n.\r\n") {
						t.Fatalf("a broken body was terminated as if whole")
					}
				default:
					t.Fatalf("RETR through a hostile upstream = %q", answer)
				}
			} else {
				answer = c.Cmd("PASS pw")
				if answer != tt.want {
					t.Fatalf("PASS through a hostile upstream = %q, want %q", answer, tt.want)
				}
			}
			if strings.Contains(answer, upstreamSecret) || strings.Contains(answer, "AAAA") {
				t.Fatalf("upstream text reflected to the client: %q", answer[:min(len(answer), 200)])
			}
			if grew := memKiB(t, b, "VmHWM") - before; grew > 32<<10 {
				t.Errorf("peak RSS grew by %d KiB", grew)
			}
			stillWorksAs(t, by)
		})
	}
}

// stillWorksAs is stillWorks for a imapscript user with one message.
func stillWorksAs(t *testing.T, c *pop3client.Client) {
	t.Helper()
	if got := c.Cmd("STAT"); !strings.HasPrefix(got, "+OK 1 ") {
		t.Fatalf("bystander: STAT = %q", got)
	}
	c.Send("RETR 1")
	c.Expect("+OK*")
	if got := string(c.Multiline()); got != "Subject: hi\r\n\r\nhello\r\n" {
		t.Fatalf("bystander: RETR 1 = %q", got)
	}
	c.Send("QUIT")
	c.Expect("+OK*")
}
