package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// pipeLink is a link handed over to go-imap on one end of a net.Pipe; the
// test plays the server on the other. A pipe's Write returns once the
// client has read the octets, so what the test wrote has reached the
// guard when the next step begins.
func pipeLink(t *testing.T) (*link, net.Conn, *bufio.Reader) {
	t.Helper()
	cc, sc := net.Pipe()
	l := &link{raw: newProgressConn(cc, time.Minute)}
	s, err := l.secure(context.Background(), false, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.handOver(s, imap.CapSet{imap.CapIMAP4rev1: {}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.raw.Close()
		sc.Close()
		if l.client != nil {
			l.client.Close()
		}
	})
	return l, sc, bufio.NewReader(sc)
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// Released between two responses, the link resumes on the same stream:
// the new client's commands reach the server and their answers come back.
func TestReleaseResume(t *testing.T) {
	checkGoroutines(t)
	l, sc, sr := pipeLink(t)
	write(t, sc, "* 3 EXISTS\r\n* 1 FETCH (FLAGS (\\Seen) BODY[] {5}\r\nhello)\r\n")
	if err := l.release(); err != nil {
		t.Fatalf("release: %v", err)
	}
	if l.client != nil {
		t.Fatal("client kept")
	}
	for range 2 {
		if err := l.resume(imap.CapSet{imap.CapIMAP4rev1: {}}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- l.client.Noop().Wait() }()
		line, err := sr.ReadString('\n')
		if err != nil || !strings.HasSuffix(line, " NOOP\r\n") {
			t.Fatalf("server read %q, %v", line, err)
		}
		tag, _, _ := strings.Cut(line, " ")
		write(t, sc, tag+" OK done\r\n")
		if err := <-done; err != nil {
			t.Fatalf("NOOP after resume: %v", err)
		}
		if err := l.release(); err != nil {
			t.Fatalf("release again: %v", err)
		}
	}
}

// A server caught in the middle of a response (a line or a literal) makes
// the release fail: the stream's state is then unknown.
func TestReleaseUnclean(t *testing.T) {
	for _, partial := range []string{
		"* 4 EXI",
		"* 1 FETCH (BODY[] {10}\r\nhello",
		"* 1 FETCH (BODY[] {5}\r\nhello",
	} {
		checkGoroutines(t)
		l, sc, _ := pipeLink(t)
		write(t, sc, partial)
		if err := l.release(); err == nil {
			t.Errorf("%q: released", partial)
		}
	}
}

// The guard tells a response's end from a line that goes on after a
// literal.
func TestGuardLineEnd(t *testing.T) {
	g := &guardReader{lineEnd: true}
	for _, step := range []struct {
		in   string
		want bool
	}{
		{"* 1 EXISTS\r\n", true},
		{"* 1 FETCH (BODY[] {3}\r\n", false},
		{"a\nb", false},
		{")\r\n", true},
		{"* OK {0}\r\n", false},
		{"\r\n", true},
		{"* 2 EXPUNGE\r", false},
		{"\n", true},
	} {
		if err := g.scan([]byte(step.in)); err != nil {
			t.Fatal(err)
		}
		if g.lineEnd != step.want {
			t.Errorf("after %q: lineEnd %v", step.in, g.lineEnd)
		}
	}
}

// A server that says BYE and closes while the client is released: the
// resumed client reads both, and its next command fails instead of
// waiting.
func TestResumeAfterBye(t *testing.T) {
	checkGoroutines(t)
	l, sc, _ := pipeLink(t)
	if err := l.release(); err != nil {
		t.Fatal(err)
	}
	go func() {
		io.WriteString(sc, "* BYE server shutting down\r\n")
		sc.Close()
	}()
	if err := l.resume(imap.CapSet{imap.CapIMAP4rev1: {}}); err != nil {
		t.Fatal(err)
	}
	if err := l.client.Noop().Wait(); err == nil {
		t.Fatal("NOOP after BYE succeeded")
	}
}

// Sessions of one server share one capability set; the table is bounded.
func TestCapSetsIntern(t *testing.T) {
	var cs capSets
	same := func(a, b imap.CapSet) bool { return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer() }
	first := cs.intern(imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}})
	if got := cs.intern(imap.CapSet{imap.CapIdle: {}, imap.CapIMAP4rev1: {}}); !same(got, first) {
		t.Error("an equal set is not shared")
	}
	other := imap.CapSet{imap.CapIMAP4rev1: {}}
	if got := cs.intern(other); !same(got, other) || same(got, first) {
		t.Error("a different set is not its own")
	}
	if cs.intern(nil) != nil {
		t.Error("nil interned")
	}
	for i := range 2 * maxCapSets {
		cs.intern(imap.CapSet{imap.Cap(fmt.Sprintf("X%d", i)): {}})
	}
	if len(cs.sets) != maxCapSets {
		t.Errorf("%d sets kept, at most %d", len(cs.sets), maxCapSets)
	}
}
