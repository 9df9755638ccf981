package ticketkeys

import (
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/certs"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// A new key every period, the previous one accepted for one more period,
// none kept after an idle gap.
func TestRotation(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	r := New(0, clk.now)
	k1 := r.Keys()
	if len(k1) != 1 {
		t.Fatalf("%d keys at start, want 1", len(k1))
	}
	clk.advance(DefaultPeriod - time.Second)
	if k := r.Keys(); len(k) != 1 || k[0] != k1[0] {
		t.Fatal("rotated before a day")
	}
	clk.advance(time.Second)
	k2 := r.Keys()
	if len(k2) != 2 || k2[0] == k1[0] || k2[1] != k1[0] {
		t.Fatal("after a day: want a new current key and the old one second")
	}
	clk.advance(DefaultPeriod)
	k3 := r.Keys()
	if len(k3) != 2 || k3[1] != k2[0] || k3[0] == k2[0] || k3[0] == k1[0] {
		t.Fatal("after two days: want a third key and the second as previous; the first gone")
	}
	clk.advance(3 * DefaultPeriod) // nobody connected for three days
	k4 := r.Keys()
	if len(k4) != 1 || k4[0] == k3[0] {
		t.Fatal("after an idle gap: want only a fresh key")
	}
}

// On a real TLS server: a ticket sealed before one rotation still
// resumes; after a second rotation it does not (full handshake).
func TestResumptionAcrossRotations(t *testing.T) {
	certPEM, keyPEM, _ := certs.Files(t, "", "server")
	cert, err := tls.LoadX509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	srvCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	New(0, clk.now).Install(srvCfg)

	l, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Write([]byte("x")) // TLS 1.3 tickets arrive after the handshake
				c.Close()
			}()
		}
	}()

	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cache := tls.NewLRUClientSessionCache(4)
		dial := func() bool {
			t.Helper()
			c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true,
				ClientSessionCache: cache, MinVersion: version, MaxVersion: version})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Read(make([]byte, 1))
			return c.ConnectionState().DidResume
		}
		if dial() {
			t.Fatal("resumed without a ticket")
		}
		if !dial() {
			t.Fatalf("TLS %x: no resumption with a fresh ticket", version)
		}
		clk.advance(DefaultPeriod) // one rotation: the ticket's key is the previous one
		if !dial() {
			t.Fatalf("TLS %x: a ticket sealed before one rotation did not resume", version)
		}
		// That resumption got a ticket under the new key; two rotations
		// later its key is gone.
		clk.advance(2 * DefaultPeriod)
		if dial() {
			t.Fatalf("TLS %x: a ticket resumed after its key was retired", version)
		}
	}
}
