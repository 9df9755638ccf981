package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pop3Timeout bounds every exchange of the raw client, so a stuck bridge
// fails the test instead of hanging it.
const pop3Timeout = 30 * time.Second

// pop3Client is a deliberately simple POP3 client over TCP: it sends one
// command at a time and checks the wire format strictly (CRLF line ends,
// dot-stuffing, the terminating line). Any I/O error fails the test.
type pop3Client struct {
	t    testing.TB
	conn *net.TCPConn
	r    *bufio.Reader
	// Port is the client's local port, which the bridge logs as
	// client_port.
	Port int
}

// dialPOP3 connects to addr and reads the greeting.
func dialPOP3(t testing.TB, addr string) *pop3Client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, pop3Timeout)
	if err != nil {
		t.Fatalf("pop3: dial %s: %v", addr, err)
	}
	p := &pop3Client{t: t, conn: c.(*net.TCPConn), r: bufio.NewReaderSize(c, 64<<10)}
	p.Port = c.LocalAddr().(*net.TCPAddr).Port
	t.Cleanup(func() { _ = p.conn.Close() })
	if g := p.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("pop3: greeting %q", g)
	}
	return p
}

// login sends USER and PASS and requires +OK for both.
func (p *pop3Client) login(user, pass string) {
	p.t.Helper()
	p.ok("USER " + user)
	p.ok("PASS " + pass)
}

// line reads one response line and returns it without CRLF; a line that
// does not end in CRLF fails the test.
func (p *pop3Client) line() string {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(pop3Timeout))
	s, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("pop3: read: %v (after %q)", err, s)
	}
	if !strings.HasSuffix(s, "\r\n") {
		p.t.Fatalf("pop3: line %q does not end in CRLF", s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

// send writes one command line.
func (p *pop3Client) send(cmd string) {
	p.t.Helper()
	_ = p.conn.SetWriteDeadline(time.Now().Add(pop3Timeout))
	if _, err := p.conn.Write([]byte(cmd + "\r\n")); err != nil {
		p.t.Fatalf("pop3: write %q: %v", cmd, err)
	}
}

// cmd sends cmd and returns the status line.
func (p *pop3Client) cmd(cmd string) string {
	p.t.Helper()
	p.send(cmd)
	return p.line()
}

// ok sends cmd and requires +OK, returning the status line.
func (p *pop3Client) ok(cmd string) string {
	p.t.Helper()
	s := p.cmd(cmd)
	if !strings.HasPrefix(s, "+OK") {
		p.t.Fatalf("pop3: %s: got %q, want +OK", redact(cmd), s)
	}
	return s
}

// fail sends cmd and requires -ERR, returning the status line.
func (p *pop3Client) fail(cmd string) string {
	p.t.Helper()
	s := p.cmd(cmd)
	if !strings.HasPrefix(s, "-ERR") {
		p.t.Fatalf("pop3: %s: got %q, want -ERR", cmd, s)
	}
	return s
}

func redact(cmd string) string {
	if strings.HasPrefix(strings.ToUpper(cmd), "PASS ") {
		return "PASS ***"
	}
	return cmd
}

// multi sends cmd, requires +OK and returns the status line and the
// multi-line body un-stuffed: the octets between the status line and the
// terminating ".\r\n", each line with its CRLF, a leading dot removed
// where the server doubled it. A line with a single leading dot other than
// the terminator fails the test: the server forgot to stuff it.
func (p *pop3Client) multi(cmd string) (string, []byte) {
	p.t.Helper()
	status := p.ok(cmd)
	return status, p.readMulti(cmd)
}

// readMulti reads the body of a multi-line answer whose status line has
// been read, as multi does; cmd names it in failures.
func (p *pop3Client) readMulti(cmd string) []byte {
	p.t.Helper()
	var body bytes.Buffer
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(pop3Timeout))
		s, err := p.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long line: its first part cannot be the terminator.
			if s[0] == '.' {
				if len(s) < 2 || s[1] != '.' {
					p.t.Fatalf("pop3: %s: line starting %q is not dot-stuffed", cmd, s[:min(len(s), 20)])
				}
				s = s[1:]
			}
			body.Write(s)
			for err == bufio.ErrBufferFull {
				s, err = p.r.ReadSlice('\n')
				body.Write(s)
			}
			if err != nil {
				p.t.Fatalf("pop3: %s: read: %v", cmd, err)
			}
			if !bytes.HasSuffix(body.Bytes(), []byte("\r\n")) {
				p.t.Fatalf("pop3: %s: a long line does not end in CRLF", cmd)
			}
			continue
		}
		if err != nil {
			p.t.Fatalf("pop3: %s: read after %d octets: %v", cmd, body.Len(), err)
		}
		if !bytes.HasSuffix(s, []byte("\r\n")) {
			p.t.Fatalf("pop3: %s: line %q does not end in CRLF", cmd, s)
		}
		if string(s) == ".\r\n" {
			return body.Bytes()
		}
		if s[0] == '.' {
			if len(s) < 2 || s[1] != '.' {
				p.t.Fatalf("pop3: %s: line %q is not dot-stuffed", cmd, s)
			}
			s = s[1:]
		}
		body.Write(s)
	}
}

// listing is a parsed LIST or UIDL answer: message number -> value.
type listing map[int]string

// list sends cmd (LIST or UIDL) and parses its multi-line answer.
func (p *pop3Client) list(cmd string) listing {
	p.t.Helper()
	_, body := p.multi(cmd)
	out := make(listing)
	for _, l := range strings.Split(strings.TrimSuffix(string(body), "\r\n"), "\r\n") {
		if l == "" {
			continue
		}
		num, val, ok := strings.Cut(l, " ")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 1 {
			p.t.Fatalf("pop3: %s: bad line %q", cmd, l)
		}
		if _, dup := out[n]; dup {
			p.t.Fatalf("pop3: %s: message %d listed twice", cmd, n)
		}
		out[n] = val
	}
	return out
}

// stat sends STAT and returns the message count and size.
func (p *pop3Client) stat() (count int, size int64) {
	p.t.Helper()
	s := p.ok("STAT")
	if _, err := fmt.Sscanf(s, "+OK %d %d", &count, &size); err != nil {
		p.t.Fatalf("pop3: STAT answered %q", s)
	}
	return count, size
}

// quit sends QUIT and returns the answer, then waits for the server to
// close the connection.
func (p *pop3Client) quit() string {
	p.t.Helper()
	s := p.cmd("QUIT")
	_ = p.conn.SetReadDeadline(time.Now().Add(pop3Timeout))
	if rest, err := p.r.ReadString('\n'); err == nil {
		p.t.Fatalf("pop3: data after QUIT: %q", rest)
	}
	return s
}

// drop closes the TCP connection without QUIT: with a FIN, or with reset
// (SO_LINGER 0) as when a device loses power mid-session.
func (p *pop3Client) drop(reset bool) {
	if reset {
		_ = p.conn.SetLinger(0)
	}
	_ = p.conn.Close()
}
