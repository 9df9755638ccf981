package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
)

// fakePOP serves msgs over POP3 on a loopback port, dot-stuffed; corrupt,
// when set, changes each message's bytes before they are sent.
func fakePOP(t *testing.T, msgs [][]byte, corrupt func([]byte) []byte) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go serveFake(conn, msgs, corrupt)
		}
	}()
	return l.Addr().String()
}

func serveFake(conn net.Conn, msgs [][]byte, corrupt func([]byte) []byte) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	fmt.Fprint(w, "+OK fake\r\n")
	w.Flush()
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		switch f[0] {
		case "USER", "PASS", "NOOP":
			fmt.Fprint(w, "+OK\r\n")
		case "STAT":
			fmt.Fprintf(w, "+OK %d %d\r\n", len(msgs), total)
		case "RETR", "TOP":
			var n int
			fmt.Sscan(f[1], &n)
			m := msgs[n-1]
			if f[0] == "TOP" {
				m = m[:bytes.Index(m, []byte("\r\n\r\n"))+4]
			}
			if corrupt != nil {
				m = corrupt(m)
			}
			fmt.Fprint(w, "+OK\r\n")
			for _, l := range bytes.SplitAfter(m, []byte("\r\n")) {
				if len(l) > 0 && l[0] == '.' {
					w.WriteByte('.')
				}
				w.Write(l)
			}
			fmt.Fprint(w, ".\r\n")
		case "QUIT":
			fmt.Fprint(w, "+OK bye\r\n")
			w.Flush()
			return
		default:
			fmt.Fprint(w, "-ERR\r\n")
		}
		w.Flush()
	}
}

func fakeBox(t *testing.T) (*Mailbox, [][]byte) {
	box := &Mailbox{User: "u", Password: "p"}
	var msgs [][]byte
	for i, size := range []int64{2000, 9000, 70000} {
		var b bytes.Buffer
		exp, err := WriteMessage(&b, MessageSpec{Box: "u", Seq: i + 1, Size: size}, "\r\n")
		if err != nil {
			t.Fatal(err)
		}
		box.Messages = append(box.Messages, exp)
		msgs = append(msgs, b.Bytes())
	}
	return box, msgs
}

func TestDownloadVerifies(t *testing.T) {
	box, msgs := fakeBox(t)
	for _, top := range []bool{false, true} {
		var res Result
		if _, err := downloadSession(fakePOP(t, msgs, nil), box, top, &res); err != nil {
			t.Fatal(err)
		}
		if res.Errors != 0 || res.Verified == 0 {
			t.Errorf("top=%v: intact messages: %d errors (%s), %d octets verified", top, res.Errors, res.FirstError, res.Verified)
		}
	}

	flip := func(m []byte) []byte {
		m = bytes.Clone(m)
		m[len(m)-5] ^= 1
		return m
	}
	var res Result
	if _, err := downloadSession(fakePOP(t, msgs, flip), box, false, &res); err != nil {
		t.Fatal(err)
	}
	if res.Errors != len(msgs) {
		t.Errorf("one flipped bit per message: %d errors, want %d", res.Errors, len(msgs))
	}
}

func TestReadMultilineRejectsBareLF(t *testing.T) {
	msgs := [][]byte{[]byte("Subject: x\r\n\r\nbare\nlf\r\n")}
	box := &Mailbox{User: "u", Password: "p", Messages: []Expected{{}}}
	var res Result
	if _, err := downloadSession(fakePOP(t, msgs, nil), box, false, &res); err == nil {
		t.Error("a bare LF in a multi-line answer was accepted")
	}
}
