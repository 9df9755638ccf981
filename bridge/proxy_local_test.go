package bridge

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/pop3server"
)

// balancerListener makes every accepted connection come from the
// balancer's address, whatever loopback address the test dialled from.
type balancerListener struct {
	net.Listener
	addr netip.Addr
}

func (l balancerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return balancerConn{c, &net.TCPAddr{IP: l.addr.AsSlice(), Port: 40000}}, nil
}

type balancerConn struct {
	net.Conn
	remote net.Addr
}

func (c balancerConn) RemoteAddr() net.Addr { return c.remote }

// A PROXY v1 "UNKNOWN" or v2 "LOCAL" header from a trusted balancer
// carries no client address, so the connection is treated as coming from
// the balancer itself: it gets a cleartext login exactly when the
// balancer's own address would (--plaintext-auth local: only from a
// private one), never because of the header.
func TestProxyUnknownAndLocalUseTheBalancersAddress(t *testing.T) {
	local, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}).Format()
	if err != nil {
		t.Fatal(err)
	}
	headers := map[string][]byte{
		"v1 UNKNOWN":            []byte("PROXY UNKNOWN\r\n"),
		"v1 UNKNOWN, addresses": []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
		"v2 LOCAL":              local,
	}
	for _, tc := range []struct {
		balancer  string
		plaintext bool
	}{
		{"203.0.113.9", false}, // a public balancer address: no cleartext, header or not
		{"10.0.0.9", true},     // a private one: cleartext, as for the balancer itself
	} {
		for name, header := range headers {
			t.Run(tc.balancer+" "+name, func(t *testing.T) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr := l.Addr().String()
				trusted := []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr(tc.balancer), 32)}
				pl := wrapProxyProtocol(balancerListener{l, netip.MustParseAddr(tc.balancer)}, trusted, time.Second, zerolog.Nop())
				// No backend call is made: only CAPA and USER are sent.
				srv := pop3server.NewServer(nil, pop3server.Options{PlaintextAuth: pop3server.PlaintextLocal})
				go srv.Serve(pl)
				t.Cleanup(func() { srv.Close() })

				c := pop3client.Dial(t, addr, pop3client.Options{Deadline: 10 * time.Second, Prefix: header})
				c.Expect("+OK*")
				if got := pop3client.HasCap(c.Capa(), "USER"); got != tc.plaintext {
					t.Errorf("CAPA offers USER: %v, want %v", got, tc.plaintext)
				}
				reply := c.Cmd("USER alice")
				if ok := reply == "+OK"; ok != tc.plaintext {
					t.Errorf("USER answered %q", reply)
				}

				// A real client address in a header decides for itself.
				c2 := pop3client.Dial(t, addr, pop3client.Options{Deadline: 10 * time.Second,
					Prefix: []byte("PROXY TCP4 192.168.1.20 192.0.2.1 40001 110\r\n")})
				c2.Expect("+OK*")
				if !pop3client.HasCap(c2.Capa(), "USER") {
					t.Error("a private client address behind the balancer gets no cleartext login")
				}
			})
		}
	}
}
