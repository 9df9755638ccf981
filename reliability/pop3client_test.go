package reliability

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// opTimeout bounds every read of the test client, so that a hung bridge
// fails the test instead of hanging it.
const opTimeout = 15 * time.Second

// errNoDot is a multi-line response that ended, connection closed, before
// its terminating dot: what a client must see when a RETR fails after +OK.
var errNoDot = errors.New("connection closed before the terminating dot")

// pop3Client is a minimal POP3 client that reports exactly what it saw.
type pop3Client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// dialPOP3 connects and reads the greeting.
func dialPOP3(t testing.TB, addr string) *pop3Client {
	t.Helper()
	c, err := tryDialPOP3(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.nc.Close() })
	c.t = t
	return c
}

func tryDialPOP3(addr string) (*pop3Client, error) {
	nc, err := net.DialTimeout("tcp", addr, opTimeout)
	if err != nil {
		return nil, err
	}
	c := &pop3Client{nc: nc, br: bufio.NewReader(nc)}
	g, err := c.readLine()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(g, "+OK") {
		nc.Close()
		return nil, fmt.Errorf("greeting %q", g)
	}
	return c, nil
}

func (c *pop3Client) readLine() (string, error) {
	c.nc.SetReadDeadline(time.Now().Add(opTimeout))
	l, err := c.br.ReadString('\n')
	if err != nil {
		return l, err
	}
	return strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r"), nil
}

// cmd sends line and returns the one-line answer.
func (c *pop3Client) cmd(line string) (string, error) {
	if _, err := io.WriteString(c.nc, line+"\r\n"); err != nil {
		return "", err
	}
	return c.readLine()
}

// mustCmd is cmd that fails the test unless the answer starts with want.
func (c *pop3Client) mustCmd(line, want string) string {
	c.t.Helper()
	got, err := c.cmd(line)
	if err != nil || !strings.HasPrefix(got, want) {
		c.t.Fatalf("%s: got %q, %v; want %s...", line, got, err, want)
	}
	return got
}

// quit sends QUIT, expects want and closes the connection.
func (c *pop3Client) quit(want string) string {
	c.t.Helper()
	r := c.mustCmd("QUIT", want)
	c.nc.Close()
	return r
}

// login sends USER and PASS and returns the answer to PASS.
func (c *pop3Client) login(user, pass string) (string, error) {
	if r, err := c.cmd("USER " + user); err != nil || !strings.HasPrefix(r, "+OK") {
		return r, fmt.Errorf("USER: %q %v", r, err)
	}
	return c.cmd("PASS " + pass)
}

func (c *pop3Client) mustLogin(user, pass string) {
	c.t.Helper()
	if r, err := c.login(user, pass); err != nil || !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("login as %s: %q, %v", user, r, err)
	}
}

// multi sends line and reads a multi-line answer. It returns the status
// line, the un-dot-stuffed body, and errNoDot if the connection ended
// before the terminating dot. A -ERR answer has no body.
func (c *pop3Client) multi(line string) (status string, body []byte, err error) {
	if status, err = c.cmd(line); err != nil {
		return status, nil, err
	}
	if !strings.HasPrefix(status, "+OK") {
		return status, nil, nil
	}
	body, err = c.readBody()
	return status, body, err
}

// readBody reads dot-stuffed lines up to the terminating dot.
func (c *pop3Client) readBody() ([]byte, error) {
	var b bytes.Buffer
	for {
		l, err := c.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) || isReset(err) {
				return b.Bytes(), errNoDot
			}
			return b.Bytes(), err
		}
		if l == "." {
			return b.Bytes(), nil
		}
		b.WriteString(strings.TrimPrefix(l, "."))
		b.WriteString("\r\n")
	}
}

// closed reports whether the server has closed the connection: a read
// gets EOF or a reset (rather than data or a timeout) within d.
func (c *pop3Client) closedWithin(d time.Duration) error {
	c.nc.SetReadDeadline(time.Now().Add(d))
	rest, err := io.ReadAll(c.br)
	if err == nil || isReset(err) {
		if len(rest) > 0 {
			return fmt.Errorf("got %q before the close", rest)
		}
		return nil
	}
	return fmt.Errorf("connection not closed: %w (after %q)", err, rest)
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || errors.Is(err, net.ErrClosed))
}
