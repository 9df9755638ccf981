package pop3client

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// The methods here never fail the test: they report what happened, for
// tests that expect the connection to break.

// ErrNoDot is a multi-line response whose connection ended before its
// terminating dot: what a client must see when a RETR fails after +OK.
var ErrNoDot = errors.New("connection closed before the terminating dot")

// TryLogin sends USER and, if that was answered +OK, PASS; it returns the
// answer to PASS.
func (c *Client) TryLogin(user, pass string) (string, error) {
	if r, err := c.TryCmd("USER " + user); err != nil || !strings.HasPrefix(r, "+OK") {
		return r, fmt.Errorf("USER: %q %v", r, err)
	}
	return c.TryCmd("PASS " + pass)
}

// TryMulti sends line and reads a multi-line answer. It returns the
// status line, the un-dot-stuffed body, and ErrNoDot if the connection
// ended before the terminating dot. A -ERR answer has no body.
func (c *Client) TryMulti(line string) (status string, body []byte, err error) {
	if status, err = c.TryCmd(line); err != nil {
		return status, nil, err
	}
	if !strings.HasPrefix(status, "+OK") {
		return status, nil, nil
	}
	body, err = c.Body()
	return status, body, err
}

// Body reads dot-stuffed lines up to the terminating dot and returns them
// un-stuffed, each with its CRLF; ErrNoDot if the connection ended
// (closed or reset) first.
func (c *Client) Body() ([]byte, error) {
	var b bytes.Buffer
	err := c.StreamBody(func(p []byte) { b.Write(p) })
	return b.Bytes(), err
}

// StreamBody reads a multi-line answer up to the terminating dot and
// passes it to fn, un-stuffed, in chunks of at most the read buffer (a
// long line comes in several), CRLFs included; nothing is held whole, so a
// 100 MiB RETR costs the buffer only. It returns ErrNoDot if the connection
// ended (closed or reset) first, ErrNoCRLF for a line ended by a bare LF.
// fn must not keep the slice.
func (c *Client) StreamBody(fn func([]byte)) error {
	atStart := true
	for {
		c.readDeadline()
		chunk, err := c.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) || IsReset(err) || errors.Is(err, net.ErrClosed) {
				return ErrNoDot
			}
			return err
		}
		complete := err == nil
		if atStart && len(chunk) > 0 && chunk[0] == '.' {
			if complete && bytes.Equal(chunk, []byte(".\r\n")) {
				return nil
			}
			chunk = chunk[1:]
		}
		if complete && !bytes.HasSuffix(chunk, []byte("\r\n")) {
			return fmt.Errorf("%w: %q", ErrNoCRLF, chunk)
		}
		fn(chunk)
		atStart = complete
	}
}

// ClosedWithin returns nil if the server closes the connection (a read
// gets EOF or a reset, rather than data or a timeout) within d.
func (c *Client) ClosedWithin(d time.Duration) error {
	c.conn.SetReadDeadline(time.Now().Add(d))
	rest, err := io.ReadAll(c.r)
	if err == nil || IsReset(err) || errors.Is(err, net.ErrClosed) {
		if len(rest) > 0 {
			return fmt.Errorf("got %q before the close", rest)
		}
		return nil
	}
	return fmt.Errorf("connection not closed: %w (after %q)", err, rest)
}
