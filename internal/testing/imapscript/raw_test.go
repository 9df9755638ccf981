package imapscript

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/certs"
)

// TestRawSTARTTLS: the raw mode plays a script, upgrades to TLS on the
// test's word, and records the command lines and the octets it received.
func TestRawSTARTTLS(t *testing.T) {
	server, client := certs.Configs(t)
	r := NewRaw(t, nil, Serve("* OK raw", func(c *RawConn, tag, cmd string) bool {
		switch cmd {
		case "STARTTLS":
			c.Send(tag + " OK begin TLS")
			return c.StartTLS(server)
		case "LOGOUT":
			c.Send("* BYE", tag+" OK bye")
			return false
		}
		c.Send(tag + " OK " + cmd)
		return true
	}))
	nc, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	line := func() string {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	if g := line(); g != "* OK raw" {
		t.Fatalf("greeting %q", g)
	}
	nc.Write([]byte("a STARTTLS\r\n"))
	if l := line(); l != "a OK begin TLS" {
		t.Fatalf("STARTTLS: %q", l)
	}
	tc := tls.Client(nc, client)
	br = bufio.NewReader(tc)
	nc = tc
	nc.Write([]byte("b NOOP secret\r\nc LOGOUT\r\n"))
	if l := line(); l != "b OK NOOP secret" {
		t.Fatalf("after TLS: %q", l)
	}
	line()
	line()
	if got := strings.Join(r.Commands(), "|"); got != "STARTTLS|NOOP secret|LOGOUT" {
		t.Fatalf("commands %q", got)
	}
	if got := r.Received(); !strings.Contains(got, "b NOOP secret\r\n") {
		t.Fatalf("received %q, want the decrypted commands", got)
	}
}
