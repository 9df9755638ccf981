package bridge

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"
)

// proxyHeaderTimeout bounds how long a trusted peer (a load balancer) may
// take to send its PROXY header; load balancers send it with the first
// segment, so this only matters for a misconfigured one.
const proxyHeaderTimeout = 5 * time.Second

// wrapProxyProtocol accepts HAProxy PROXY v1/v2 headers (--proxy-protocol)
// on l, so that limits, penalties, the plaintext-auth rule and logs see the
// real client address. The rules, the same as Dovecot's
// haproxy_trusted_networks:
//
//   - A peer inside a --proxy-protocol network MUST send a header (REQUIRE):
//     a connection from the load balancer without one would otherwise be
//     served as if the load balancer were the client, pooling every user
//     behind one address in the per-IP limits. It is closed, without a
//     greeting, after proxyHeaderTimeout (or the pre-login idle timeout,
//     if shorter). A v2 LOCAL header (health checks) and a v1 UNKNOWN
//     header (a balancer that could not tell the client's address, e.g. a
//     non-TCP or unknown-family client) are accepted and carry no address:
//     the connection is then treated as coming from the balancer itself
//     (go-proxyproto's RemoteAddr falls back to the peer). So it gets a
//     cleartext login exactly when the balancer's own address would
//     (--plaintext-auth local: only a private one), and all such
//     connections share the balancer's per-IP limits and penalties
//     [TestProxyUnknownAndLocalUseTheBalancersAddress].
//   - A peer outside them is served directly, and a header it sends is
//     rejected (REJECT): the connection is closed, so a client cannot
//     choose its own address.
//
// Without --proxy-protocol it returns l unchanged.
func wrapProxyProtocol(l net.Listener, trusted []netip.Prefix, preLoginIdle time.Duration, log zerolog.Logger) net.Listener {
	if len(trusted) == 0 {
		return l
	}
	timeout := proxyHeaderTimeout
	if preLoginIdle > 0 && preLoginIdle < timeout {
		timeout = preLoginIdle
	}
	return &proxyListener{
		Listener: l,
		trusted:  trusted,
		timeout:  timeout,
		log:      log.With().Str("component", "proxy-protocol").Str("listener", l.Addr().String()).Logger(),
	}
}

// proxyListener decides per connection, by the peer's address, whether a
// PROXY header is required or refused. Accept never reads from the
// connection: the header is read in the session's goroutine, on its first
// RemoteAddr, Read or Write, so a slow peer cannot stall the accept loop.
type proxyListener struct {
	net.Listener
	trusted []netip.Prefix
	timeout time.Duration
	log     zerolog.Logger
}

func (l *proxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	peer := peerAddr(c)
	if l.isTrusted(peer.Addr()) {
		pc := proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE),
			proxyproto.SetReadHeaderTimeout(l.timeout))
		return &trustedConn{Conn: pc, raw: c, peer: peer, log: &l.log, accepted: time.Now(), timeout: l.timeout}, nil
	}
	// No header timeout: POP3 is server-speaks-first, so waiting for
	// bytes before the greeting would stall every direct client. The
	// check runs on the client's first bytes instead, after the greeting,
	// under the session's own read deadline.
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REJECT),
		proxyproto.SetReadHeaderTimeout(0))
	return &untrustedConn{Conn: c, pp: pc, peer: peer, log: &l.log}, nil
}

func (l *proxyListener) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func peerAddr(c net.Conn) netip.AddrPort {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// trustedConn is a load balancer's connection: addresses come from its
// header. A missing or malformed header fails every Read and Write.
type trustedConn struct {
	*proxyproto.Conn
	raw      net.Conn
	peer     netip.AddrPort
	log      *zerolog.Logger
	logged   sync.Once
	accepted time.Time
	timeout  time.Duration
}

func (c *trustedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.noteHeaderError(err)
	return n, err
}

func (c *trustedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.noteHeaderError(err)
	return n, err
}

// noteHeaderError logs, once, a connection from a trusted network that
// failed for want of a valid header: the usual sign of a load balancer not
// configured with send-proxy(-v2), or of a trusted network set too wide.
func (c *trustedConn) noteHeaderError(err error) {
	if err == nil || c.Conn.ProxyHeader() != nil {
		return
	}
	c.logged.Do(func() {
		ev := c.log.Warn()
		if errors.Is(err, proxyproto.ErrNoProxyProtocol) && time.Since(c.accepted) < c.timeout {
			// Closed by the peer before the header was due: a TCP
			// health check or a port scan, not worth a warning.
			ev = c.log.Debug()
		}
		ev.Err(err).Str("peer", c.peer.String()).
			Msg("closing connection from a --proxy-protocol network without a valid PROXY header")
	})
}

func (c *trustedConn) CloseWrite() error { return closeWrite(c.raw) }

// untrustedConn is a direct client: its bytes pass through, but if they
// start with a PROXY header the connection fails.
type untrustedConn struct {
	net.Conn // the raw connection: Write, addresses, deadlines, Close
	pp       *proxyproto.Conn
	peer     netip.AddrPort
	log      *zerolog.Logger
	logged   sync.Once
}

// Read goes through go-proxyproto, which looks for a header in the first
// bytes. A client whose first line is a lone CRLF waits for a few more
// bytes (the v2 signature starts with CRLF); real clients send a command.
func (c *untrustedConn) Read(b []byte) (int, error) {
	n, err := c.pp.Read(b)
	if err != nil && c.pp.ProxyHeader() == nil && isHeaderError(err) {
		c.logged.Do(func() {
			c.log.Warn().Err(err).Str("client_ip", c.peer.Addr().String()).
				Msg("PROXY header from a peer outside --proxy-protocol rejected")
		})
	}
	return n, err
}

func (c *untrustedConn) CloseWrite() error { return closeWrite(c.Conn) }

// isHeaderError tells go-proxyproto's verdicts (a header where none is
// allowed, or a malformed one) from I/O errors: all of its errors, and
// only those, start with "proxyproto:".
func isHeaderError(err error) bool {
	return errors.Is(err, proxyproto.ErrSuperfluousProxyHeader) || strings.HasPrefix(err.Error(), "proxyproto:")
}

// closeWrite half-closes when the connection can, so pop3server's last
// words are not destroyed by a reset (see its closeGracefully).
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
