package upstream

import (
	"bufio"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeServer is a scripted IMAP server for what imapmemserver cannot do:
// stalls, odd greetings, STARTTLS misbehaviour. handle gets each command
// line (tag and rest split) and writes the responses; returning false
// closes the connection.
type fakeServer struct {
	addr string
	mu   sync.Mutex
	seen []string // command lines received, without tags
}

type fakeConn struct {
	net.Conn
	r *bufio.Reader
	t *testing.T
}

func (c *fakeConn) send(lines ...string) {
	for _, l := range lines {
		if _, err := c.Write([]byte(l + "\r\n")); err != nil {
			return
		}
	}
}

// startTLS upgrades the server side.
func (c *fakeConn) startTLS(cfg *tls.Config) {
	tc := tls.Server(c.Conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Logf("fake server TLS handshake: %v", err)
		return
	}
	c.Conn = tc
	c.r = bufio.NewReader(tc)
}

func startFake(t *testing.T, greeting string, handle func(c *fakeConn, tag, cmd string) bool) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
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
				c := &fakeConn{Conn: nc, r: bufio.NewReader(nc), t: t}
				c.send(greeting)
				for {
					line, err := c.r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					tag, cmd, _ := strings.Cut(line, " ")
					s.mu.Lock()
					s.seen = append(s.seen, cmd)
					s.mu.Unlock()
					if !handle(c, tag, cmd) {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *fakeServer) url() *URL { return &URL{Scheme: SchemeInsecure, Host: s.addr} }

func (s *fakeServer) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// basicIMAP answers the commands of a login to a mailbox with one message
// of size octets. handled is false for other commands; keep is false
// after LOGOUT.
func basicIMAP(c *fakeConn, tag, cmd string, size int) (handled, keep bool) {
	up := strings.ToUpper(cmd)
	switch {
	case strings.HasPrefix(up, "CAPABILITY"):
		c.send("* CAPABILITY IMAP4rev1 AUTH=PLAIN", tag+" OK done")
	case strings.HasPrefix(up, "LOGIN "):
		c.send(tag + " OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in")
	case strings.HasPrefix(up, "SELECT "):
		c.send("* 1 EXISTS", "* OK [UIDVALIDITY 7] ok", "* OK [UIDNEXT 2] ok", tag+" OK [READ-WRITE] selected")
	case strings.HasPrefix(up, "UID FETCH 1:* "):
		c.send("* 1 FETCH (UID 1 RFC822.SIZE "+strconv.Itoa(size)+" FLAGS ())", tag+" OK done")
	case strings.HasPrefix(up, "LOGOUT"):
		c.send("* BYE bye", tag+" OK bye")
		return true, false
	case strings.HasPrefix(up, "NOOP"):
		c.send(tag + " OK noop")
	default:
		return false, true
	}
	return true, true
}
