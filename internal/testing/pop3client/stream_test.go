package pop3client

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// streamOver serves wire in pieces of step octets on a pipe to a Client
// with a small read buffer, and returns what read passed on and its error.
func streamOver(wire []byte, step int, read func(*Client, func([]byte)) error) ([]byte, error) {
	cl, srv := net.Pipe()
	defer cl.Close()
	go func() {
		defer srv.Close()
		for p := wire; len(p) > 0; {
			n := min(step, len(p))
			if _, err := srv.Write(p[:n]); err != nil {
				return
			}
			p = p[n:]
		}
	}()
	c, err := newClient(cl, Options{ReadBuffer: 16})
	if err != nil {
		return nil, err
	}
	var got bytes.Buffer
	err = read(c, func(p []byte) { got.Write(p) })
	return got.Bytes(), err
}

// FuzzStreamBulk: StreamBulk passes on exactly the octets StreamBody
// does and fails the same way (no dot, bare LF), whatever the answer and
// however it arrives. The buffer is 16 octets (bufio's minimum), so long
// lines and lines cut across reads are common.
func FuzzStreamBulk(f *testing.F) {
	for _, s := range []string{
		".\r\n", "a\r\n.\r\n", "..x\r\n.\r\n", "a\r\nb\r\n..\r\n.\r\n", "no dot\r\n",
		"bare\n.\r\n", "a very long line that is longer than the buffer\r\n.\r\n", ".x\r\n.\r\nafter",
		"x\r\n.\n", "\r\n\r\n.\r\n",
	} {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, wire []byte, step uint8) {
		n := int(step%32) + 1
		want, wantErr := streamOver(wire, n, (*Client).StreamBody)
		got, gotErr := streamOver(wire, n, (*Client).StreamBulk)
		if !errors.Is(gotErr, ErrNoDot) != !errors.Is(wantErr, ErrNoDot) ||
			!errors.Is(gotErr, ErrNoCRLF) != !errors.Is(wantErr, ErrNoCRLF) || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("wire %q: StreamBulk error %v, StreamBody %v", wire, gotErr, wantErr)
		}
		if wantErr == nil && !bytes.Equal(got, want) {
			t.Fatalf("wire %q: StreamBulk %q, StreamBody %q", wire, got, want)
		}
	})
}
