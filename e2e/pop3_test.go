package e2e

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// pop3Timeout bounds every exchange of the raw client, so a stuck bridge
// fails the test instead of hanging it.
const pop3Timeout = 30 * time.Second

var pop3Options = pop3client.Options{DialTimeout: pop3Timeout, OpTimeout: pop3Timeout, StrictBody: true}

// dialPOP3 connects to addr and reads the greeting.
func dialPOP3(t testing.TB, addr string) *pop3client.Client {
	t.Helper()
	p := pop3client.Dial(t, addr, pop3Options)
	p.MustLine("+OK")
	return p
}

// localPort is the client's local port, which the bridge logs as
// client_port.
func localPort(p *pop3client.Client) int { return p.Conn().LocalAddr().(*net.TCPAddr).Port }

// multi sends cmd, requires +OK and returns the status line and the
// multi-line body un-stuffed: the octets between the status line and the
// terminating ".\r\n", each line with its CRLF, a leading dot removed
// where the server doubled it. A line with a single leading dot other than
// the terminator fails the test: the server forgot to stuff it.
func multi(p *pop3client.Client, cmd string) (string, []byte) {
	p.TB().Helper()
	status := p.OK(cmd)
	return status, p.Multiline()
}

// listing is a parsed LIST or UIDL answer: message number -> value.
type listing map[int]string

// list sends cmd (LIST or UIDL) and parses its multi-line answer.
func list(p *pop3client.Client, cmd string) listing {
	p.TB().Helper()
	_, body := multi(p, cmd)
	out := make(listing)
	for _, l := range strings.Split(strings.TrimSuffix(string(body), "\r\n"), "\r\n") {
		if l == "" {
			continue
		}
		num, val, ok := strings.Cut(l, " ")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 1 {
			p.TB().Fatalf("pop3: %s: bad line %q", cmd, l)
		}
		if _, dup := out[n]; dup {
			p.TB().Fatalf("pop3: %s: message %d listed twice", cmd, n)
		}
		out[n] = val
	}
	return out
}

// stat sends STAT and returns the message count and size.
func stat(p *pop3client.Client) (count int, size int64) {
	p.TB().Helper()
	s := p.OK("STAT")
	if _, err := fmt.Sscanf(s, "+OK %d %d", &count, &size); err != nil {
		p.TB().Fatalf("pop3: STAT answered %q", s)
	}
	return count, size
}

// quit sends QUIT and returns the answer, then waits for the server to
// close the connection.
func quit(p *pop3client.Client) string {
	p.TB().Helper()
	s := p.Cmd("QUIT")
	_ = p.Conn().SetReadDeadline(time.Now().Add(pop3Timeout))
	if rest, err := p.Reader().ReadString('\n'); err == nil {
		p.TB().Fatalf("pop3: data after QUIT: %q", rest)
	}
	return s
}

// drop closes the TCP connection without QUIT: with a FIN, or with reset
// (SO_LINGER 0) as when a device loses power mid-session.
func drop(p *pop3client.Client, reset bool) {
	if reset {
		_ = p.Conn().(*net.TCPConn).SetLinger(0)
	}
	_ = p.Close()
}
