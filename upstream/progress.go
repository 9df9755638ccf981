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

	// parking is set while the go-imap client is being released
	// (release.go): every Read fails with errReleased, never touching the
	// connection, and interrupted records that one did.
	parking     atomic.Bool
	interrupted atomic.Bool
}

// errReleased is what go-imap's reader gets while its client is released.
// It is a temporary net.Error so crypto/tls, which makes other read errors
// permanent, leaves the TLS connection usable for the next client; and it
// is not a deadline error, so it never sticks in expired.
var errReleased net.Error = releasedError{}

type releasedError struct{}

func (releasedError) Error() string   { return "upstream client released while idle" }
func (releasedError) Timeout() bool   { return true }
func (releasedError) Temporary() bool { return true }

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
	// deadline on an idle connection, nor undo interrupt's.
	if c.armed && !c.parking.Load() {
		_ = c.Conn.SetDeadline(now.Add(c.timeout))
		c.pushed.Store(now.UnixNano())
	}
}

func (c *progressConn) Read(b []byte) (int, error) {
	if c.parking.Load() {
		c.interrupted.Store(true)
		return 0, errReleased
	}
	if err := c.expired.Load(); err != nil {
		return 0, *err
	}
	c.progress()
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.progress()
	}
	if err != nil && c.parking.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		// interrupt's deadline, not a stalled command.
		c.interrupted.Store(true)
		return n, errReleased
	}
	c.expire(err)
	return n, err
}

// interrupt makes the Read go-imap's reader is blocked in, and every later
// Read, fail with errReleased, until reopen. The past deadline wakes a
// Read already waiting; one that starts later sees parking first.
func (c *progressConn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted.Store(false)
	c.parking.Store(true)
	_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
}

// reopen ends interrupt: the read deadline is again the armed one, or
// none. It reports whether a Read was interrupted.
func (c *progressConn) reopen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.parking.Store(false)
	if c.armed {
		now := time.Now()
		_ = c.Conn.SetReadDeadline(now.Add(c.timeout))
		c.pushed.Store(now.UnixNano())
	} else {
		_ = c.Conn.SetReadDeadline(time.Time{})
	}
	return c.interrupted.Load()
}

// isArmed reports whether a command of ours is outstanding.
func (c *progressConn) isArmed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.armed
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
