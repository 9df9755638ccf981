package upstream

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/certs"
	"github.com/popbridge/popbridge/internal/testing/imapscript"
	"github.com/popbridge/popbridge/pop3server"
)

func TestIMAPS(t *testing.T) {
	checkGoroutines(t)
	serverTLS, clientTLS := certs.Configs(t)
	s := startMemOpts(t, memOptions{caps: capsFull, tls: serverTLS, implicitTLS: true})
	msg := testMessage("tls", 2)
	s.append(t, "INBOX", msg)
	u := &URL{Scheme: SchemeIMAPS, Host: s.addr}

	m := login(t, newBackend(t, u, func(o *Options) { o.TLSConfig = clientTLS }))
	b, err := m.Retrieve(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, b); string(got) != string(msg) {
		t.Errorf("got %q", got)
	}

	// Verification is on: the system roots do not know the test CA, and
	// the name must match.
	_, err = newBackend(t, u).Login(context.Background(), testConn, testUser, testPass)
	wantCode(t, err, pop3server.ErrTemporary)
	wrongName := clientTLS.Clone()
	wrongName.ServerName = "mail.example.com"
	_, err = newBackend(t, u, func(o *Options) { o.TLSConfig = wrongName }).
		Login(context.Background(), testConn, testUser, testPass)
	wantCode(t, err, pop3server.ErrTemporary)
}

func TestSTARTTLS(t *testing.T) {
	checkGoroutines(t)
	serverTLS, clientTLS := certs.Configs(t)
	// LOGIN is refused without TLS (LOGINDISABLED).
	s := startMemOpts(t, memOptions{caps: capsFull, tls: serverTLS})
	s.append(t, "INBOX", testMessage("starttls", 1))

	m := login(t, newBackend(t, &URL{Scheme: SchemeIMAP, Host: s.addr}, func(o *Options) { o.TLSConfig = clientTLS }))
	if len(m.Messages()) != 1 {
		t.Errorf("listed %d messages", len(m.Messages()))
	}

	// Without TLS the only way in would be in clear: refused, and it is
	// the admin's problem, not the password's.
	_, err := newBackend(t, s.url()).Login(context.Background(), testConn, testUser, testPass)
	var pe *pop3server.Error
	if !errorsAs(err, &pe) || pe.Code != pop3server.CodeSysPerm {
		t.Errorf("insecure login to a LOGINDISABLED server: %v, want SYS/PERM", err)
	}
}

func TestSTARTTLSFailClosed(t *testing.T) {
	_, clientTLS := certs.Configs(t)
	tests := []struct {
		name     string
		greeting string
		starttls func(c *imapscript.RawConn, tag string)
	}{
		{"not offered", "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi", nil},
		{"refused", "* OK hi", func(c *imapscript.RawConn, tag string) { c.Send(tag + " BAD no STARTTLS here") }},
		{"injection", "* OK hi", func(c *imapscript.RawConn, tag string) {
			c.Write([]byte(tag + " OK begin TLS\r\n* OK [CAPABILITY IMAP4rev1] injected\r\n"))
		}},
		{"no TLS after OK", "* OK hi", func(c *imapscript.RawConn, tag string) {
			c.Send(tag+" OK begin TLS", "* OK [CAPABILITY IMAP4rev1] plain")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			s := startFake(t, tt.greeting, func(c *imapscript.RawConn, tag, cmd string) bool {
				if strings.EqualFold(cmd, "STARTTLS") && tt.starttls != nil {
					tt.starttls(c, tag)
					return true
				}
				c.Send(tag + " BAD unexpected")
				return true
			})
			b := newBackend(t, &URL{Scheme: SchemeIMAP, Host: s.Addr()}, func(o *Options) {
				o.TLSConfig = clientTLS
				o.LoginTimeout = 2 * time.Second
			})
			_, err := b.Login(context.Background(), testConn, testUser, testPass)
			wantCode(t, err, pop3server.ErrTemporary)
			// Nothing but STARTTLS in clear (a TLS ClientHello may follow,
			// which the fake reads as garbage), and never the password.
			for _, c := range s.Commands() {
				if strings.Contains(c, testPass) || strings.HasPrefix(strings.ToUpper(c), "LOGIN") ||
					strings.HasPrefix(strings.ToUpper(c), "AUTHENTICATE") {
					t.Errorf("sent %q", c)
				}
			}
		})
	}
}

func TestGreetings(t *testing.T) {
	for _, greeting := range []string{"* PREAUTH [CAPABILITY IMAP4rev1] welcome", "* BYE too busy", "garbage", "* OK [CAPABILITY POP3] hi"} {
		t.Run(greeting, func(t *testing.T) {
			checkGoroutines(t)
			s := startFake(t, greeting, func(c *imapscript.RawConn, tag, cmd string) bool {
				c.Send(tag + " OK whatever")
				return true
			})
			_, err := newBackend(t, rawURL(s)).Login(context.Background(), testConn, testUser, testPass)
			wantCode(t, err, pop3server.ErrTemporary)
			if got := s.Commands(); len(got) > 0 {
				t.Errorf("sent %q", got)
			}
		})
	}
}

func TestSendID(t *testing.T) {
	for _, tt := range []struct {
		name   string
		caps   string
		sendID bool
		want   string
	}{
		{"on", "IMAP4rev1 ID", true, `ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "40000" "x-connected-ip" "127.0.0.1" "x-connected-port" "1110")`},
		{"off", "IMAP4rev1 ID", false, ""},
		{"no ID capability", "IMAP4rev1", true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			s := startFake(t, "* OK [CAPABILITY "+tt.caps+"] hi", func(c *imapscript.RawConn, tag, cmd string) bool {
				if strings.HasPrefix(cmd, "ID ") {
					c.Send(`* ID ("name" "fake")`, tag+" OK id")
					return true
				}
				handled, keep := basicIMAP(c, tag, cmd, 10)
				if !handled {
					c.Send(tag + " BAD unexpected")
				}
				return keep
			})
			login(t, newBackend(t, rawURL(s), func(o *Options) { o.SendID = tt.sendID }))
			cmds := s.Commands()
			i := slices.IndexFunc(cmds, func(c string) bool { return strings.HasPrefix(c, "ID ") })
			switch {
			case tt.want == "" && i >= 0:
				t.Errorf("sent %q", cmds[i])
			case tt.want != "" && i < 0:
				t.Errorf("no ID in %q", cmds)
			case tt.want != "":
				if cmds[i] != tt.want {
					t.Errorf("sent %q, want %q", cmds[i], tt.want)
				}
				if j := slices.IndexFunc(cmds, func(c string) bool { return strings.HasPrefix(c, "LOGIN") }); j < i {
					t.Errorf("ID after LOGIN: %q", cmds)
				}
			}
		})
	}
}

func TestAuthenticatePlain(t *testing.T) {
	checkGoroutines(t)
	want := "AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+testUser+"\x00"+testPass))
	s := startFake(t, "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN SASL-IR] hi", func(c *imapscript.RawConn, tag, cmd string) bool {
		switch {
		case strings.HasPrefix(cmd, "AUTHENTICATE "):
			if cmd == want {
				c.Send(tag + " OK [CAPABILITY IMAP4rev1] welcome")
			} else {
				c.Send(tag + " NO [AUTHENTICATIONFAILED] no")
			}
			return true
		case strings.HasPrefix(cmd, "LOGIN "):
			t.Error("LOGIN sent despite LOGINDISABLED")
			c.Send(tag + " NO disabled")
			return true
		}
		handled, keep := basicIMAP(c, tag, cmd, 10)
		if !handled {
			c.Send(tag + " BAD unexpected")
		}
		return keep
	})
	login(t, newBackend(t, rawURL(s)))
}

func TestLoginErrors(t *testing.T) {
	tests := []struct {
		reply []string
		want  pop3server.Code
	}{
		{[]string{"NO [AUTHENTICATIONFAILED] Authentication failed."}, pop3server.CodeAuth},
		{[]string{"NO Login failed"}, pop3server.CodeAuth},
		{[]string{"NO [EXPIRED] password expired"}, pop3server.CodeAuth},
		{[]string{"NO [UNAVAILABLE] Temporary authentication failure."}, pop3server.CodeSysTemp},
		{[]string{"NO [SERVERBUG] oops"}, pop3server.CodeSysTemp},
		{[]string{"NO [CONTACTADMIN] account disabled"}, pop3server.CodeSysPerm},
		{[]string{"NO [INUSE] locked"}, pop3server.CodeInUse},
		{[]string{"BAD what"}, pop3server.CodeSysTemp},
		{nil, pop3server.CodeSysTemp}, // the server hangs up
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.reply, ";"), func(t *testing.T) {
			checkGoroutines(t)
			s := startFake(t, "* OK [CAPABILITY IMAP4rev1] hi", func(c *imapscript.RawConn, tag, cmd string) bool {
				if strings.HasPrefix(cmd, "LOGIN ") {
					if tt.reply == nil {
						c.Send("* BYE going away")
						return false
					}
					c.Send(tag + " " + tt.reply[0])
					return true
				}
				c.Send(tag + " BAD unexpected")
				return true
			})
			_, err := newBackend(t, rawURL(s)).Login(context.Background(), testConn, testUser, testPass)
			var pe *pop3server.Error
			if !errorsAs(err, &pe) || pe.Code != tt.want {
				t.Errorf("got %v, want code %s", err, tt.want)
			}
			// The client sees fixed text, never the upstream's.
			fixed := []string{pop3server.ErrAuthFailed.Text, pop3server.ErrTemporary.Text, pop3server.ErrInUse.Text, errConfig.Text}
			if pe != nil && !slices.Contains(fixed, pe.Text) {
				t.Errorf("client text %q", pe.Text)
			}
		})
	}
}

func TestSelectMissingMailbox(t *testing.T) {
	checkGoroutines(t)
	s := startMem(t, capsFull)
	_, err := newBackend(t, s.url(), func(o *Options) { o.Mailbox = "Nope" }).
		Login(context.Background(), testConn, testUser, testPass)
	var pe *pop3server.Error
	if !errorsAs(err, &pe) || pe.Code == pop3server.CodeAuth {
		t.Errorf("got %v, want SYS/*", err)
	}
}
