package security

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// dialFrom connects to addr from the loopback address from (all of
// 127.0.0.0/8 reaches lo) and reads the greeting.
func dialFrom(t *testing.T, addr, from string) *pop3client.Client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	c := wrap(t, nc)
	c.Expect("+OK*")
	return c
}

// A flood of idle unauthenticated connections — 60 addresses × 10 (the
// per-address cap), three times the unauthenticated slots, re-opened as
// soon as popbridge closes them — while real users log in from their own
// addresses and retrieve their mail against a real Dovecot: every real
// session is served. Before, such a flood filled --max-sessions in about a
// second and every real client got "-ERR [SYS/TEMP] too many connections".
// The caps are scaled down (200 unauthenticated of 300 in all) so the test
// is light; the mechanism is the same at the defaults (1000 of 5000).
func TestPreLoginFloodServesRealUsers(t *testing.T) {
	var users []testenv.User
	for i := range 20 {
		users = append(users, testenv.User{Name: fmt.Sprintf("user%d", i), Password: fmt.Sprintf("pw%d", i)})
	}
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: users})
	msg := "Subject: hello\r\n\r\nmail for you\r\n"
	for _, u := range users {
		d.Append(t, u.Name, "INBOX", []byte(msg))
	}
	b := startBridge(t, "--upstream", "imap+insecure://"+d.IMAPAddr, "--max-sessions", "300", "--max-prelogin-conns", "200")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opened, refused atomic.Int64
	for i := range 60 {
		from := fmt.Sprintf("127.0.1.%d", 1+i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each flooder keeps 10 idle connections open, replacing any
			// that popbridge closes; a byte now and then is all it costs.
			conns := make(chan struct{}, 10)
			for {
				select {
				case <-stop:
					return
				case conns <- struct{}{}:
				}
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
				nc, err := d.Dial("tcp", b.POP3)
				if err != nil {
					<-conns
					time.Sleep(10 * time.Millisecond)
					continue
				}
				opened.Add(1)
				go func() {
					defer func() {
						time.Sleep(200 * time.Millisecond) // reconnect soon, not in a hot loop
						<-conns
					}()
					defer nc.Close()
					buf := make([]byte, 512)
					for {
						nc.SetReadDeadline(time.Now().Add(time.Second))
						n, err := nc.Read(buf)
						if n > 0 && strings.HasPrefix(string(buf[:n]), "-ERR") {
							refused.Add(1)
						}
						select {
						case <-stop:
							return
						default:
						}
						if err != nil && !isTimeout(err) {
							return // closed by popbridge: reconnect
						}
					}
				}()
			}
		}()
	}
	t.Cleanup(func() { close(stop); wg.Wait() })

	// Let the flood fill the unauthenticated slots first.
	deadline := time.Now().Add(30 * time.Second)
	for opened.Load() < 400 {
		if time.Now().After(deadline) {
			t.Fatalf("the flood opened only %d connections", opened.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}

	served := 0
	for i, u := range users {
		c := dialFrom(t, b.POP3, fmt.Sprintf("127.0.2.%d", 1+i))
		c.Login(u.Name, u.Password)
		c.Send("RETR 1")
		c.Expect("+OK*")
		if got := string(c.Multiline()); got != msg {
			t.Fatalf("%s: RETR 1 = %q", u.Name, got)
		}
		c.Send("QUIT")
		c.Expect("+OK*")
		served++
	}
	t.Logf("%d of %d real sessions served; the flood opened %d connections, %d closed with -ERR",
		served, len(users), opened.Load(), refused.Load())
	if refused.Load() == 0 {
		t.Error("no flood connection was ever closed: the flood did not fill the server")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// Eleven users behind one address (a NAT, a balancer without PROXY
// protocol), more than the per-address cap of 10, are all logged in at once
// and served by a real Dovecot: the per-address cap counts unauthenticated
// connections only.
func TestElevenUsersFromOneAddress(t *testing.T) {
	var users []testenv.User
	for i := range 11 {
		users = append(users, testenv.User{Name: fmt.Sprintf("nat%d", i), Password: fmt.Sprintf("natpw%d", i)})
	}
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: users})
	for _, u := range users {
		d.Append(t, u.Name, "INBOX", []byte("Subject: "+u.Name+"\r\n\r\nbody\r\n"))
	}
	b := startBridge(t, "--upstream", "imap+insecure://"+d.IMAPAddr) // default --max-conns-per-ip 10
	var sessions []*pop3client.Client
	for _, u := range users {
		c := dialFrom(t, b.POP3, "127.0.0.7")
		c.Login(u.Name, u.Password)
		sessions = append(sessions, c)
	}
	for i, c := range sessions {
		c.Send("RETR 1")
		c.Expect("+OK*")
		if got := string(c.Multiline()); !strings.HasPrefix(got, "Subject: "+users[i].Name+"\r\n") {
			t.Fatalf("%s got %q", users[i].Name, got)
		}
	}
	for _, c := range sessions {
		c.Send("QUIT")
		c.Expect("+OK*")
	}
}
