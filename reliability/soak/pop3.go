package soak

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// errNoDot is a multi-line answer cut off before its terminating dot.
var errNoDot = pop3client.ErrNoDot

// dialPOP3 connects and reads a +OK greeting; timeout bounds the dial and
// every read and write. The soak's clients use the tests' POP3 client
// through its core, which needs no testing.TB and reports exactly what it
// saw.
func dialPOP3(addr string, timeout time.Duration) (*pop3client.Client, error) {
	return pop3client.TryDial(addr, pop3client.Options{DialTimeout: timeout, OpTimeout: timeout, ReadBuffer: 16 << 10})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// listing is UIDL and LIST joined: message n is entries[n-1].
type entry struct {
	uid, validity uint32
	size          int64
}

func listing(c *pop3client.Client) ([]entry, error) {
	st, uidl, err := c.TryMulti("UIDL")
	if err != nil || !strings.HasPrefix(st, "+OK") {
		return nil, fmt.Errorf("UIDL: %q %v", st, err)
	}
	st, list, err := c.TryMulti("LIST")
	if err != nil || !strings.HasPrefix(st, "+OK") {
		return nil, fmt.Errorf("LIST: %q %v", st, err)
	}
	ul, ll := splitLines(uidl), splitLines(list)
	if len(ul) != len(ll) {
		return nil, fmt.Errorf("UIDL lists %d messages, LIST %d", len(ul), len(ll))
	}
	out := make([]entry, len(ul))
	for i := range ul {
		var n int
		var id string
		if _, err := fmt.Sscanf(ul[i], "%d %s", &n, &id); err != nil || n != i+1 || len(id) != 16 {
			return nil, fmt.Errorf("UIDL line %q", ul[i])
		}
		// %08Xu%08Xv, the default --uidl-format.
		uid, err1 := strconv.ParseUint(id[:8], 16, 32)
		v, err2 := strconv.ParseUint(id[8:], 16, 32)
		var m int
		var size int64
		_, err3 := fmt.Sscanf(ll[i], "%d %d", &m, &size)
		if err1 != nil || err2 != nil || err3 != nil || m != n {
			return nil, fmt.Errorf("UIDL/LIST lines %q / %q", ul[i], ll[i])
		}
		out[i] = entry{uid: uint32(uid), validity: uint32(v), size: size}
	}
	return out, nil
}

func splitLines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\r\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\r\n")
}
