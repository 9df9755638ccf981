package faultnet

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Relay accepts TCP connections on a loopback port and relays each to a
// target address, applying the Faults set for each direction. Every method
// is safe for concurrent use; Set and SetAccept take effect on open
// connections at their next chunk.
type Relay struct {
	target string
	addr   string // our listening address, kept across Down and Up

	mu      sync.Mutex
	ln      net.Listener // nil while Down
	faults  [2]Faults
	changed chan struct{} // closed and replaced by every change of faults
	accept  AcceptMode
	conns   map[*relayConn]struct{}
	closed  bool

	accepted atomic.Int64
	wg       sync.WaitGroup
}

// Listen starts a relay on a free port of 127.0.0.1 that forwards to
// target ("host:port").
func Listen(target string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultnet: listen: %w", err)
	}
	r := &Relay{
		target:  target,
		addr:    ln.Addr().String(),
		ln:      ln,
		changed: make(chan struct{}),
		conns:   make(map[*relayConn]struct{}),
	}
	r.startAccepting(ln)
	return r, nil
}

// Addr is the address clients connect to, "127.0.0.1:port".
func (r *Relay) Addr() string { return r.addr }

// Target is the address the relay forwards to.
func (r *Relay) Target() string { return r.target }

// Set replaces the faults of direction d.
func (r *Relay) Set(d Direction, f Faults) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults[d] = f
	close(r.changed)
	r.changed = make(chan struct{})
}

// Faults returns the faults of direction d.
func (r *Relay) Faults(d Direction) Faults {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.faults[d]
}

// Clear removes every fault in both directions and forwards new
// connections again; a relay that is Down stays down.
func (r *Relay) Clear() {
	r.Set(ToServer, Faults{})
	r.Set(ToClient, Faults{})
	r.SetAccept(AcceptForward)
}

// SetAccept decides what happens to connections accepted from now on.
func (r *Relay) SetAccept(m AcceptMode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accept = m
}

// Down closes the listening socket, so that new connections are refused
// (ECONNREFUSED) as when the target host is up but its server is not.
// Open connections are left alone; see CutAll and ResetAll.
func (r *Relay) Down() {
	r.mu.Lock()
	ln := r.ln
	r.ln = nil
	r.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
}

// Up listens again on the same address after Down.
func (r *Relay) Up() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("faultnet: relay closed")
	}
	if r.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("faultnet: listen again on %s: %w", r.addr, err)
	}
	r.ln = ln
	r.startAccepting(ln)
	return nil
}

// CutAll closes every open connection (FIN to both sides).
func (r *Relay) CutAll() { r.each(func(c *relayConn) { c.close(false) }) }

// ResetAll resets every open connection (RST to both sides).
func (r *Relay) ResetAll() { r.each(func(c *relayConn) { c.close(true) }) }

func (r *Relay) each(f func(*relayConn)) {
	r.mu.Lock()
	conns := make([]*relayConn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	for _, c := range conns {
		f(c)
	}
}

// Active is the number of connections open through the relay.
func (r *Relay) Active() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// Accepted is the number of connections accepted since Listen.
func (r *Relay) Accepted() int64 { return r.accepted.Load() }

// WaitIdle waits until no connection is open through the relay, for at
// most timeout, and reports whether it got there. Tests use it to prove
// that the client side closed every connection it opened.
func (r *Relay) WaitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if r.Active() == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close stops listening, closes every connection and waits for the
// relay's goroutines to return.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	ln := r.ln
	r.ln = nil
	r.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	r.CutAll()
	r.wg.Wait()
	return nil
}

// snapshot returns the faults of d and a channel closed at their next
// change.
func (r *Relay) snapshot(d Direction) (Faults, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.faults[d], r.changed
}

func (r *Relay) startAccepting(ln net.Listener) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.acceptLoop(ln)
	}()
}

func (r *Relay) acceptLoop(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return // closed by Down or Close
		}
		r.accepted.Add(1)
		r.mu.Lock()
		mode, closed := r.accept, r.closed
		r.mu.Unlock()
		switch {
		case closed || mode == AcceptReset:
			resetConn(nc)
			continue
		}
		c := &relayConn{r: r, client: nc, done: make(chan struct{})}
		if !r.track(c) {
			resetConn(nc)
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.untrack(c)
			c.run(mode)
		}()
	}
}

func (r *Relay) track(c *relayConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c *relayConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

// resetConn closes nc with SO_LINGER 0, which sends RST instead of FIN.
func resetConn(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = nc.Close()
}
