package main

import (
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/certs"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

func proxyV1(src string, srcPort int) []byte {
	fam := "TCP4"
	if strings.Contains(src, ":") {
		fam = "TCP6"
	}
	dst := "192.0.2.1"
	if fam == "TCP6" {
		dst = "2001:db8::1"
	}
	return []byte("PROXY " + fam + " " + src + " " + dst + " " + strconv.Itoa(srcPort) + " 110\r\n")
}

func proxyV2(t *testing.T, src string, srcPort int) []byte {
	t.Helper()
	ip := net.ParseIP(src)
	tp, dst := proxyproto.TCPv4, net.ParseIP("192.0.2.1")
	if ip.To4() == nil {
		tp, dst = proxyproto.TCPv6, net.ParseIP("2001:db8::1")
	}
	h := &proxyproto.Header{
		Version: 2, Command: proxyproto.PROXY, TransportProtocol: tp,
		SourceAddr:      &net.TCPAddr{IP: ip, Port: srcPort},
		DestinationAddr: &net.TCPAddr{IP: dst, Port: 110},
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpsProxyTrusted: PROXY v1 and v2 headers from a trusted peer carry
// the real client address into the logs, the plaintext-auth decision and
// the per-IP limit.
func TestOpsProxyTrusted(t *testing.T) {
	cert, key, _ := certs.Files(t, "", "server")
	p := opsStart(t, bridgeproc.Binary(t), "--demo", "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
		"--tls-cert", cert, "--tls-key", key,
		"--proxy-protocol", "127.0.0.1/32,::1/128", "--plaintext-auth", "local",
		"--max-conns-per-ip", "1", "--prelogin-idle-timeout", "1s")

	for _, tc := range []struct {
		name   string
		header []byte
		ip     string
		port   int
	}{
		{"v1 IPv4", proxyV1("203.0.113.7", 40001), "203.0.113.7", 40001},
		{"v1 IPv6", proxyV1("2001:db8:1::7", 40002), "2001:db8:1::7", 40002},
		{"v2 IPv4", proxyV2(t, "203.0.113.8", 40003), "203.0.113.8", 40003},
		{"v2 IPv6", proxyV2(t, "2001:db8:2::8", 40004), "2001:db8:2::8", 40004},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := opsDial(t, p.POP3, tc.header)
			c.MustLine("+OK")
			// The client is public and not on TLS: no cleartext login.
			if caps := c.Capa(); pop3client.HasCap(caps, "USER") || !pop3client.HasCap(caps, "STLS") {
				t.Errorf("CAPA for public %s over plain text = %v, want no USER, with STLS", tc.ip, caps)
			}
			if s := c.Cmd("USER demo"); !strings.HasPrefix(s, "-ERR") {
				t.Errorf("USER from public %s without TLS: %s", tc.ip, s)
			}
			c.OK("QUIT")
			p.WaitLog(map[string]string{"event": "session_end", "client_ip": tc.ip, "client_port": strconv.Itoa(tc.port)}, 5*time.Second)
		})
	}

	t.Run("private address via header", func(t *testing.T) {
		c := opsDial(t, p.POP3, proxyV2(t, "10.1.2.3", 40010))
		c.MustLine("+OK")
		if caps := c.Capa(); !pop3client.HasCap(caps, "USER") {
			t.Errorf("CAPA for private 10.1.2.3 = %v, want USER", caps)
		}
		c.OK("USER demo")
		c.OK("PASS demo")
		c.OK("QUIT")
		p.WaitLog(map[string]string{"event": "session_end", "client_ip": "10.1.2.3", "user": "demo", "result": "quit"}, 5*time.Second)
	})

	t.Run("per-IP limit uses the real address", func(t *testing.T) {
		first := opsDial(t, p.POP3, proxyV1("198.51.100.20", 1000))
		first.MustLine("+OK")
		same := opsDial(t, p.POP3, proxyV1("198.51.100.20", 1001))
		same.MustLine("-ERR [SYS/TEMP]")
		other := opsDial(t, p.POP3, proxyV1("198.51.100.21", 1002))
		other.MustLine("+OK")
		first.OK("QUIT")
		other.OK("QUIT")
	})

	t.Run("implicit TLS after a v2 header", func(t *testing.T) {
		raw, err := net.DialTimeout("tcp", p.POP3S, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if _, err := raw.Write(proxyV2(t, "203.0.113.9", 40020)); err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) // the test's own throwaway cert
		c := pop3client.New(t, tc, opsClient)
		c.MustLine("+OK")
		if caps := c.Capa(); !pop3client.HasCap(caps, "USER") {
			t.Errorf("CAPA over TLS = %v, want USER", caps)
		}
		c.OK("USER demo")
		c.OK("PASS demo")
		c.OK("QUIT")
		p.WaitLog(map[string]string{"event": "session_end", "client_ip": "203.0.113.9", "tls": "true", "result": "quit"}, 5*time.Second)
	})

	t.Run("STLS after a v1 header", func(t *testing.T) {
		c := opsDial(t, p.POP3, proxyV1("203.0.113.10", 40030))
		c.MustLine("+OK")
		c.OK("STLS")
		tc := tls.Client(c.Conn(), &tls.Config{InsecureSkipVerify: true}) // the test's own throwaway cert
		c.Upgrade(tc)
		if caps := c.Capa(); !pop3client.HasCap(caps, "USER") {
			t.Errorf("CAPA after STLS = %v, want USER", caps)
		}
		c.OK("USER demo")
		c.OK("PASS demo")
		c.OK("QUIT")
		p.WaitLog(map[string]string{"event": "session_end", "client_ip": "203.0.113.10", "tls": "true", "result": "quit"}, 5*time.Second)
	})

	t.Run("v2 LOCAL header (health check)", func(t *testing.T) {
		h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
		b, err := h.Format()
		if err != nil {
			t.Fatal(err)
		}
		c := opsDial(t, p.POP3, b)
		c.MustLine("+OK")
		c.OK("QUIT")
		c.Conn().Close()
		p.WaitLog(map[string]string{"event": "session_end", "client_ip": "127.0.0.1", "result": "quit"}, 5*time.Second)
	})

	t.Run("trusted peer without a header is refused", func(t *testing.T) {
		c := opsDial(t, p.POP3, nil)
		if closed, got := c.Closed(); !closed {
			t.Fatalf("connection without PROXY header from a trusted peer got %q, want a close without greeting", got)
		}
		p.WaitLog(map[string]string{"component": "proxy-protocol", "level": "warn"}, 5*time.Second)
	})
}

// TestOpsProxyUntrusted: a peer outside --proxy-protocol is served as
// itself, and a header it sends gets the connection closed.
func TestOpsProxyUntrusted(t *testing.T) {
	p := opsStart(t, bridgeproc.Binary(t), "--demo", "--listen", "127.0.0.1:0",
		"--proxy-protocol", "192.0.2.0/24", "--plaintext-auth", "local")

	for _, tc := range []struct {
		name   string
		header []byte
	}{
		{"v1", proxyV1("203.0.113.7", 40001)},
		{"v2", proxyV2(t, "203.0.113.7", 40001)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := p.CountLog(map[string]string{"component": "proxy-protocol", "client_ip": "127.0.0.1"})
			c := opsDial(t, p.POP3, append(tc.header, "CAPA\r\n"...))
			c.MustLine("+OK") // the greeting goes out before the client's first bytes are read
			if closed, got := c.Closed(); !closed {
				t.Fatalf("header from an untrusted peer: got %q, want the connection closed", got)
			}
			waitFor(t, "the rejection log line", func() bool {
				return p.CountLog(map[string]string{"component": "proxy-protocol", "client_ip": "127.0.0.1"}) > before
			})
			if n := p.CountLog(map[string]string{"client_ip": "203.0.113.7"}); n != 0 {
				t.Fatalf("the forged address reached %d log lines", n)
			}
		})
	}

	t.Run("no header", func(t *testing.T) {
		c := opsDial(t, p.POP3, nil)
		c.MustLine("+OK")
		if caps := c.Capa(); !pop3client.HasCap(caps, "USER") {
			t.Errorf("CAPA for a loopback client = %v, want USER", caps)
		}
		c.OK("USER demo")
		c.OK("PASS demo")
		c.OK("QUIT")
		p.WaitLog(map[string]string{"event": "session_end", "client_ip": "127.0.0.1", "result": "quit"}, 5*time.Second)
	})
}
