package pop3server

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// writeCounter counts the writes the server makes to each accepted
// connection.
type writeCounter struct {
	net.Listener
	writes atomic.Int64
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, n: &l.writes}, nil
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// TestPipelinedRepliesShareAFlush: commands that arrive together are
// answered with one write; a command that arrives alone is answered at
// once.
func TestPipelinedRepliesShareAFlush(t *testing.T) {
	srv := NewServer(newFake(), Options{Limits: Limits{AuthFailDelay: time.Millisecond}})
	wc := &writeCounter{}
	addr := serveOn(t, srv, func(l net.Listener) net.Listener { wc.Listener = l; return wc })
	c := dial(t, addr)
	loginAlice(c)

	before := wc.writes.Load()
	io.WriteString(c.Conn(), "STAT\r\nLIST 1\r\nUIDL 2\r\nNOOP\r\n")
	c.Expect("+OK 3 *", "+OK 1 *", "+OK 2 uid2", "+OK")
	if n := wc.writes.Load() - before; n != 1 {
		t.Errorf("4 pipelined commands answered in %d writes, want 1", n)
	}

	before = wc.writes.Load()
	for range 3 {
		c.Send("NOOP")
		c.Expect("+OK")
	}
	if n := wc.writes.Load() - before; n != 3 {
		t.Errorf("3 commands sent one at a time answered in %d writes, want 3", n)
	}
}

// TestIdleSessionsHoldNoWriter: a session waiting for its next command
// has given its reply buffer back.
func TestIdleSessionsHoldNoWriter(t *testing.T) {
	waitHeld := func(want int64) { // the 2-minute bound is a hang guard, not the assertion
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); writersHeld.Load() != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d reply writers held, want %d", writersHeld.Load(), want)
			}
		}
	}
	waitHeld(0) // connections of earlier tests have ended
	_, addr := startServer(t, newFake(), Options{})
	var clients []*pop3client.Client
	for range 10 {
		c := dial(t, addr)
		loginAlice(c)
		c.Send("STAT")
		c.Expect("+OK 3 *")
		clients = append(clients, c)
	}
	waitHeld(0)
	// A long reply and an error reply on a held session still work.
	c := clients[0]
	c.Send("RETR 2")
	c.Expect("+OK *")
	c.Multiline()
	c.Send("RETR 9")
	c.Expect("-ERR *")
	waitHeld(0)
	c.Send("QUIT")
	c.Expect("+OK popbridge signing off")
	c.ExpectClosed()
}
