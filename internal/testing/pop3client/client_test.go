package pop3client

import (
	"errors"
	"net"
	"testing"
	"time"
)

// serve runs script on the server end of a pipe and returns a Client on
// the other end.
func serve(t *testing.T, o Options, script func(net.Conn)) *Client {
	t.Helper()
	cl, srv := net.Pipe()
	go func() {
		defer srv.Close()
		script(srv)
	}()
	return New(t, cl, o)
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		got, pattern string
		want         bool
	}{
		{"+OK ready", "+OK*", true},
		{"+OK ready", "+OK ready", true},
		{"+OK ready", "+OK", false},
		{"-ERR no", "+OK*", false},
	} {
		if got := Match(tc.got, tc.pattern); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.got, tc.pattern, got, tc.want)
		}
	}
}

func TestExchange(t *testing.T) {
	c := serve(t, Options{Deadline: 5 * time.Second, StrictBody: true}, func(s net.Conn) {
		s.Write([]byte("+OK hi\r\n"))
		buf := make([]byte, 64)
		n, _ := s.Read(buf)
		if string(buf[:n]) != "CAPA\r\n" {
			s.Write([]byte("-ERR what\r\n"))
			return
		}
		s.Write([]byte("+OK caps\r\nUSER\r\nSASL PLAIN\r\n.\r\n"))
		s.Read(buf)
		s.Write([]byte("+OK body\r\n..dot\r\nplain\r\n.\r\n"))
		s.Read(buf)
		s.Write([]byte("+OK cut\r\nhalf"))
	})
	c.Expect("+OK*")
	if caps := c.Capa(); !HasCap(caps, "SASL") || HasCap(caps, "STLS") || len(caps) != 2 {
		t.Fatalf("Capa = %q", caps)
	}
	c.OK("RETR 1")
	if got := string(c.Multiline()); got != ".dot\r\nplain\r\n" {
		t.Fatalf("Multiline = %q", got)
	}
	if st, body, err := c.TryMulti("RETR 2"); st != "+OK cut" || string(body) != "" || !errors.Is(err, ErrNoDot) {
		t.Fatalf("TryMulti of a cut body = %q, %q, %v; want ErrNoDot", st, body, err)
	}
	if c.BytesRead() == 0 {
		t.Fatal("BytesRead = 0")
	}
}

func TestLineWithoutCRLF(t *testing.T) {
	c := serve(t, Options{Deadline: 5 * time.Second}, func(s net.Conn) { s.Write([]byte("+OK bare\n")) })
	if _, err := c.Line(); !errors.Is(err, ErrNoCRLF) {
		t.Fatalf("Line of a bare-LF line: %v, want ErrNoCRLF", err)
	}
}

func TestClosed(t *testing.T) {
	c := serve(t, Options{CloseTimeout: 5 * time.Second}, func(s net.Conn) {})
	if closed, rest := c.Closed(); !closed || rest != "" {
		t.Fatalf("Closed = %v, %q", closed, rest)
	}
	c = serve(t, Options{CloseTimeout: 5 * time.Second}, func(s net.Conn) { s.Write([]byte("more\r\n")) })
	if closed, _ := c.Closed(); closed {
		t.Fatal("Closed after data = true")
	}
}
