package uidlimport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/popbridge/popbridge/internal/serverurl"
)

// The old server's URL schemes.
const (
	SchemePOP3S    = "pop3s"         // implicit TLS, port 995
	SchemePOP3     = "pop3"          // STLS required, port 110
	SchemeInsecure = "pop3+insecure" // no TLS at all: loopback and tests only
)

// Server is the old POP3 server.
type Server struct {
	Scheme string
	Host   string // host:port
	TLS    *tls.Config
	// Timeout bounds each command (and the connect); 0 means a minute.
	Timeout time.Duration
}

// ParseServer parses --from: pop3s://host[:995], pop3://host[:110] (STLS,
// required) or pop3+insecure://host[:110].
func ParseServer(s string) (*Server, error) {
	scheme, host, err := serverurl.Parse(s, pop3Ports, "pop3s://, pop3:// (STLS) or pop3+insecure://")
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	return &Server{Scheme: scheme, Host: host}, nil
}

// pop3Ports are the schemes of --from and their default ports.
var pop3Ports = map[string]string{SchemePOP3S: "995", SchemePOP3: "110", SchemeInsecure: "110"}

// pop3Client is the few POP3 commands an import needs (RFC 1939, RFC 2595
// STLS). It reads one response at a time, a line at a time; no line takes
// more than maxLine octets of memory.
type pop3Client struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

var (
	// errAuth is a login the old server refused.
	errAuth = errors.New("the old server refused the login")
	// errNegative is any other -ERR.
	errNegative = errors.New("the old server answered -ERR")
)

func dialPOP3(ctx context.Context, s *Server) (*pop3Client, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", s.Host)
	if err != nil {
		return nil, err
	}
	tlsConfig := func() *tls.Config {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.TLS != nil {
			cfg = s.TLS.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(s.Host)
		}
		return cfg
	}
	raw := conn
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	// handshake now, so that a certificate problem is reported as one
	// rather than as whatever command first needed the connection.
	handshake := func() error {
		tc := tls.Client(raw, tlsConfig())
		_ = raw.SetDeadline(time.Now().Add(timeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return fmt.Errorf("TLS: %w", err)
		}
		conn = tc
		return nil
	}
	if s.Scheme == SchemePOP3S {
		if err := handshake(); err != nil {
			return nil, err
		}
	}
	c := &pop3Client{conn: conn, r: bufio.NewReader(conn), timeout: timeout}
	if _, err := c.status(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if s.Scheme == SchemePOP3 {
		if _, err := c.cmd("STLS"); err != nil {
			conn.Close()
			return nil, fmt.Errorf("STLS (required with pop3://): %w", err)
		}
		if err := handshake(); err != nil {
			return nil, err
		}
		c.conn, c.r = conn, bufio.NewReader(conn)
	}
	return c, nil
}

// login sends USER and PASS. The password never appears in an error.
func (c *pop3Client) login(user, pass string) error {
	if strings.ContainsAny(user, "\r\n") || strings.ContainsAny(pass, "\r\n") {
		return errors.New("user or password contains a line break")
	}
	if _, err := c.cmd("USER " + user); err != nil {
		if errors.Is(err, errNegative) {
			return fmt.Errorf("%w (USER)", errAuth)
		}
		return err
	}
	if _, err := c.cmd("PASS " + pass); err != nil {
		if errors.Is(err, errNegative) {
			return errAuth
		}
		return err
	}
	return nil
}

// uidls returns UIDL's answer: message number -> unique-id.
func (c *pop3Client) uidls() (map[int]string, error) {
	out := map[int]string{}
	err := c.multi("UIDL", func(line []byte) error {
		n, id, ok := strings.Cut(strings.TrimSpace(string(line)), " ")
		num, err := strconv.Atoi(n)
		if !ok || err != nil || num < 1 {
			return fmt.Errorf("bad UIDL line %q", line)
		}
		out[num] = strings.TrimSpace(id)
		return nil
	})
	return out, err
}

// sizes returns LIST's answer: message number -> octets.
func (c *pop3Client) sizes() (map[int]int64, error) {
	out := map[int]int64{}
	err := c.multi("LIST", func(line []byte) error {
		n, sz, ok := strings.Cut(strings.TrimSpace(string(line)), " ")
		num, err1 := strconv.Atoi(n)
		size, err2 := strconv.ParseInt(strings.TrimSpace(sz), 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("bad LIST line %q", line)
		}
		out[num] = size
		return nil
	})
	return out, err
}

// top sends TOP n lines and passes the answer (header and lines body
// lines), un-stuffed, to f as a stream.
func (c *pop3Client) top(n, lines int, f func(io.Reader) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := f(pr)
		_, _ = io.Copy(io.Discard, pr) // f may stop early
		done <- err
	}()
	err := c.multi("TOP "+strconv.Itoa(n)+" "+strconv.Itoa(lines), func(line []byte) error {
		_, err := pw.Write(append(line, '\r', '\n'))
		return err
	})
	pw.CloseWithError(err)
	if ferr := <-done; err == nil {
		err = ferr
	}
	return err
}

func (c *pop3Client) quit() {
	_, _ = c.cmd("QUIT")
	c.conn.Close()
}

func (c *pop3Client) close() { c.conn.Close() }

// cmd sends one command and returns the +OK line.
func (c *pop3Client) cmd(line string) (string, error) {
	_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return "", err
	}
	return c.status()
}

func (c *pop3Client) status() (string, error) {
	b, err := c.line()
	if err != nil {
		return "", err
	}
	line := string(b)
	if !strings.HasPrefix(line, "+OK") {
		// The server's text is not shown: it could echo what was sent.
		return "", errNegative
	}
	return line, nil
}

// multi sends cmd and passes each line of the multi-line answer, without
// its line end and un-stuffed, to f.
func (c *pop3Client) multi(cmd string, f func([]byte) error) error {
	if _, err := c.cmd(cmd); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(cmd)[0], err)
	}
	var ferr error
	for {
		line, err := c.line()
		if err != nil {
			return err
		}
		if len(line) == 1 && line[0] == '.' {
			return ferr
		}
		if len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		if ferr == nil {
			ferr = f(line)
		}
	}
}

// maxLine bounds the part of one line kept in memory: far more than a
// status, UIDL or LIST line or anything a fingerprint reads (uidlmap
// reads header fields of a few KiB and the first 256 octets of a body),
// and it keeps a body line without line breaks (a binary part) or an
// endless line from a broken server out of memory.
const maxLine = 64 << 10

// line reads one line and returns it without its line end, cut to
// maxLine octets (the rest of the line is read and dropped).
func (c *pop3Client) line() ([]byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(c.timeout))
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := bytes.Clone(line)
		for errors.Is(err, bufio.ErrBufferFull) {
			_ = c.conn.SetReadDeadline(time.Now().Add(c.timeout))
			line, err = c.r.ReadSlice('\n')
			if room := maxLine - len(long); room > 0 {
				long = append(long, line[:min(room, len(line))]...)
			}
		}
		line = long
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}
