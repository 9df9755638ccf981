// Package pop3client is the raw, line-oriented POP3 client of the tests,
// the benchmark and the soak: it sends exactly the octets it is asked to
// and reports exactly what the server answered, so tests can check the
// wire protocol itself.
//
// Its core needs no testing.TB: TryDial, TrySend, Line, TryCmd, TryMulti,
// Body and StreamBody return errors, for programs (bench, the soak engine)
// and for tests that expect the connection to break. The methods without an
// error result fail the test given to New, Dial or SetTB instead.
//
// The package imports nothing of popbridge's, so that every package's
// tests (pop3server's own included) can use it.
package pop3client

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Options tune a Client. The zero value is usable: no deadlines, a 5 s
// dial timeout, and ExpectClosed waiting 10 s for the close.
type Options struct {
	// DialTimeout bounds Dial; 0 means 5 s.
	DialTimeout time.Duration
	// Deadline, when set, is one deadline for the whole connection, set
	// when the Client is made: a hung server fails the test after it.
	Deadline time.Duration
	// OpTimeout, when set, bounds every single read and write instead.
	OpTimeout time.Duration
	// WriteTimeout, when set, bounds every write instead of OpTimeout.
	WriteTimeout time.Duration
	// CloseTimeout bounds ExpectClosed and Closed; 0 means 10 s.
	CloseTimeout time.Duration
	// AllowReset makes ExpectClosed accept a connection reset as a close.
	AllowReset bool
	// StrictBody makes Multiline fail on a body line that does not end in
	// CRLF or that starts with a single dot (the server forgot to stuff it).
	StrictBody bool
	// Prefix is written before anything else (a PROXY protocol header,
	// say), before any greeting is read.
	Prefix []byte
	// ReadBuffer is the size of the read buffer; 0 means 4 KiB. Large
	// downloads (the benchmark's) go faster with 64 KiB.
	ReadBuffer int
}

// Client is a POP3 connection under test.
type Client struct {
	tb   testing.TB
	conn net.Conn
	r    *bufio.Reader
	n    int64 // octets read from conn
	o    Options
	// pushed is when readDeadline last set the read deadline.
	pushed time.Time
}

// New wraps an established connection, writes o.Prefix and closes the
// connection when the test ends. It reads nothing: see Greeting.
func New(tb testing.TB, conn net.Conn, o Options) *Client {
	tb.Helper()
	c, err := newClient(conn, o)
	tb.Cleanup(func() { conn.Close() })
	if err != nil {
		tb.Fatal(err)
	}
	c.tb = tb
	return c
}

func newClient(conn net.Conn, o Options) (*Client, error) {
	c := &Client{conn: conn, o: o}
	c.r = bufio.NewReaderSize(countingReader{conn, &c.n}, max(o.ReadBuffer, 4096))
	if o.Deadline > 0 {
		conn.SetDeadline(time.Now().Add(o.Deadline))
	}
	if len(o.Prefix) > 0 {
		c.writeDeadline()
		if _, err := conn.Write(o.Prefix); err != nil {
			return nil, fmt.Errorf("pop3client: writing prefix: %w", err)
		}
	}
	return c, nil
}

// Dial connects to addr over TCP without reading the greeting.
func Dial(tb testing.TB, addr string, o Options) *Client {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, dialTimeout(o))
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	return New(tb, conn, o)
}

// DialTLS connects to addr with implicit TLS (after o.Prefix, which goes
// in clear) and completes the handshake; it reads no greeting.
func DialTLS(tb testing.TB, addr string, cfg *tls.Config, o Options) *Client {
	tb.Helper()
	raw, err := net.DialTimeout("tcp", addr, dialTimeout(o))
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { raw.Close() })
	if len(o.Prefix) > 0 {
		if _, err := raw.Write(o.Prefix); err != nil {
			tb.Fatalf("writing prefix: %v", err)
		}
	}
	if o.Deadline > 0 {
		raw.SetDeadline(time.Now().Add(o.Deadline))
	}
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		tb.Fatalf("TLS dial %s: %v", addr, err)
	}
	o.Prefix = nil
	return New(tb, tc, o)
}

// TryDial connects to addr and reads a greeting that must start "+OK",
// returning any failure. The caller closes the Client; methods that fail
// the test need SetTB first.
func TryDial(addr string, o Options) (*Client, error) {
	conn, err := net.DialTimeout("tcp", addr, dialTimeout(o))
	if err != nil {
		return nil, err
	}
	c, err := newClient(conn, o)
	if err != nil {
		conn.Close()
		return nil, err
	}
	g, err := c.Line()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(g, "+OK") {
		conn.Close()
		return nil, fmt.Errorf("greeting %q", g)
	}
	return c, nil
}

// SetTB sets the test that failing methods fail.
func (c *Client) SetTB(tb testing.TB) { c.tb = tb }

// TB returns the test that failing methods fail, for helpers built on
// the Client.
func (c *Client) TB() testing.TB { return c.tb }

func dialTimeout(o Options) time.Duration {
	if o.DialTimeout > 0 {
		return o.DialTimeout
	}
	return 5 * time.Second
}

// Conn returns the connection (a *tls.Conn after StartTLS).
func (c *Client) Conn() net.Conn { return c.conn }

// Reader returns the buffered reader over the connection.
func (c *Client) Reader() *bufio.Reader { return c.r }

// BytesRead is the number of octets read from the connection so far
// (after TLS decryption, once upgraded), buffered ones included.
func (c *Client) BytesRead() int64 { return c.n }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// readDeadline pushes the read deadline before a read that may wait on the
// connection. Pushing it for every line made the benchmark client spend
// more CPU on timer updates than the servers it measures spent serving
// (docs/benchmarks.md), so with data buffered it is pushed only once a
// quarter of OpTimeout has passed: a line served from memory needs none,
// and the socket read completing a partial line follows the refill that
// brought that part, whose deadline is then still at least 3/4 fresh.
func (c *Client) readDeadline() {
	if c.o.OpTimeout <= 0 {
		return
	}
	now := time.Now()
	if c.r.Buffered() > 0 && now.Sub(c.pushed) < c.o.OpTimeout/4 {
		return
	}
	c.pushed = now
	c.conn.SetReadDeadline(now.Add(c.o.OpTimeout))
}

func (c *Client) writeDeadline() {
	d := c.o.WriteTimeout
	if d == 0 {
		d = c.o.OpTimeout
	}
	if d > 0 {
		c.conn.SetWriteDeadline(time.Now().Add(d))
	}
}

// TrySend writes line and CRLF, returning any error.
func (c *Client) TrySend(line string) error {
	c.writeDeadline()
	_, err := io.WriteString(c.conn, line+"\r\n")
	return err
}

// Send writes line and CRLF.
func (c *Client) Send(line string) {
	c.tb.Helper()
	if err := c.TrySend(line); err != nil {
		c.tb.Fatalf("send %q: %v", line, err)
	}
}

// ErrNoCRLF is a line that ended in a bare LF.
var ErrNoCRLF = errors.New("line without CRLF")

// Line reads one line and returns it without its CRLF. A partial line at
// the end of the stream is returned with io.ErrUnexpectedEOF, a line
// ending in a bare LF with ErrNoCRLF.
func (c *Client) Line() (string, error) {
	c.readDeadline()
	s, err := c.r.ReadString('\n')
	if err != nil {
		if s != "" && errors.Is(err, io.EOF) {
			return s, io.ErrUnexpectedEOF
		}
		return s, err
	}
	if !strings.HasSuffix(s, "\r\n") {
		return s, fmt.Errorf("%w: %q", ErrNoCRLF, s)
	}
	return strings.TrimSuffix(s, "\r\n"), nil
}

// ReadLine reads one line that must end in CRLF and returns it without.
func (c *Client) ReadLine() string {
	c.tb.Helper()
	s, err := c.Line()
	if err != nil {
		c.tb.Fatalf("read: %v (got %q)", err, s)
	}
	return s
}

// Match reports whether got matches pattern: a pattern ending in "*"
// matches a prefix, any other only itself.
func Match(got, pattern string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(got, prefix)
	}
	return got == pattern
}

// Expect reads one line per pattern, each of which must Match.
func (c *Client) Expect(patterns ...string) {
	c.tb.Helper()
	for _, p := range patterns {
		got := c.ReadLine()
		if !Match(got, p) {
			if prefix, ok := strings.CutSuffix(p, "*"); ok {
				c.tb.Fatalf("got %q, want prefix %q", got, prefix)
			}
			c.tb.Fatalf("got %q, want %q", got, p)
		}
	}
}

// MustLine reads a line that must start with prefix and returns it.
func (c *Client) MustLine(prefix string) string {
	c.tb.Helper()
	s, err := c.Line()
	if err != nil || !strings.HasPrefix(s, prefix) {
		c.tb.Fatalf("read %q (%v), want a line starting %q", s, err, prefix)
	}
	return s
}

// TryCmd sends line and returns the one-line answer, or an error.
func (c *Client) TryCmd(line string) (string, error) {
	if err := c.TrySend(line); err != nil {
		return "", err
	}
	return c.Line()
}

// Cmd sends line and returns the one-line answer.
func (c *Client) Cmd(line string) string {
	c.tb.Helper()
	c.Send(line)
	s, err := c.Line()
	if err != nil {
		c.tb.Fatalf("%s: reading reply: %v (got %q)", redact(line), err, s)
	}
	return s
}

// CmdPrefix sends line; the answer must start with prefix and is returned.
func (c *Client) CmdPrefix(line, prefix string) string {
	c.tb.Helper()
	s := c.Cmd(line)
	if !strings.HasPrefix(s, prefix) {
		c.tb.Fatalf("%s: got %q, want %s...", redact(line), s, prefix)
	}
	return s
}

// redact hides the password of a PASS command in failure messages.
func redact(line string) string {
	if strings.HasPrefix(strings.ToUpper(line), "PASS ") {
		return "PASS ***"
	}
	return line
}

// OK sends line, which must be answered +OK; the answer is returned.
func (c *Client) OK(line string) string {
	c.tb.Helper()
	return c.CmdPrefix(line, "+OK")
}

// Multiline reads a multi-line body up to the terminating dot and returns
// it un-stuffed, each line with its CRLF.
func (c *Client) Multiline() []byte {
	c.tb.Helper()
	return c.MultilinePrefix(-1)
}

// MultilinePrefix reads about the first n octets (whole lines) of a
// multi-line body, un-stuffed, leaving the rest and the dot unread; a
// negative n reads it all.
func (c *Client) MultilinePrefix(n int) []byte {
	c.tb.Helper()
	var buf bytes.Buffer
	for n < 0 || buf.Len() < n {
		c.readDeadline()
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.tb.Fatalf("multi-line body: %v after %d octets", err, buf.Len())
		}
		if line == ".\r\n" {
			return buf.Bytes()
		}
		if c.o.StrictBody {
			if !strings.HasSuffix(line, "\r\n") {
				c.tb.Fatalf("multi-line body: line %q does not end in CRLF", line)
			}
			if line[0] == '.' && (len(line) < 2 || line[1] != '.') {
				c.tb.Fatalf("multi-line body: line %q is not dot-stuffed", line[:min(len(line), 80)])
			}
		}
		buf.WriteString(strings.TrimPrefix(line, "."))
	}
	return buf.Bytes()
}

// Capa sends CAPA, wants +OK and returns the capability lines.
func (c *Client) Capa() []string {
	c.tb.Helper()
	c.Send("CAPA")
	c.Expect("+OK*")
	return c.LinesToDot()
}

// LinesToDot reads lines, as they are (not un-stuffed), up to a line
// that is only a dot, and returns them without it.
func (c *Client) LinesToDot() []string {
	c.tb.Helper()
	var lines []string
	for {
		line := c.ReadLine()
		if line == "." {
			return lines
		}
		lines = append(lines, line)
	}
}

// HasCap reports whether caps lists name, alone or with arguments.
func HasCap(caps []string, name string) bool {
	for _, c := range caps {
		if c == name || strings.HasPrefix(c, name+" ") {
			return true
		}
	}
	return false
}

// Login sends USER and PASS; both must be answered +OK.
func (c *Client) Login(user, pass string) {
	c.tb.Helper()
	c.Send("USER " + user)
	c.Expect("+OK*")
	c.Send("PASS " + pass)
	c.Expect("+OK*")
}

func (c *Client) closeTimeout() time.Duration {
	if c.o.CloseTimeout > 0 {
		return c.o.CloseTimeout
	}
	return 10 * time.Second
}

// ExpectClosed asserts the server closes the connection within the close
// timeout without sending anything more. A reset counts as a close only
// with Options.AllowReset.
func (c *Client) ExpectClosed() {
	c.tb.Helper()
	c.conn.SetReadDeadline(time.Now().Add(c.closeTimeout()))
	rest, err := io.ReadAll(c.r)
	if err != nil && !(c.o.AllowReset && IsReset(err)) {
		c.tb.Fatalf("want close, got %v after %q", err, rest)
	}
	if len(rest) > 0 {
		c.tb.Fatalf("unexpected data before close: %q", rest)
	}
}

// Closed reads until the server closes the connection or the close
// timeout passes. It reports whether the connection ended (EOF or any
// error but a timeout) with nothing more read, and what was read.
func (c *Client) Closed() (bool, string) {
	c.conn.SetReadDeadline(time.Now().Add(c.closeTimeout()))
	b, err := io.ReadAll(c.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, string(b)
	}
	return len(b) == 0, string(b)
}

// IsReset reports whether err is a connection reset.
func IsReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// StartTLS sends STLS, wants +OK as the last octets sent in clear, and
// runs the TLS handshake with cfg.
func (c *Client) StartTLS(cfg *tls.Config) {
	c.tb.Helper()
	c.StartTLSWant(cfg, "+OK*")
}

// StartTLSWant is StartTLS with the answer to STLS matching pattern (see
// Match).
func (c *Client) StartTLSWant(cfg *tls.Config, pattern string) {
	c.tb.Helper()
	c.Send("STLS")
	c.Expect(pattern)
	if n := c.r.Buffered(); n > 0 {
		b, _ := c.r.Peek(n)
		c.tb.Fatalf("server sent %q in clear after STLS", b)
	}
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.tb.Fatalf("STLS handshake: %v", err)
	}
	c.Upgrade(tc)
}

// Upgrade replaces the connection by conn (a TLS client over it, say),
// dropping anything buffered; BytesRead counts from zero again.
func (c *Client) Upgrade(conn net.Conn) {
	c.conn = conn
	c.n = 0
	c.r.Reset(countingReader{conn, &c.n})
}

// countingReader counts the octets read through it.
type countingReader struct {
	r io.Reader
	n *int64
}

func (r countingReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	*r.n += int64(n)
	return n, err
}
