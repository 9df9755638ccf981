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
		done, err := c.streamLine(fn, &atStart)
		if done || err != nil {
			return err
		}
	}
}

// streamLine reads one line, or as much of a long one as the buffer
// holds, and passes it to fn un-stuffed; done reports the terminating dot.
// atStart says whether the read begins a line, and is updated.
func (c *Client) streamLine(fn func([]byte), atStart *bool) (done bool, err error) {
	chunk, err := c.r.ReadSlice('\n')
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return false, streamErr(err)
	}
	complete := err == nil
	if *atStart && len(chunk) > 0 && chunk[0] == '.' {
		if complete && bytes.Equal(chunk, []byte(".\r\n")) {
			return true, nil
		}
		chunk = chunk[1:]
	}
	if complete && !bytes.HasSuffix(chunk, []byte("\r\n")) {
		return false, fmt.Errorf("%w: %q", ErrNoCRLF, chunk)
	}
	fn(chunk)
	*atStart = complete
	return false, nil
}

// streamErr is what a read error means inside a multi-line answer.
func streamErr(err error) error {
	if errors.Is(err, io.EOF) || IsReset(err) || errors.Is(err, net.ErrClosed) {
		return ErrNoDot
	}
	return err
}

// StreamBulk is StreamBody for callers that want the octets, not the
// lines (the benchmark's check of every message): fn gets every whole
// line buffered at once, split only where a line starts with a dot, so
// reading a large message costs a few calls per read instead of several
// per line (per line, the load client would be slower than the servers it
// measures). Lines longer than the buffer go as StreamBody passes them.
// The same errors as StreamBody; fn must not keep the slice.
func (c *Client) StreamBulk(fn func([]byte)) error {
	atStart := true
	for {
		c.readDeadline()
		if _, err := c.r.Peek(1); err != nil {
			return streamErr(err)
		}
		data, _ := c.r.Peek(c.r.Buffered())
		last := bytes.LastIndexByte(data, '\n')
		if last < 0 || !atStart {
			// Inside a line longer than the buffer: a line at a time.
			done, err := c.streamLine(fn, &atStart)
			if done || err != nil {
				return err
			}
			continue
		}
		done, used, err := unstuffLines(data[:last+1], fn)
		if err != nil {
			return err
		}
		c.r.Discard(used)
		if done {
			return nil
		}
	}
}

// unstuffLines passes the whole lines of block (which starts a line and
// ends with LF) to fn, un-stuffed, in runs that break only before a line
// starting with a dot. It stops after the terminating dot (done) and
// returns the octets it consumed.
func unstuffLines(block []byte, fn func([]byte)) (done bool, used int, err error) {
	for used < len(block) {
		seg := block[used:]
		skip := 0
		if seg[0] == '.' {
			if bytes.HasPrefix(seg, []byte(".\r\n")) {
				return true, used + 3, nil
			}
			skip = 1 // the stuffing dot
		}
		run := seg[skip:]
		if k := bytes.Index(run, []byte("\n.")); k >= 0 {
			run = run[:k+1]
		}
		if bytes.Count(run, []byte("\n")) != bytes.Count(run, []byte("\r\n")) {
			return false, used, fmt.Errorf("%w in %q", ErrNoCRLF, run)
		}
		fn(run)
		used += skip + len(run)
	}
	return false, used, nil
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
