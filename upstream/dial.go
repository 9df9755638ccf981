package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// maxPreauthLine bounds one response line before login, literals included.
const maxPreauthLine = 64 << 10

// link is one upstream IMAP connection: our raw progressConn at the bottom,
// TLS (if any) above it, and the go-imap client on top.
type link struct {
	raw    *progressConn
	client *imapclient.Client
	// caps are the capabilities before login, after TLS.
	caps imap.CapSet
	// greeting is the server's first line (for Identify).
	greeting string
	// bodies exempts literals from maxLiteral while a body streams.
	bodies atomic.Bool

	// conn and guard are the secured stream go-imap was handed: a
	// released client (release.go) is resumed on them.
	conn  net.Conn
	guard *guardReader
}

// dialConfig is what dial needs from Options.
type dialConfig struct {
	url            *URL
	tls            *tls.Config // nil: system roots
	dialTimeout    time.Duration
	commandTimeout time.Duration
	id             *idParams // nil: do not send ID
}

// idParams are the RFC 2971 ID fields Dovecot reads from a trusted proxy
// (login_trusted_networks) to log and rate-limit the real client.
type idParams struct {
	remote, local netip.AddrPort
}

// dial connects, secures and greets the upstream, and returns a link ready
// for LOGIN, armed: the caller disarms it once the login phase is over.
//
// The part before LOGIN (greeting, STARTTLS, CAPABILITY, ID) is spoken here
// rather than by go-imap because go-imap can send ID with its standard
// fields only, and because its STARTTLS keeps plain-text bytes the server
// sent after the OK (a response injection); here they fail the connection.
// go-imap is then started on the secured stream with a greeting that
// carries the capabilities we learnt.
func dial(ctx context.Context, cfg dialConfig) (*link, error) {
	d := net.Dialer{Timeout: max(cfg.dialTimeout, 0)} // negative: disabled
	nc, err := d.DialContext(ctx, "tcp", cfg.url.Host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", cfg.url, err)
	}
	l := &link{raw: newProgressConn(nc, cfg.commandTimeout)}
	l.raw.arm()
	stop := context.AfterFunc(ctx, func() { l.raw.Close() })
	defer stop()
	if err := l.handshake(ctx, cfg); err != nil {
		l.raw.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return nil, fmt.Errorf("%s: %w", cfg.url, err)
	}
	return l, nil
}

func (l *link) handshake(ctx context.Context, cfg dialConfig) error {
	tlsConfig := clientTLS(cfg)
	implicit := cfg.url.Scheme == SchemeIMAPS
	if implicit {
		tlsConfig.NextProtos = []string{"imap"} // ALPN, for implicit TLS only
	}
	s, err := l.secure(ctx, implicit, tlsConfig, "TLS handshake")
	if err != nil {
		return err
	}
	greeting, err := readLine(s.br)
	if err != nil {
		return fmt.Errorf("reading greeting: %w", err)
	}
	caps, err := parseGreeting(greeting)
	if err != nil {
		return err
	}
	l.greeting = greeting
	if cfg.url.Scheme == SchemeIMAP {
		if s, err = l.startTLS(ctx, s, caps, tlsConfig); err != nil {
			return err
		}
		caps = nil // RFC 3501 6.2.1: capabilities before TLS are void
	}
	if caps == nil {
		if caps, err = s.capability(); err != nil {
			return err
		}
	}
	if !caps.Has(imap.CapIMAP4rev1) && !caps.Has(imap.CapIMAP4rev2) {
		return errors.New("server is neither IMAP4rev1 nor IMAP4rev2")
	}
	l.caps = caps
	if cfg.id != nil && caps.Has(imap.CapID) {
		if args := cfg.id.args(); args != "" {
			// ID is advisory: a NO or BAD is no reason to fail the login.
			if _, err := command(s.conn, s.br, "P3", "ID "+args); err != nil && !isStatus(err) {
				return fmt.Errorf("ID: %w", err)
			}
		}
	}
	return l.handOver(s, caps)
}

// clientTLS is the upstream TLS configuration of cfg: the caller's (the
// roots of --upstream-ca), the URL's host as the server name unless set,
// and TLS 1.2 at least.
func clientTLS(cfg dialConfig) *tls.Config {
	tc := cfg.tls.Clone()
	if tc == nil {
		tc = &tls.Config{}
	}
	if tc.ServerName == "" {
		tc.ServerName = cfg.url.hostname()
	}
	tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	return tc
}

// preStream is the connection before go-imap takes it over: what we write
// to and the buffered, guarded reader of what the server sends.
type preStream struct {
	conn  net.Conn
	guard *guardReader
	br    *bufio.Reader
}

// secure returns the stream over the raw connection, after a TLS
// handshake if tlsOn (implicit TLS, or after STARTTLS); what names the
// handshake in errors.
func (l *link) secure(ctx context.Context, tlsOn bool, tc *tls.Config, what string) (preStream, error) {
	var c net.Conn = l.raw
	if tlsOn {
		t := tls.Client(c, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return preStream{}, fmt.Errorf("%s: %w", what, err)
		}
		c = t
	}
	guard := &guardReader{r: c, bodies: &l.bodies, lineEnd: true}
	return preStream{conn: c, guard: guard, br: bufio.NewReader(guard)}, nil
}

// startTLS upgrades an imap:// connection: STARTTLS is required and
// fail-closed, and bytes the server sent before the handshake are a
// response injection, never read as the server's.
func (l *link) startTLS(ctx context.Context, s preStream, caps imap.CapSet, tc *tls.Config) (preStream, error) {
	if caps != nil && !caps.Has(imap.CapStartTLS) {
		return s, errors.New("STARTTLS not offered; refusing to log in without TLS")
	}
	if _, err := command(s.conn, s.br, "P1", "STARTTLS"); err != nil {
		return s, fmt.Errorf("STARTTLS: %w", err)
	}
	if s.br.Buffered() > 0 {
		return s, errors.New("STARTTLS: server sent data before the TLS handshake (response injection?)")
	}
	return l.secure(ctx, true, tc, "STARTTLS handshake")
}

// capability asks for the capabilities the greeting did not carry.
func (s preStream) capability() (imap.CapSet, error) {
	untagged, err := command(s.conn, s.br, "P2", "CAPABILITY")
	if err != nil {
		return nil, fmt.Errorf("CAPABILITY: %w", err)
	}
	var caps imap.CapSet
	for _, line := range untagged {
		if rest, ok := cutPrefixFold(line, "* CAPABILITY "); ok {
			caps = parseCaps(rest)
		}
	}
	if caps == nil {
		return nil, errors.New("CAPABILITY: no capability list in the response")
	}
	return caps, nil
}

// handOver gives the stream to go-imap: a synthetic greeting with the
// capabilities we learnt, whatever the server already sent that s.br
// holds, then the rest of the stream through the same guard.
func (l *link) handOver(s preStream, caps imap.CapSet) error {
	leftover, _ := s.br.Peek(s.br.Buffered())
	r := io.MultiReader(
		strings.NewReader("* OK [CAPABILITY "+joinCaps(caps)+"] popbridge upstream ready\r\n"),
		bytes.NewReader(bytes.Clone(leftover)),
		s.guard,
	)
	l.conn, l.guard = s.conn, s.guard
	return l.start(r)
}

// start runs a go-imap client reading r (a greeting, then the stream) and
// writing to l.conn, and waits for it to take the greeting.
func (l *link) start(r io.Reader) error {
	l.client = imapclient.New(&handedConn{Conn: l.conn, r: r, l: l}, nil)
	if err := l.client.WaitGreeting(); err != nil {
		l.client.Close()
		return fmt.Errorf("greeting: %w", err)
	}
	return nil
}

// handedConn is what go-imap reads and writes: the plain-text stream with
// our buffered prefix in front. Its deadlines end at progressConn, which
// ignores them.
type handedConn struct {
	net.Conn
	r io.Reader
	l *link
}

func (c *handedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// Close closes the stream, except while the client is being released
// (between progressConn's interrupt and reopen): go-imap closes its
// connection when its reader fails, and that failure is the release's own
// doing.
func (c *handedConn) Close() error {
	if c.l.raw.parking.Load() {
		return nil
	}
	return c.Conn.Close()
}

// statusError is a tagged NO or BAD before login.
type statusError struct{ line string }

func (e *statusError) Error() string { return "server answered " + e.line }

func isStatus(err error) bool {
	var s *statusError
	return errors.As(err, &s)
}

// command sends "tag cmd" and reads up to the tagged response, returning
// the untagged lines. A NO or BAD is a *statusError; an untagged BYE fails.
func command(w io.Writer, br *bufio.Reader, tag, cmd string) ([]string, error) {
	if _, err := io.WriteString(w, tag+" "+cmd+"\r\n"); err != nil {
		return nil, err
	}
	var untagged []string
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if rest, ok := cutPrefixFold(line, tag+" "); ok {
			if _, ok := cutPrefixFold(rest, "OK"); ok {
				return untagged, nil
			}
			return untagged, &statusError{line: truncate(line)}
		}
		if _, ok := cutPrefixFold(line, "* BYE"); ok {
			return nil, fmt.Errorf("server closed: %s", truncate(line))
		}
		untagged = append(untagged, line)
	}
}

// readLine reads one response line without its CRLF. Literals inside it
// are read and kept inline; the whole is bounded by maxPreauthLine.
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxPreauthLine {
			return "", errResponseTooLong
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		n, ok := literalAtEnd(buf[:len(buf)-1])
		if !ok {
			return string(bytes.TrimRight(buf, "\r\n")), nil
		}
		if n > maxPreauthLine-int64(len(buf)) {
			return "", errResponseTooLong
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(br, lit); err != nil {
			return "", err
		}
		buf = append(buf, lit...)
	}
}

// parseGreeting accepts "* OK" and returns the capabilities it carries,
// nil if none.
func parseGreeting(line string) (imap.CapSet, error) {
	if rest, ok := cutPrefixFold(line, "* OK"); ok {
		rest = strings.TrimLeft(rest, " ")
		if code, ok := cutPrefixFold(rest, "[CAPABILITY "); ok {
			if end := strings.IndexByte(code, ']'); end >= 0 {
				return parseCaps(code[:end]), nil
			}
		}
		return nil, nil
	}
	if _, ok := cutPrefixFold(line, "* PREAUTH"); ok {
		// We must log in with the POP3 user's own credentials.
		return nil, errors.New("server greeted with PREAUTH; refusing a session we did not authenticate")
	}
	return nil, fmt.Errorf("server refused the connection: %s", truncate(line))
}

func parseCaps(s string) imap.CapSet {
	caps := make(imap.CapSet)
	for _, f := range strings.Fields(s) {
		caps[canonicalCap(f)] = struct{}{}
	}
	return caps
}

// canonicalCap spells a capability as go-imap does: upper case, except
// IMAP4rev1 and IMAP4rev2.
func canonicalCap(s string) imap.Cap {
	for _, c := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIMAP4rev2} {
		if strings.EqualFold(s, string(c)) {
			return c
		}
	}
	return imap.Cap(strings.ToUpper(s))
}

func joinCaps(caps imap.CapSet) string {
	l := make([]string, 0, len(caps))
	for c := range caps {
		l = append(l, string(c))
	}
	sort.Strings(l)
	return strings.Join(l, " ")
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// truncate keeps upstream text in our logs short.
func truncate(s string) string {
	const n = 200
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// args is the parenthesized ID list, or "" when there is nothing to send.
func (p *idParams) args() string {
	var kv []string
	add := func(prefix string, ap netip.AddrPort) {
		if ap.IsValid() {
			kv = append(kv,
				strconv.Quote("x-"+prefix+"-ip"), strconv.Quote(ap.Addr().Unmap().String()),
				strconv.Quote("x-"+prefix+"-port"), strconv.Quote(strconv.Itoa(int(ap.Port()))))
		}
	}
	add("originating", p.remote)
	add("connected", p.local)
	if len(kv) == 0 {
		return ""
	}
	return "(" + strings.Join(kv, " ") + ")"
}
