package bench

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// commandTimeout bounds each read and write of the load client (a server
// that stops answering), not a whole exchange: a 100 MiB RETR from a slow
// server may take longer.
const commandTimeout = 5 * time.Minute

// popConn is the load client: the tests' POP3 client (through its core,
// which needs no testing.TB) with a 64 KiB read buffer, one command at a
// time (no pipelining, so the three servers are driven the same way),
// every multi-line answer streamed to its end.
type popConn struct{ c *pop3client.Client }

// dialPOP connects to addr and reads the greeting.
func dialPOP(addr string) (*popConn, error) {
	c, err := pop3client.TryDial(addr, pop3client.Options{
		DialTimeout: 10 * time.Second, OpTimeout: commandTimeout, ReadBuffer: 64 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &popConn{c: c}, nil
}

// Close drops the connection without QUIT.
func (c *popConn) Close() error { return c.c.Close() }

// cmd sends one command and returns the text after "+OK".
func (c *popConn) cmd(line string) (string, error) {
	st, err := c.c.TryCmd(line)
	if err != nil {
		return "", fmt.Errorf("%s: %w", verb(line), err)
	}
	text, ok := strings.CutPrefix(st, "+OK")
	if !ok {
		return "", fmt.Errorf("%s: server said %q", verb(line), st)
	}
	return strings.TrimPrefix(text, " "), nil
}

func verb(line string) string {
	v, _, _ := strings.Cut(line, " ")
	if v == "PASS" {
		return "PASS"
	}
	return line
}

// login sends USER and PASS.
func (c *popConn) login(user, pass string) error {
	if _, err := c.cmd("USER " + user); err != nil {
		return err
	}
	_, err := c.cmd("PASS " + pass)
	return err
}

// stat returns STAT's message count and size.
func (c *popConn) stat() (n int, size int64, err error) {
	text, err := c.cmd("STAT")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(text)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("STAT: %q", text)
	}
	n, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("STAT: %q", text)
	}
	return n, size, nil
}

// uidl returns the number of UIDL lines and a Sum over them, to compare
// listings between servers.
func (c *popConn) uidl() (int, Sum, error) {
	if _, err := c.cmd("UIDL"); err != nil {
		return 0, Sum{}, err
	}
	h := NewHasher()
	lines := 0
	err := c.c.StreamBody(func(line []byte) {
		lines++
		h.Write(line)
	})
	return lines, h.Sum(), err
}

// body sends RETR or TOP and returns the Sum of the un-stuffed answer.
func (c *popConn) body(line string) (Sum, error) {
	if _, err := c.cmd(line); err != nil {
		return Sum{}, err
	}
	h := NewHasher()
	err := c.c.StreamBulk(func(p []byte) { h.Write(p) })
	return h.Sum(), err
}

// quit sends QUIT and waits for the server to close.
func (c *popConn) quit() error {
	_, err := c.cmd("QUIT")
	c.c.Close()
	return err
}
