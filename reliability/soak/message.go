package soak

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// idHeader names the header every soak message carries, "user/serial": a
// downloaded message (or the head of one, from TOP) says which message it
// claims to be, and the generator says what that message's octets are.
const idHeader = "X-Soak-Id: "

// messageBody returns message serial of user, always the same octets for
// the same arguments: CRLF lines, some starting with "." or "..", some
// empty, and sizes from 1 KiB to 256 KiB (mostly small, as mail is).
func messageBody(user string, serial int) []byte {
	r := rand.New(rand.NewPCG(uint64(serial), hash(user)))
	var size int
	switch p := r.IntN(100); {
	case p < 70:
		size = 1<<10 + r.IntN(7<<10)
	case p < 97:
		size = 8<<10 + r.IntN(56<<10)
	default:
		size = 128<<10 + r.IntN(128<<10)
	}
	var b bytes.Buffer
	b.Grow(size + 512)
	fmt.Fprintf(&b, "From: soak@example.com\r\nTo: %s@example.com\r\nSubject: soak message %d\r\n", user, serial)
	fmt.Fprintf(&b, "Message-ID: <%d.%s@soak.example>\r\n%s%s/%d\r\n\r\n", serial, user, idHeader, user, serial)
	for line := 1; b.Len() < size; line++ {
		switch r.IntN(12) {
		case 0:
			b.WriteString(".\r\n") // a lone dot: must be stuffed
		case 1:
			fmt.Fprintf(&b, "..%d starts with two dots\r\n", line)
		case 2:
			b.WriteString("\r\n")
		case 3:
			fmt.Fprintf(&b, "From the start of line %d\r\n", line)
		default:
			n := 10 + r.IntN(70)
			fmt.Fprintf(&b, "%06d ", line)
			for i := 0; i < n; i++ {
				b.WriteByte(byte('a' + r.IntN(26)))
			}
			b.WriteString("\r\n")
		}
	}
	return b.Bytes()
}

func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// parseID finds the X-Soak-Id header in the head of a message.
func parseID(msg []byte) (user string, serial int, ok bool) {
	i := bytes.Index(msg, []byte("\r\n"+idHeader))
	if i < 0 {
		return "", 0, false
	}
	rest := msg[i+2+len(idHeader):]
	end := bytes.Index(rest, []byte("\r\n"))
	if end < 0 {
		return "", 0, false
	}
	u, s, ok := strings.Cut(string(rest[:end]), "/")
	n, err := strconv.Atoi(s)
	if !ok || err != nil {
		return "", 0, false
	}
	return u, n, true
}

// topOf is what TOP n lines must return for body, after un-stuffing: the
// header, the blank line, and the first lines lines of the text.
func topOf(body []byte, lines int) []byte {
	i := bytes.Index(body, []byte("\r\n\r\n"))
	if i < 0 {
		return body
	}
	end := i + 4
	for n := 0; n < lines && end < len(body); n++ {
		j := bytes.Index(body[end:], []byte("\r\n"))
		if j < 0 {
			end = len(body)
			break
		}
		end += j + 2
	}
	return body[:end]
}
