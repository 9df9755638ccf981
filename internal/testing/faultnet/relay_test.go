package faultnet

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// target is a scripted server behind the relay: each connection runs fn.
type target struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startTarget(t *testing.T, fn func(net.Conn)) *target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{ln: ln}
	tg.wg.Add(1)
	go func() {
		defer tg.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tg.wg.Add(1)
			go func() {
				defer tg.wg.Done()
				defer c.Close()
				fn(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); tg.wg.Wait() })
	return tg
}

func echo(c net.Conn) { _, _ = io.Copy(c, c) }

// sendThenClose writes p and closes.
func sendThenClose(p []byte) func(net.Conn) {
	return func(c net.Conn) { _, _ = c.Write(p) }
}

func newRelay(t *testing.T, tg *target) *Relay {
	t.Helper()
	r, err := Listen(tg.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func dial(t *testing.T, r *Relay) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads until EOF or error, with an overall deadline.
func readAll(t *testing.T, c net.Conn, d time.Duration) ([]byte, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	var buf bytes.Buffer
	_, err := io.Copy(&buf, c)
	return buf.Bytes(), err
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	return p
}

func TestForwardsBothWays(t *testing.T) {
	r := newRelay(t, startTarget(t, echo))
	c := dial(t, r)
	msg := pattern(100 << 10)
	go func() { c.Write(msg); c.(*net.TCPConn).CloseWrite() }()
	got, err := readAll(t, c, 5*time.Second)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through relay: %d octets, err %v; want %d octets back", len(got), err, len(msg))
	}
	if r.Accepted() != 1 {
		t.Errorf("Accepted = %d, want 1", r.Accepted())
	}
}

func TestLatency(t *testing.T) {
	r := newRelay(t, startTarget(t, echo))
	r.Set(ToClient, Faults{Latency: 150 * time.Millisecond})
	c := dial(t, r)
	start := time.Now()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("round trip %v, want at least the 150ms latency", el)
	}
}

func TestBandwidth(t *testing.T) {
	msg := pattern(20 << 10)
	r := newRelay(t, startTarget(t, sendThenClose(msg)))
	r.Set(ToClient, Faults{BytesPerSecond: 40 << 10})
	c := dial(t, r)
	start := time.Now()
	got, err := readAll(t, c, 10*time.Second)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("got %d octets, err %v", len(got), err)
	}
	// 20 KiB at 40 KiB/s: half a second at the very least.
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Errorf("20 KiB at 40 KiB/s took %v", el)
	}
}

func TestStallAndResume(t *testing.T) {
	r := newRelay(t, startTarget(t, echo))
	c := dial(t, r)
	r.Set(ToServer, Faults{Stall: true})
	c.Write([]byte("held"))
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 4)
	if n, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read while stalled: %d octets, err %v; want a timeout", n, err)
	}
	r.Clear()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "held" {
		t.Fatalf("after resume: %q, %v", buf, err)
	}
}

func TestBlackHole(t *testing.T) {
	r := newRelay(t, startTarget(t, echo))
	c := dial(t, r)
	r.Set(ToServer, Faults{BlackHole: true})
	c.Write(pattern(64 << 10)) // never blocks: the relay keeps reading
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through black hole: %d octets, err %v", n, err)
	}
	// Give the relay time to swallow what was sent before clearing.
	time.Sleep(50 * time.Millisecond)
	r.Set(ToServer, Faults{})
	c.Write([]byte("after"))
	buf := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "after" {
		t.Fatalf("after the black hole: %q, %v", buf, err)
	}
}

func TestCutAfter(t *testing.T) {
	msg := pattern(10000)
	r := newRelay(t, startTarget(t, func(c net.Conn) {
		c.Write(msg)
		io.Copy(io.Discard, c) // keep the target open: the relay must cut
	}))
	r.Set(ToClient, Faults{CutAfter: 1234})
	c := dial(t, r)
	got, err := readAll(t, c, 5*time.Second)
	if err != nil {
		t.Fatalf("cut: err %v, want a clean EOF", err)
	}
	if !bytes.Equal(got, msg[:1234]) {
		t.Fatalf("cut: got %d octets, want the first 1234", len(got))
	}
	if !r.WaitIdle(2 * time.Second) {
		t.Fatal("connection still open after the cut")
	}
}

func TestResetAfter(t *testing.T) {
	msg := pattern(10000)
	r := newRelay(t, startTarget(t, func(c net.Conn) {
		c.Write(msg)
		io.Copy(io.Discard, c)
	}))
	r.Set(ToClient, Faults{ResetAfter: 100, CutAfter: 5000})
	c, err := net.DialTimeout("tcp", r.Addr(), 2*time.Second)
	if errors.Is(err, syscall.ECONNRESET) {
		return // the reset beat the dial's own completion check
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := readAll(t, c, 5*time.Second)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reset: err %v, want ECONNRESET", err)
	}
	// The kernel may drop received octets on RST; never more than 100.
	if len(got) > 100 || !bytes.Equal(got, msg[:len(got)]) {
		t.Fatalf("reset: got %d octets", len(got))
	}
}

// TestOneByteWrites: a 200-octet write leaves the relay as 200 writes of
// one octet, and arrives intact over TCP. The slicing is counted on
// net.Pipe, where every write is its own read: over TCP the receiver's
// kernel may coalesce the segments into one read whenever the reader runs
// later than the relay writes (a loaded machine), so a count of reads
// there proves nothing.
func TestOneByteWrites(t *testing.T) {
	msg := pattern(200)
	r := newRelay(t, startTarget(t, sendThenClose(msg)))
	r.Set(ToClient, Faults{OneByteWrites: true, Latency: time.Millisecond})
	c := dial(t, r)
	if got, err := readAll(t, c, 5*time.Second); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("over TCP: got %q, %v; want the message intact", got, err)
	}

	// The same direction's pump between two pipes.
	srcFar, src := net.Pipe()
	dst, dstFar := net.Pipe()
	rc := &relayConn{r: r, done: make(chan struct{})}
	pumped := make(chan struct{})
	go func() { defer close(pumped); rc.pump(ToClient, src, dst) }()
	go func() { _, _ = srcFar.Write(msg); srcFar.Close() }()
	dstFar.SetReadDeadline(time.Now().Add(time.Minute)) // a hang guard only
	var got []byte
	reads := 0
	buf := make([]byte, 1024)
	for len(got) < len(msg) {
		n, err := dstFar.Read(buf)
		if err != nil {
			t.Fatalf("after %d octets: %v", len(got), err)
		}
		reads++
		got = append(got, buf[:n]...)
	}
	dstFar.Close()
	<-pumped
	if !bytes.Equal(got, msg) {
		t.Fatalf("through the pump: got %q", got)
	}
	if reads != len(msg) {
		t.Errorf("one write of %d octets left the relay in %d write(s); want one per octet", len(msg), reads)
	}
}

func TestAcceptModes(t *testing.T) {
	r := newRelay(t, startTarget(t, sendThenClose([]byte("* OK hello\r\n"))))

	r.SetAccept(AcceptReset)
	expectPromptEnd(t, r, "AcceptReset")

	r.SetAccept(AcceptHang)
	c := dial(t, r)
	if got, err := readAll(t, c, 200*time.Millisecond); len(got) != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("AcceptHang: got %q, err %v; want silence", got, err)
	}
	if r.Active() != 1 {
		t.Errorf("AcceptHang: Active = %d, want 1", r.Active())
	}
	r.CutAll()
	if !r.WaitIdle(2 * time.Second) {
		t.Fatal("CutAll left connections open")
	}

	r.SetAccept(AcceptForward)
	c = dial(t, r)
	if got, err := readAll(t, c, 2*time.Second); string(got) != "* OK hello\r\n" || err != nil {
		t.Fatalf("AcceptForward: got %q, err %v", got, err)
	}
}

func TestDownUp(t *testing.T) {
	r := newRelay(t, startTarget(t, sendThenClose([]byte("hi"))))
	r.Down()
	if c, err := net.DialTimeout("tcp", r.Addr(), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial while down: %v, want ECONNREFUSED", err)
	}
	if err := r.Up(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, r)
	if got, err := readAll(t, c, 2*time.Second); string(got) != "hi" || err != nil {
		t.Fatalf("after Up: %q, %v", got, err)
	}
}

func TestTargetDownResetsClient(t *testing.T) {
	tg := startTarget(t, echo)
	r := newRelay(t, tg)
	tg.ln.Close()
	expectPromptEnd(t, r, "target down")
}

// expectPromptEnd dials r and expects the connection to end at once
// without data: the RST may even fail the dial itself.
func expectPromptEnd(t *testing.T, r *Relay, what string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.Addr(), 2*time.Second)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s: dial: %v", what, err)
		}
		return
	}
	defer c.Close()
	if got, err := readAll(t, c, 2*time.Second); len(got) != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: got %q, err %v; want nothing and a prompt end", what, got, err)
	}
}

func TestSwitchMidStream(t *testing.T) {
	r := newRelay(t, startTarget(t, echo))
	c := dial(t, r)
	buf := make([]byte, 3)
	roundTrip := func(s string) error {
		if _, err := c.Write([]byte(s)); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := io.ReadFull(c, buf)
		return err
	}
	if err := roundTrip("one"); err != nil {
		t.Fatal(err)
	}
	r.Set(ToClient, Faults{Stall: true})
	if err := roundTrip("two"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled mid-stream: %v", err)
	}
	r.Set(ToClient, Faults{})
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "two" {
		t.Fatalf("resumed: %q %v", buf, err)
	}
	r.Set(ToServer, Faults{CutAfter: 1}) // already past: cut at the next chunk
	c.Write([]byte("xyz"))
	if _, err := readAll(t, c, 2*time.Second); err != nil {
		t.Fatalf("cut mid-stream: %v", err)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	r, err := Listen(startTarget(t, echo).ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r.Set(ToClient, Faults{Stall: true})
	for range 3 {
		c := dial(t, r)
		c.Write([]byte("x"))
	}
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on stalled connections")
	}
	if _, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		t.Fatal("relay still accepting after Close")
	}
}
