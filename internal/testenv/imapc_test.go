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
		conn, err := net.DialTimeout("tcp", proxy.POP3Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
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
