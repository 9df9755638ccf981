package upstream

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// progressConn is the raw upstream connection. go-imap arms absolute
// deadlines (30 s per response, 5 min per literal, and a read deadline even
// while idle); those would kill a 100 MiB RETR to a slow POP3 client and an
// upstream connection idling between POP3 commands. So progressConn ignores
// every deadline its users set and keeps its own: while armed (a command of
// ours is outstanding), each Read or Write pushes the deadline to now+timeout,
// so only a command that makes no progress for timeout fails; while
// disarmed there is no deadline at all.
type progressConn struct {
	net.Conn
	timeout time.Duration
	// every is how stale the deadline may get before a Read or Write
	// pushes it again: re-arming on every 4 KiB read would cost a timer
	// reset each time.
	every time.Duration

	mu     sync.Mutex   // serializes arm, disarm and pushes
	armed  bool         // guarded by mu
	pushed atomic.Int64 // UnixNano of the last push; 0 while disarmed
	// expired holds the first deadline error: from then on every Read
	// and Write fails with it at once. go-imap's decoder reads again
	// after an error (bufio hands an error out once), and each new Read
	// would push the deadline, multiplying the timeout.
	expired atomic.Pointer[error]
}

func newProgressConn(c net.Conn, timeout time.Duration) *progressConn {
	return &progressConn{Conn: c, timeout: timeout, every: min(time.Second, timeout/4)}
}

// arm starts the no-progress timeout for a command we issue; a timeout
// of zero or less is disabled (Options.CommandTimeout negative).
func (c *progressConn) arm() {
	if c.timeout <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = true
	now := time.Now()
	_ = c.Conn.SetDeadline(now.Add(c.timeout))
	c.pushed.Store(now.UnixNano())
}

// disarm lifts the deadline once no command of ours is outstanding.
func (c *progressConn) disarm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	c.pushed.Store(0)
	_ = c.Conn.SetDeadline(time.Time{})
}

func (c *progressConn) progress() {
	last := c.pushed.Load()
	if last == 0 {
		return
	}
	now := time.Now()
	if now.UnixNano()-last < int64(c.every) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Re-check under the lock: a push racing with disarm must not leave a
	// deadline on an idle connection.
	if c.armed {
		_ = c.Conn.SetDeadline(now.Add(c.timeout))
		c.pushed.Store(now.UnixNano())
	}
}

func (c *progressConn) Read(b []byte) (int, error) {
	if err := c.expired.Load(); err != nil {
		return 0, *err
	}
	c.progress()
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.progress()
	}
	c.expire(err)
	return n, err
}

func (c *progressConn) Write(b []byte) (int, error) {
	if err := c.expired.Load(); err != nil {
		return 0, *err
	}
	c.progress()
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.progress()
	}
	c.expire(err)
	return n, err
}

// expire makes a deadline error stick.
func (c *progressConn) expire(err error) {
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.expired.CompareAndSwap(nil, &err)
	}
}

// SetDeadline ignores go-imap's (and crypto/tls's) deadlines; see the type
// comment.
func (c *progressConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline ignores the deadline; see SetDeadline.
func (c *progressConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline ignores the deadline; see SetDeadline.
func (c *progressConn) SetWriteDeadline(time.Time) error { return nil }
