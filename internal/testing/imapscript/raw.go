package imapscript

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// Raw is the scripted server's raw mode, for what Server's rules do not
// cover: the phase before login (odd greetings, STARTTLS misbehaviour,
// hostile text, implicit TLS) and answers at arbitrary points. The test
// writes the conversation itself: each connection runs script. Raw records
// every command line and every octet it receives (after TLS, when TLS is
// on), listens on 127.0.0.1 and stops when the test ends.
type Raw struct {
	addr string

	mu   sync.Mutex
	got  bytes.Buffer // octets received
	cmds []string     // command lines received by ReadCommand, without tags
}

// RawConn is one connection of a Raw server. Write (or Send) answers; R
// reads what the client sent.
type RawConn struct {
	net.Conn
	R   *bufio.Reader
	srv *Raw
	tb  testing.TB
}

// NewRaw starts a Raw server; with tlsCfg, every connection is implicit
// TLS. script runs once per connection, which closes when it returns.
func NewRaw(tb testing.TB, tlsCfg *tls.Config, script func(c *RawConn)) *Raw {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &Raw{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				var c net.Conn = nc
				if tlsCfg != nil {
					c = tls.Server(nc, tlsCfg)
				}
				script(r.conn(tb, c))
			}()
		}
	}()
	return r
}

func (r *Raw) conn(tb testing.TB, c net.Conn) *RawConn {
	return &RawConn{Conn: c, R: bufio.NewReader(io.TeeReader(c, recorder{r})), srv: r, tb: tb}
}

// recorder appends what the client sent to Raw.got.
type recorder struct{ r *Raw }

func (w recorder) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.got.Write(p)
}

// Addr is the server's "127.0.0.1:port".
func (r *Raw) Addr() string { return r.addr }

// URL is popbridge's upstream URL for the server, without TLS.
func (r *Raw) URL() string { return "imap+insecure://" + r.addr }

// Received returns every octet received so far, from every connection.
func (r *Raw) Received() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got.String()
}

// Commands returns the command lines ReadCommand has read, without tags.
func (r *Raw) Commands() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.cmds...)
}

// Send writes each line with CRLF; a write error (the client left) is
// ignored, the next read fails.
func (c *RawConn) Send(lines ...string) {
	for _, l := range lines {
		if _, err := io.WriteString(c.Conn, l+"\r\n"); err != nil {
			return
		}
	}
}

// ReadCommand reads one command line and returns its tag and the rest,
// recording the rest; ok is false once the client is gone.
func (c *RawConn) ReadCommand() (tag, cmd string, ok bool) {
	line, err := c.R.ReadString('\n')
	if err != nil {
		return "", "", false
	}
	tag, cmd, _ = strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	c.srv.mu.Lock()
	c.srv.cmds = append(c.srv.cmds, cmd)
	c.srv.mu.Unlock()
	return tag, cmd, true
}

// StartTLS upgrades the server side of the connection (after the test
// answered STARTTLS) and reports whether the handshake succeeded.
func (c *RawConn) StartTLS(cfg *tls.Config) bool {
	tc := tls.Server(c.Conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.tb.Logf("imapscript: TLS handshake: %v", err)
		return false
	}
	*c = *c.srv.conn(c.tb, tc)
	return true
}

// Serve is the usual script: send greeting, then hand each command to
// handle until it returns false or the client leaves.
func Serve(greeting string, handle func(c *RawConn, tag, cmd string) bool) func(*RawConn) {
	return func(c *RawConn) {
		c.Send(greeting)
		for {
			tag, cmd, ok := c.ReadCommand()
			if !ok || !handle(c, tag, cmd) {
				return
			}
		}
	}
}
