package bench

import (
	"fmt"
	"hash/maphash"
	"io"
	"strconv"
)

// hashSeed makes every Sum of this process comparable; sums are never
// stored, so a per-process seed is enough.
var hashSeed = maphash.MakeSeed()

// Sum identifies a byte string: its length and a 64-bit hash.
type Sum struct {
	Size int64
	Hash uint64
}

// Hasher accumulates a Sum.
type Hasher struct {
	h maphash.Hash
	n int64
}

// NewHasher returns an empty Hasher.
func NewHasher() *Hasher {
	h := &Hasher{}
	h.h.SetSeed(hashSeed)
	return h
}

// Write adds p; it never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.h.Write(p)
}

// Sum returns what was written so far.
func (h *Hasher) Sum() Sum { return Sum{Size: h.n, Hash: h.h.Sum64()} }

// Expected is what a POP3 server must deliver for one seeded message, as
// the octets after dot-unstuffing: the whole message (RETR) and its header
// with the blank line (TOP n 0).
type Expected struct {
	Full   Sum
	Header Sum
}

// MessageSpec names one generated message: the mailbox it belongs to, its
// number there and its size in octets with CRLF line ends.
type MessageSpec struct {
	Box  string
	Seq  int
	Size int64
}

// lineLen is the body line length without CRLF: short enough for every
// mail system, long enough that line handling does not dominate.
const lineLen = 76

// Generate emits the message's lines without their line ends, in order;
// with CRLF after each line the message is exactly spec.Size octets
// (a size below the header's length gets the header alone; a size one
// octet above it gets one more). Every 16th body
// line starts with a dot, so dot-stuffing is exercised. The line slice is
// reused between calls.
func Generate(spec MessageSpec, emit func(line []byte) error) error {
	header := []string{
		"From: Sender " + strconv.Itoa(spec.Seq) + " <sender" + strconv.Itoa(spec.Seq%97) + "@example.org>",
		"To: " + spec.Box + "@example.net",
		fmt.Sprintf("Subject: popbench %s message %d of %d octets", spec.Box, spec.Seq, spec.Size),
		"Date: Mon, 02 Jan 2006 15:04:05 +0000",
		fmt.Sprintf("Message-ID: <%d.%s@popbench.example>", spec.Seq, spec.Box),
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=us-ascii",
		"",
	}
	left := spec.Size
	for _, h := range header {
		if err := emit([]byte(h)); err != nil {
			return err
		}
		left -= int64(len(h)) + 2
	}
	line := make([]byte, 0, lineLen)
	for i := 0; left > 0; i++ {
		n := min(int64(lineLen), left-2)
		if left-(n+2) == 1 {
			n-- // a lone octet cannot carry a CRLF: shorten this line instead
		}
		line = bodyLine(line[:0], spec.Seq, i, int(max(n, 0)))
		if err := emit(line); err != nil {
			return err
		}
		left -= max(n, 0) + 2
	}
	return nil
}

// bodyLine appends line i of message seq, exactly n octets long.
func bodyLine(b []byte, seq, i, n int) []byte {
	if i%16 == 15 {
		b = append(b, '.')
	}
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, ' ')
	for c := byte('a' + (seq+i)%26); len(b) < n; c++ {
		if c > 'z' {
			c = 'a'
		}
		b = append(b, c)
	}
	return b[:n]
}

// WriteMessage writes the message to w with line ends eol ("\n" for a
// maildir file, "\r\n" for the wire) and returns what a server must
// deliver for it.
func WriteMessage(w io.Writer, spec MessageSpec, eol string) (Expected, error) {
	full, header := NewHasher(), NewHasher()
	inHeader := true
	crlf := []byte("\r\n")
	eolb := []byte(eol)
	err := Generate(spec, func(line []byte) error {
		full.Write(line)
		full.Write(crlf)
		if inHeader {
			header.Write(line)
			header.Write(crlf)
			inHeader = len(line) > 0
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
		_, err := w.Write(eolb)
		return err
	})
	return Expected{Full: full.Sum(), Header: header.Sum()}, err
}
