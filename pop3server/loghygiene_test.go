package pop3server

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// printObserver prints every event, errors with their whole chain, the
// way a careless log or metrics backend would.
type printObserver struct{ w *syncBuffer }

func (o printObserver) ConnectionOpened(c ConnInfo) { fmt.Fprintf(o.w, "open %+v\n", c) }
func (o printObserver) LoginAttempted(c ConnInfo, user string, err error) {
	fmt.Fprintf(o.w, "login %+v %q %v %+v\n", c, user, err, err)
}
func (o printObserver) CommandDone(verb string, ok bool) { fmt.Fprintf(o.w, "cmd %s %v\n", verb, ok) }
func (o printObserver) SessionClosed(c ConnInfo, s SessionStats) {
	fmt.Fprintf(o.w, "end %+v %+v\n", c, s)
}

// secretForms are the ways a password can leak: raw, base64, hex, and
// inside a SASL PLAIN blob.
func secretForms(user, pass string) []string {
	return []string{pass,
		base64.StdEncoding.EncodeToString([]byte(pass)),
		hex.EncodeToString([]byte(pass)), strings.ToUpper(hex.EncodeToString([]byte(pass))),
		base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass)),
		fmt.Sprintf("%q", pass)[1 : len(fmt.Sprintf("%q", pass))-1],
	}
}

// The password never reaches the server's log or Observer, whatever the
// mechanism, whether the login succeeds, fails, or the backend is down.
func TestPasswordNotLogged(t *testing.T) {
	const canary = "Canary-Pw-93f1c"
	var out syncBuffer
	b := newFake()
	b.password = canary
	log := zerolog.New(&out).Level(zerolog.TraceLevel)
	_, addr := startServer(t, b, Options{Logger: log, Observer: printObserver{&out}, Limits: Limits{MaxLoginFailures: 100, MaxBadCommandsPreLogin: 100}})

	session := func(good bool, want string) {
		pass := canary
		if !good {
			pass = canary + "x"
		}
		c := dial(t, addr)
		c.Send("USER alice")
		c.Expect("+OK")
		c.Send("PASS " + pass)
		c.Expect(want)
		if good {
			c.Send("QUIT")
			c.Expect("+OK*")
			c = dial(t, addr)
		}
		c.Send("AUTH PLAIN " + b64("\x00alice\x00"+pass))
		c.Expect(want)
		if good {
			c.Send("QUIT")
			c.Expect("+OK*")
			c = dial(t, addr)
		}
		c.Send("AUTH LOGIN")
		c.Expect("+ *")
		c.Send(b64("alice"))
		c.Expect("+ *")
		c.Send(b64(pass))
		c.Expect(want)
		if good {
			c.Send("QUIT")
			c.Expect("+OK*")
			c = dial(t, addr)
		}
		// Refused before the backend, and malformed exchanges.
		c.Send("AUTH PLAIN " + b64("\x00alice\x00"+pass+"\r\n"))
		c.Expect("-ERR [AUTH] authentication failed")
		c.Send("AUTH PLAIN " + b64("bob\x00alice\x00"+pass))
		c.Expect("-ERR [AUTH] authentication failed")
		c.Send("AUTH PLAIN " + b64("\x00alice\x00" + pass)[1:])
		c.Expect("-ERR invalid base64")
		c.Send("QUIT")
		c.Expect("+OK*")
		c.ExpectClosed()
	}
	session(true, "+OK Logged in.")
	session(false, "-ERR [AUTH] authentication failed")
	b.mu.Lock()
	b.loginErr = ErrTemporary.Wrap(errors.New("dial tcp: connection refused"))
	b.mu.Unlock()
	session(false, "-ERR [SYS/TEMP] temporary failure, try again later")

	waitFor(t, func() bool { return strings.Count(out.String(), "end {") >= 6 })
	logged := out.String()
	if !strings.Contains(logged, "alice") {
		t.Fatalf("capture is empty or lost the events: %q", logged)
	}
	for _, form := range secretForms("alice", canary) {
		if strings.Contains(logged, form) {
			t.Errorf("log output contains the password as %q", form)
		}
	}
}

// A refused username with control sequences reaches the Observer escaped
// and bounded, so no log format can be broken by it.
func TestRefusedUsernameEscaped(t *testing.T) {
	rec := &recorder{}
	_, addr := startServer(t, newFake(), Options{Observer: rec})
	c := dial(t, addr)
	evil := "root\x1b[2J\x1b[31m\"}\u0085" + strings.Repeat("A", 300)
	c.Send("AUTH LOGIN " + b64(evil))
	c.Expect("+ *")
	c.Send(b64("x"))
	c.Expect("-ERR [AUTH] authentication failed")
	c.Send("USER " + `al"ice\`)
	c.Expect("+OK")
	c.Send("PASS x")
	c.Expect("-ERR [AUTH] authentication failed")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.logins) != 2 {
		t.Fatalf("%d login events, want one per failure", len(rec.logins))
	}
	got := rec.logins[0].user
	if strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r >= 0x7f }) || len(got) > 80 {
		t.Fatalf("refused username reported as %q", got)
	}
	if got != "root"+refusedMark {
		t.Fatalf("refused username reported as %q, want what precedes the escape and %q", got, refusedMark)
	}
	// A valid username is reported as typed (the log encoder escapes it).
	if u := rec.logins[1].user; u != `al"ice\` {
		t.Fatalf("valid username reported as %q", u)
	}
	if !rec.logins[0].conn.RemoteAddr.IsValid() {
		t.Fatal("login event without the client address")
	}
}
