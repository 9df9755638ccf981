package admin

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func serveLimited(t *testing.T) string {
	t.Helper()
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(Handler(Options{}), nil)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func getOn(t *testing.T, c net.Conn, path string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.Status
}

// A header beyond MaxHeaderBytes is refused without being read whole.
func TestHeaderLimit(t *testing.T) {
	addr := serveLimited(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %s for a 64 KiB header", resp.Status)
	}
}

// At most MaxConns connections are served at once; the next waits until
// one of them goes, then is served.
func TestConnectionCap(t *testing.T) {
	addr := serveLimited(t)
	var conns []net.Conn
	for range MaxConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if s := getOn(t, c, "/livez"); s != "200 OK" {
			t.Fatalf("status %s", s)
		}
		conns = append(conns, c) // kept alive, idle
	}
	extra, err := net.Dial("tcp", addr) // completes in the kernel backlog
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	fmt.Fprintf(extra, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
	extra.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := extra.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Fatal("a connection beyond the cap was served")
	}
	conns[0].Close()
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(extra), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after a slot freed: %v %v", resp, err)
	}
}

// The server's limits are the documented ones.
func TestServerLimits(t *testing.T) {
	s := NewServer(http.NotFoundHandler(), nil)
	if s.MaxHeaderBytes != 8<<10 || s.ReadHeaderTimeout <= 0 || s.IdleTimeout <= 0 || s.IdleTimeout > time.Minute ||
		s.ReadTimeout <= 0 || s.WriteTimeout <= 0 {
		t.Fatalf("limits %+v", s)
	}
}
