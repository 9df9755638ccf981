package bench

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

// commandTimeout bounds each exchange of the load client: generous, since
// a 100 MiB RETR on a slow server is one exchange.
const commandTimeout = 5 * time.Minute

// popConn is the load client: raw TCP, one command at a time (no
// pipelining, so the three servers are driven the same way), every
// multi-line answer read to its end.
type popConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialPOP connects to addr and reads the greeting.
func dialPOP(addr string) (*popConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &popConn{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	_ = conn.SetDeadline(time.Now().Add(commandTimeout))
	if _, err := c.status(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	return c, nil
}

// Close drops the connection without QUIT.
func (c *popConn) Close() error { return c.conn.Close() }

// cmd sends one command and returns the text after "+OK".
func (c *popConn) cmd(line string) (string, error) {
	_ = c.conn.SetDeadline(time.Now().Add(commandTimeout))
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return "", fmt.Errorf("%s: %w", verb(line), err)
	}
	text, err := c.status()
	if err != nil {
		return "", fmt.Errorf("%s: %w", verb(line), err)
	}
	return text, nil
}

func verb(line string) string {
	v, _, _ := strings.Cut(line, " ")
	if v == "PASS" {
		return "PASS"
	}
	return line
}

// status reads a status line.
func (c *popConn) status() (string, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if text, ok := strings.CutPrefix(line, "+OK"); ok {
		return strings.TrimPrefix(text, " "), nil
	}
	return "", fmt.Errorf("server said %q", line)
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
	err := c.readMultiline(func(line []byte) {
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
	err := c.readMultiline(func(p []byte) { h.Write(p) })
	return h.Sum(), err
}

// quit sends QUIT and waits for the server to close.
func (c *popConn) quit() error {
	_, err := c.cmd("QUIT")
	c.conn.Close()
	return err
}

var errBareLF = errors.New("line not ended by CRLF")

// readMultiline reads a multi-line answer up to the terminating dot and
// passes each chunk, dot-unstuffed and with its CRLF, to fn. A line
// longer than the buffer arrives in several chunks.
func (c *popConn) readMultiline(fn func([]byte)) error {
	atStart := true
	for {
		chunk, err := c.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("multi-line answer: %w", err)
		}
		complete := err == nil
		if atStart && len(chunk) > 0 && chunk[0] == '.' {
			if complete && bytes.Equal(chunk, []byte(".\r\n")) {
				return nil
			}
			chunk = chunk[1:]
		}
		if complete && !bytes.HasSuffix(chunk, []byte("\r\n")) {
			return fmt.Errorf("multi-line answer: %w", errBareLF)
		}
		fn(chunk)
		atStart = complete
	}
}
