package faultnet

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// dialTimeout bounds the relay's own connect to the target.
const dialTimeout = 5 * time.Second

// relayConn is one client connection and its connection to the target.
type relayConn struct {
	r      *Relay
	client net.Conn
	server net.Conn // nil until dialled

	mu        sync.Mutex // guards server against close
	closeOnce sync.Once
	done      chan struct{} // closed by close
	forwarded [2]atomic.Int64
}

func (c *relayConn) run(mode AcceptMode) {
	defer c.close(false)
	if mode == AcceptHang {
		// Never answer, but notice the client leaving, as a hung
		// server's kernel would.
		_, _ = io.Copy(io.Discard, c.client)
		return
	}
	server, err := net.DialTimeout("tcp", c.r.target, dialTimeout)
	if err != nil {
		c.close(true) // the target is down: so are we
		return
	}
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		server.Close()
		return
	default:
		c.server = server
	}
	c.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pump(ToServer, c.client, server) }()
	go func() { defer wg.Done(); c.pump(ToClient, server, c.client) }()
	wg.Wait()
}

// close ends both sides once; reset sends RST instead of FIN.
func (c *relayConn) close(reset bool) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		server := c.server
		close(c.done)
		c.mu.Unlock()
		for _, nc := range []net.Conn{c.client, server} {
			if nc == nil {
				continue
			}
			if reset {
				resetConn(nc)
			} else {
				nc.Close()
			}
		}
	})
}

// pump copies src to dst under the faults of direction d. It returns when
// src ends (after half-closing dst, so the other direction can finish),
// when a write fails, or when the connection is closed.
func (c *relayConn) pump(d Direction, src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		f, changed := c.r.snapshot(d)
		// Stall before reading too, so the sender feels TCP flow control.
		if f, changed = c.waitStall(d, f, changed); c.isDone() {
			return
		}
		max := len(buf)
		if f.BytesPerSecond > 0 {
			// Small chunks keep a throttled stream smooth.
			max = min(max, f.BytesPerSecond/20+1)
		}
		n, rerr := src.Read(buf[:max])
		arrived := time.Now()
		if n > 0 {
			f, changed = c.r.snapshot(d)
			if f, _ = c.waitStall(d, f, changed); c.isDone() {
				return
			}
			if !c.forward(d, f, dst, buf[:n], arrived) {
				return
			}
		}
		if rerr != nil {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			} else {
				c.close(false)
			}
			return
		}
	}
}

// waitStall blocks while d is stalled, returning the faults in force once
// it is not (or once the connection is closed).
func (c *relayConn) waitStall(d Direction, f Faults, changed <-chan struct{}) (Faults, <-chan struct{}) {
	for f.Stall {
		select {
		case <-changed:
		case <-c.done:
			return f, changed
		}
		f, changed = c.r.snapshot(d)
	}
	return f, changed
}

// forward delivers p (received at arrived) to dst under f. It returns
// false when the connection is finished.
func (c *relayConn) forward(d Direction, f Faults, dst net.Conn, p []byte, arrived time.Time) bool {
	if f.BlackHole {
		return true
	}
	if f.Latency > 0 && !c.sleep(time.Until(arrived.Add(f.Latency))) {
		return false
	}
	limit, reset := f.limit()
	cut := false
	if limit > 0 {
		left := limit - c.forwarded[d].Load()
		if left <= int64(len(p)) {
			p, cut = p[:max(left, 0)], true
		}
	}
	if f.OneByteWrites {
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
	}
	for len(p) > 0 {
		k := len(p)
		if f.OneByteWrites {
			k = 1
		}
		start := time.Now()
		n, err := dst.Write(p[:k])
		c.forwarded[d].Add(int64(n))
		if err != nil {
			c.close(false)
			return false
		}
		p = p[k:]
		if f.BytesPerSecond > 0 {
			due := time.Duration(int64(n) * int64(time.Second) / int64(f.BytesPerSecond))
			if !c.sleep(due - time.Since(start)) {
				return false
			}
		}
	}
	if cut {
		c.close(reset)
		return false
	}
	return true
}

// sleep waits for d or until the connection closes; false means closed.
func (c *relayConn) sleep(d time.Duration) bool {
	if d <= 0 {
		return !c.isDone()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	}
}

func (c *relayConn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}
