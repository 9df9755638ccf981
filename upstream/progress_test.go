package upstream

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/imapscript"
	"github.com/popbridge/popbridge/pop3server"
)

// literalServer serves one message whose body literal is written by send.
func literalServer(t *testing.T, size int, send func(c *imapscript.RawConn)) *imapscript.Raw {
	return startFake(t, "* OK [CAPABILITY IMAP4rev1] fake", func(c *imapscript.RawConn, tag, cmd string) bool {
		if handled, keep := basicIMAP(c, tag, cmd, size); handled {
			return keep
		}
		if strings.HasPrefix(strings.ToUpper(cmd), "UID FETCH 1 ") {
			c.Send("* 1 FETCH (UID 1 BODY[] {" + strconv.Itoa(size) + "}")
			send(c)
			c.Send(")", tag+" OK done")
			return true
		}
		c.Send(tag + " BAD unexpected")
		return true
	})
}

func TestProgressStallFails(t *testing.T) {
	checkGoroutines(t)
	s := literalServer(t, 10000, func(c *imapscript.RawConn) {
		c.Write(bytes.Repeat([]byte("a"), 100))
		// Stall until the client gives up.
		io.Copy(io.Discard, c.R)
	})
	m := login(t, newBackend(t, rawURL(s), func(o *Options) { o.CommandTimeout = 300 * time.Millisecond }))
	b, err := m.Retrieve(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := io.ReadAll(b)
	if err == nil {
		t.Fatalf("read %d octets of a stalled literal without error", len(got))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stall detected after %v with a 300ms timeout", d)
	}
	b.Close()
	_, err = m.Retrieve(context.Background(), 1)
	wantCode(t, err, pop3server.ErrTemporary)
}

func TestProgressTrickleSucceeds(t *testing.T) {
	checkGoroutines(t)
	const size = 120
	body := bytes.Repeat([]byte("x"), size)
	s := literalServer(t, size, func(c *imapscript.RawConn) {
		// 120 × 25 ms = 3 s, three times the timeout, always progressing.
		// The timeout is 40 gaps long: with 300 ms (12 gaps) a gap
		// stretched past it on a 2-core machine under stress-ng.
		for _, ch := range body {
			time.Sleep(25 * time.Millisecond)
			c.Write([]byte{ch})
		}
	})
	m := login(t, newBackend(t, rawURL(s), func(o *Options) { o.CommandTimeout = time.Second }))
	b, err := m.Retrieve(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, b); !bytes.Equal(got, body) {
		t.Errorf("got %q", got)
	}
}

func TestProgressIdleIsFine(t *testing.T) {
	checkGoroutines(t)
	s := literalServer(t, 5, func(c *imapscript.RawConn) { c.Write([]byte("hello")) })
	m := login(t, newBackend(t, rawURL(s), func(o *Options) { o.CommandTimeout = 100 * time.Millisecond }))
	// An idle upstream connection between POP3 commands has no deadline,
	// whatever go-imap set.
	time.Sleep(500 * time.Millisecond)
	b, err := m.Retrieve(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, b); string(got) != "hello" {
		t.Errorf("got %q", got)
	}
}

func TestProgressSlowReaderIsFine(t *testing.T) {
	checkGoroutines(t)
	const size = 2 << 20
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	s := literalServer(t, size, func(c *imapscript.RawConn) { c.Write(body) })
	m := login(t, newBackend(t, rawURL(s), func(o *Options) { o.CommandTimeout = 100 * time.Millisecond }))
	b, err := m.Retrieve(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	// A slow POP3 client stops us reading the upstream for longer than
	// the timeout, again and again: the upstream is not stalled, we are.
	var got bytes.Buffer
	buf := make([]byte, 256<<10)
	for {
		time.Sleep(200 * time.Millisecond)
		n, err := io.ReadFull(b, buf)
		got.Write(buf[:n])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d octets: %v", got.Len(), err)
		}
	}
	b.Close()
	if !bytes.Equal(got.Bytes(), body) {
		t.Errorf("got %d octets, want %d", got.Len(), len(body))
	}
}
