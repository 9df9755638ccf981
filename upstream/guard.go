package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
)

// Limits on what the upstream may send outside a message body. go-imap
// decodes response lines (text, quoted strings, atoms) and literals in
// string positions into memory without bounds; guardReader caps them so a
// broken or hostile upstream cannot exhaust memory. Lines are generous
// because a UID SEARCH of a large mailbox is legitimately long.
const (
	maxResponseLine = 4 << 20 // octets of one response line, literals excluded
	maxLiteral      = 1 << 20 // octets of one literal, unless a body is being fetched
)

var errResponseTooLong = errors.New("upstream response line too long")

// guardReader passes the upstream's plain-text stream through unchanged
// while tracking IMAP framing: it counts octets since the last LF, skips
// over literals announced by "{N}" at a line end, and fails the stream when
// a line or (outside a body fetch) a literal exceeds its limit. Message
// bodies are streamed by body.go, never buffered, so they are exempt while
// bodies is set.
type guardReader struct {
	r      io.Reader
	bodies *atomic.Bool

	line    int   // octets of the current line so far
	literal int64 // literal octets still to pass
	// lineEnd is set when the last octet passed was the LF ending a
	// response line outside any literal, or none has passed yet: the
	// stream is between two responses (release.go). Start guards with it
	// set.
	lineEnd bool
	tail    [24]byte
	tailN   int
}

func (g *guardReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if n > 0 {
		if gerr := g.scan(p[:n]); gerr != nil {
			return 0, gerr
		}
	}
	return n, err
}

func (g *guardReader) scan(b []byte) error {
	for len(b) > 0 {
		g.lineEnd = false
		if g.literal > 0 {
			k := min(g.literal, int64(len(b)))
			g.literal -= k
			b = b[k:]
			continue
		}
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i]
		}
		g.line += len(seg)
		if g.line > maxResponseLine {
			return fmt.Errorf("%w (over %d octets)", errResponseTooLong, maxResponseLine)
		}
		g.keepTail(seg)
		if i < 0 {
			return nil
		}
		if n, ok := literalAtEnd(g.tail[:g.tailN]); ok {
			if n > maxLiteral && (g.bodies == nil || !g.bodies.Load()) {
				return fmt.Errorf("upstream sent a literal of %d octets outside a message body (max %d)", n, maxLiteral)
			}
			g.literal = n
		} else {
			g.lineEnd = true
		}
		g.line, g.tailN = 0, 0
		b = b[i+1:]
	}
	return nil
}

func (g *guardReader) keepTail(seg []byte) {
	if len(seg) >= len(g.tail) {
		g.tailN = copy(g.tail[:], seg[len(seg)-len(g.tail):])
		return
	}
	keep := min(g.tailN, len(g.tail)-len(seg))
	copy(g.tail[:keep], g.tail[g.tailN-keep:g.tailN])
	g.tailN = keep + copy(g.tail[keep:], seg)
}

// literalAtEnd parses a line ending (before LF) in "{N}\r" or "{N+}\r".
func literalAtEnd(tail []byte) (int64, bool) {
	tail = bytes.TrimSuffix(tail, []byte("\r"))
	if len(tail) < 3 || tail[len(tail)-1] != '}' {
		return 0, false
	}
	open := bytes.LastIndexByte(tail, '{')
	if open < 0 {
		return 0, false
	}
	digits := bytes.TrimSuffix(tail[open+1:len(tail)-1], []byte("+"))
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
