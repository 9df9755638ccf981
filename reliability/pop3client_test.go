package reliability

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// opTimeout bounds every read of the test client, so that a hung bridge
// fails the test instead of hanging it.
const opTimeout = 60 * time.Second

// errNoDot is a multi-line response that ended, connection closed, before
// its terminating dot: what a client must see when a RETR fails after +OK.
var errNoDot = pop3client.ErrNoDot

var clientOptions = pop3client.Options{DialTimeout: opTimeout, OpTimeout: opTimeout}

// dialPOP3 connects and reads the greeting.
func dialPOP3(t testing.TB, addr string) *pop3client.Client {
	t.Helper()
	c, err := tryDialPOP3(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetTB(t)
	return c
}

// tryDialPOP3 connects and reads a +OK greeting; the caller closes it.
func tryDialPOP3(addr string) (*pop3client.Client, error) {
	return pop3client.TryDial(addr, clientOptions)
}

// quit sends QUIT, expects want and closes the connection.
func quit(c *pop3client.Client, want string) string {
	c.TB().Helper()
	r := c.CmdPrefix("QUIT", want)
	c.Close()
	return r
}

// isReset: a reset, or the test closed the connection itself.
func isReset(err error) bool {
	return pop3client.IsReset(err) || errors.Is(err, net.ErrClosed)
}
