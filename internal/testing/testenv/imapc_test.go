package testenv

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDovecotIMAPC proves DovecotOptions.IMAPC: a second Dovecot serves
// the first one's mail over POP3, and its logins are checked upstream.
func TestDovecotIMAPC(t *testing.T) {
	t.Parallel()
	up := StartDovecot(t, DovecotOptions{Users: []User{{"alice", "alice-pw"}}})
	msg := testMessage(1)
	up.Append(t, "alice", "INBOX", msg)
	proxy := StartDovecot(t, DovecotOptions{POP3: true, IMAPC: up.IMAPAddr})

	pop := func(pass string, cmds ...string) []string {
		conn, err := net.Dial("tcp", proxy.POP3Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Not an assertion: only a stuck proxy must not hang the test.
		_ = conn.SetDeadline(time.Now().Add(startTimeout))
		r := bufio.NewReader(conn)
		var got []string
		read := func() string {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (after %q)", err, got)
			}
			got = append(got, strings.TrimRight(line, "\r\n"))
			return line
		}
		read() // greeting
		for _, c := range append([]string{"USER alice", "PASS " + pass}, cmds...) {
			if _, err := conn.Write([]byte(c + "\r\n")); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(read(), "+OK") {
				return got
			}
		}
		return got
	}

	if got := pop("wrong"); !strings.HasPrefix(got[len(got)-1], "-ERR") {
		t.Errorf("wrong password: %q, want -ERR", got)
	}
	got := pop("alice-pw", "STAT", "QUIT")
	// Dovecot's STAT size is the RFC822.SIZE the upstream reported.
	want := "+OK 1 " + strconv.Itoa(len(msg))
	if len(got) != 5 || got[3] != want {
		t.Errorf("session: %q, want STAT %q", got, want)
	}
}

// TestConfigProcessLimits: Dovecot's imap and pop3 services have their own
// process_limit of 1024, which default_process_limit leaves alone; one
// process per session needs it raised to MaxSessions.
func TestConfigProcessLimits(t *testing.T) {
	conf := dovecotConfig{Dir: "/d", MaxSessions: 3000, POP3: true}.render()
	for _, svc := range []string{"imap", "pop3"} {
		i := strings.Index(conf, "\nservice "+svc+" {\n")
		if i < 0 {
			t.Errorf("no service %s section", svc)
			continue
		}
		section := conf[i : i+strings.Index(conf[i+1:], "}")+1]
		if !strings.Contains(section, "process_limit = 3000") {
			t.Errorf("service %s: %q, want process_limit = 3000", svc, section)
		}
	}
}
