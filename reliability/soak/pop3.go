package soak

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// errNoDot is a multi-line answer cut off before its terminating dot.
var errNoDot = errors.New("connection closed before the terminating dot")

// popConn is a POP3 client connection that reports exactly what it saw.
type popConn struct {
	nc      net.Conn
	br      *bufio.Reader
	timeout time.Duration
	bytes   int64 // octets read
}

func dialPOP3(addr string, timeout time.Duration) (*popConn, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &popConn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10), timeout: timeout}
	g, err := c.line()
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

func (c *popConn) close() { c.nc.Close() }

func (c *popConn) line() (string, error) {
	c.nc.SetReadDeadline(time.Now().Add(c.timeout))
	l, err := c.br.ReadString('\n')
	c.bytes += int64(len(l))
	if err != nil {
		if isTimeout(err) {
			return "", fmt.Errorf("no answer within %v: %w", c.timeout, err)
		}
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r"), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *popConn) send(line string) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	_, err := io.WriteString(c.nc, line+"\r\n")
	return err
}

// cmd sends line and returns the status line.
func (c *popConn) cmd(line string) (string, error) {
	if err := c.send(line); err != nil {
		return "", err
	}
	return c.line()
}

// multi sends line and, after +OK, reads the body up to the dot,
// un-stuffed. A -ERR has no body.
func (c *popConn) multi(line string) (string, []byte, error) {
	st, err := c.cmd(line)
	if err != nil || !strings.HasPrefix(st, "+OK") {
		return st, nil, err
	}
	var b bytes.Buffer
	for {
		l, err := c.line()
		if err != nil {
			if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") {
				err = errNoDot
			}
			return st, b.Bytes(), err
		}
		if l == "." {
			return st, b.Bytes(), nil
		}
		b.WriteString(strings.TrimPrefix(l, "."))
		b.WriteString("\r\n")
	}
}

// listing is UIDL and LIST joined: message n is entries[n-1].
type entry struct {
	uid, validity uint32
	size          int64
}

func (c *popConn) listing() ([]entry, error) {
	st, uidl, err := c.multi("UIDL")
	if err != nil || !strings.HasPrefix(st, "+OK") {
		return nil, fmt.Errorf("UIDL: %q %v", st, err)
	}
	st, list, err := c.multi("LIST")
	if err != nil || !strings.HasPrefix(st, "+OK") {
		return nil, fmt.Errorf("LIST: %q %v", st, err)
	}
	ul, ll := splitLines(uidl), splitLines(list)
	if len(ul) != len(ll) {
		return nil, fmt.Errorf("UIDL lists %d messages, LIST %d", len(ul), len(ll))
	}
	out := make([]entry, len(ul))
	for i := range ul {
		var n int
		var id string
		if _, err := fmt.Sscanf(ul[i], "%d %s", &n, &id); err != nil || n != i+1 || len(id) != 16 {
			return nil, fmt.Errorf("UIDL line %q", ul[i])
		}
		// %08Xu%08Xv, the default --uidl-format.
		uid, err1 := strconv.ParseUint(id[:8], 16, 32)
		v, err2 := strconv.ParseUint(id[8:], 16, 32)
		var m int
		var size int64
		_, err3 := fmt.Sscanf(ll[i], "%d %d", &m, &size)
		if err1 != nil || err2 != nil || err3 != nil || m != n {
			return nil, fmt.Errorf("UIDL/LIST lines %q / %q", ul[i], ll[i])
		}
		out[i] = entry{uid: uint32(uid), validity: uint32(v), size: size}
	}
	return out, nil
}

func splitLines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\r\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\r\n")
}
