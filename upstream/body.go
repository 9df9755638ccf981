package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/pop3server"
)

// TOP fetches the body text in partial chunks that grow from minChunk to
// maxChunk: most TOP requests want a few lines, and the part of the last
// chunk past the k-th line is read and discarded.
const (
	minChunk = 4 << 10
	maxChunk = 1 << 20
)

var errBodyAborted = errors.New("body closed before its end")

// Retrieve streams message n whole, from UID FETCH uid (UID BODY.PEEK[]).
// PEEK: a RETR marks \Seen only at QUIT, and only under the policy.
func (m *maildrop) Retrieve(ctx context.Context, n int) (pop3server.Body, error) {
	msg, err := m.message(n)
	if err != nil {
		return nil, err
	}
	return m.openBody(ctx, msg, &imap.FetchItemBodySection{Peek: true}, -1)
}

// Top streams the header of message n, the blank line ending it, and at
// most lines lines of its body.
func (m *maildrop) Top(ctx context.Context, n int, lines int) (pop3server.Body, error) {
	msg, err := m.message(n)
	if err != nil {
		return nil, err
	}
	if lines < 0 {
		lines = 0
	}
	// A body line is at least CRLF, two octets, so with lines > size/2
	// the whole message is wanted (fetchmail sends TOP n 99999999): one
	// BODY[] instead of a header and text chunks.
	if int64(lines) > msg.size/2 {
		return m.openBody(ctx, msg, &imap.FetchItemBodySection{Peek: true}, -1)
	}
	return m.openBody(ctx, msg, &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader}, lines)
}

// openBody fetches the first section and returns once its literal has
// started. lines < 0 streams just that section; otherwise up to lines
// lines of the text follow it.
func (m *maildrop) openBody(ctx context.Context, msg message, first *imap.FetchItemBodySection, lines int) (pop3server.Body, error) {
	if m.body != nil {
		// pop3server closes a body before its next command; if it did
		// not, the connection is in the middle of a literal.
		m.body.abort()
	}
	if err := m.usable(); err != nil {
		return nil, err
	}
	b := &body{m: m, uid: msg.uid, lines: lines}
	m.l.bodies.Store(true)
	err := m.exchange(ctx, "fetch", func() error {
		var err error
		b.sec, err = m.openSection(msg.uid, first)
		return err
	})
	if err == nil && m.dead == nil {
		// The FETCH is outstanding until its tagged OK, which comes
		// after the literal: keep the no-progress timeout running.
		m.l.raw.arm()
	}
	if err != nil {
		if b.sec != nil {
			b.abort() // ctx ended just as the literal began
		}
		m.l.bodies.Store(false)
		if errors.Is(err, pop3server.ErrNoSuchMessage) {
			return nil, err
		}
		return nil, pop3server.ErrTemporary.Wrap(err)
	}
	if b.sec.lit.Size() != msg.size && lines < 0 && first.Specifier == imap.PartSpecifierNone {
		m.warn().Uint32("uid", uint32(msg.uid)).Int64("listed", msg.size).Int64("literal", b.sec.lit.Size()).
			Msg("upstream body size differs from RFC822.SIZE")
	}
	m.body = b
	return b, nil
}

// section is one UID FETCH of one body section, positioned at its literal.
type section struct {
	cmd  *imapclient.FetchCommand
	lit  imap.LiteralReader
	want int64 // octets asked for with a partial fetch, 0 for all
	got  int64
	read int64 // octets of the literal read, discarded ones included
	err  error // the literal's first error, io.EOF included
}

// Read reads the literal and, once it has returned an error, returns that
// error again without touching it: go-imap's reader goroutine moves on as
// soon as the literal fails, and reading it again would race with that
// goroutine on the connection's buffer. go-imap reports a connection that
// ends inside the literal as io.EOF; Read makes it io.ErrUnexpectedEOF.
func (s *section) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.lit.Read(p)
	s.read += int64(n)
	if err == io.EOF && s.read < s.lit.Size() {
		err = io.ErrUnexpectedEOF
	}
	s.err = err
	return n, err
}

// openSection sends UID FETCH uid (UID <item>) and waits for the literal.
// A FETCH that completes without it, with NIL, or with NO means the message
// was expunged by another client: ErrNoSuchMessage.
func (m *maildrop) openSection(uid imap.UID, item *imap.FetchItemBodySection) (*section, error) {
	cmd := m.l.client.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{item},
	})
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		for it := msg.Next(); it != nil; it = msg.Next() {
			bs, ok := it.(imapclient.FetchItemDataBodySection)
			if ok && bs.Literal != nil {
				s := &section{cmd: cmd, lit: bs.Literal}
				if item.Partial != nil {
					s.want = item.Partial.Size
				}
				return s, nil
			}
		}
	}
	err := cmd.Close()
	if err == nil || isNo(err) {
		if err == nil {
			err = errors.New("FETCH returned no body")
		}
		return nil, pop3server.ErrNoSuchMessage.Wrap(fmt.Errorf("UID %d: %w", uid, err))
	}
	return nil, fmt.Errorf("UID FETCH %d: %w", uid, err)
}

// body is the pop3server.Body of a RETR or TOP.
type body struct {
	m   *maildrop
	uid imap.UID
	sec *section // the section being read; nil between sections
	// lines is how many body lines TOP still wants after the current
	// section (the header); -1 for none (RETR, or TOP past the end).
	lines  int
	inText bool  // sec is a text chunk, counted against lines
	offset int64 // of the next text chunk
	chunk  int64 // size of the next text chunk
	done   bool
	err    error
}

func (b *body) Read(p []byte) (int, error) {
	for {
		if b.err != nil {
			return 0, b.err
		}
		if b.done {
			return 0, io.EOF
		}
		if b.sec == nil {
			if err := b.nextChunk(); err != nil {
				return 0, b.fail(err)
			}
			continue
		}
		n, err := b.sec.Read(p)
		b.sec.got += int64(n)
		if n > 0 && b.inText {
			n = b.countLines(p[:n])
		}
		if err == io.EOF || (b.inText && b.lines == 0) {
			if ferr := b.finishSection(); ferr != nil {
				return n, b.fail(ferr)
			}
			err = nil
		} else if err != nil {
			return n, b.fail(fmt.Errorf("reading UID %d: %w", b.uid, err))
		}
		if n > 0 {
			return n, nil
		}
	}
}

// countLines returns how much of p to deliver: all of it, or up to and
// including the LF that ends the last wanted line.
func (b *body) countLines(p []byte) int {
	for i, c := range p {
		if c == '\n' {
			b.lines--
			if b.lines == 0 {
				return i + 1
			}
		}
	}
	return len(p)
}

// finishSection reads what is left of the current literal (at most a
// chunk, for TOP), waits for the tagged OK and decides what comes next.
func (b *body) finishSection() error {
	s := b.sec
	if _, err := io.Copy(io.Discard, s); err != nil {
		return fmt.Errorf("reading UID %d: %w", b.uid, err)
	}
	b.sec = nil
	if err := s.cmd.Close(); err != nil {
		return fmt.Errorf("UID FETCH %d: %w", b.uid, err)
	}
	switch {
	case !b.inText && b.lines > 0:
		b.inText, b.offset, b.chunk = true, 0, minChunk
	case b.inText && b.lines > 0 && s.got == s.want:
		b.offset += s.got
		b.chunk = min(2*b.chunk, maxChunk)
	default:
		// RETR, TOP n 0, enough lines, or the text ended short of them.
		b.end()
	}
	return nil
}

// nextChunk opens BODY.PEEK[TEXT]<offset.chunk>.
func (b *body) nextChunk() error {
	s, err := b.m.openSection(b.uid, &imap.FetchItemBodySection{
		Peek:      true,
		Specifier: imap.PartSpecifierText,
		Partial:   &imap.SectionPartial{Offset: b.offset, Size: b.chunk},
	})
	if err != nil {
		return err
	}
	b.sec = s
	return nil
}

// end is the normal end of the body.
func (b *body) end() {
	b.done = true
	b.m.l.bodies.Store(false)
	b.m.l.raw.disarm()
	if b.m.body == b {
		b.m.body = nil
	}
}

// fail ends the body with err and retires the connection: after +OK the
// client must see the connection close without the terminating dot.
func (b *body) fail(err error) error {
	b.err = pop3server.ErrTemporary.Wrap(err)
	b.abort()
	return b.err
}

// Close ends the body. Before EOF it aborts: see abort.
func (b *body) Close() error {
	if !b.done {
		b.abort()
	}
	return nil
}

// abort gives up on the body without blocking: the raw connection is closed
// first, because go-imap's reader is parked until the literal is read to
// its end and Client.Close would wait for it; the literal then drains at
// once (buffered octets, then an error), and the connection is retired.
func (b *body) abort() {
	if b.done && b.sec == nil {
		return
	}
	b.m.retire(errBodyAborted)
	if s := b.sec; s != nil {
		_, _ = io.Copy(io.Discard, s)
		// FetchCommand.Close discards the literal itself, bypassing
		// section.Read: only safe once the literal ended cleanly. The
		// command fails with the connection anyway.
		if s.err == io.EOF {
			_ = s.cmd.Close()
		}
		b.sec = nil
	}
	if b.err == nil {
		b.err = pop3server.ErrTemporary.Wrap(errBodyAborted)
	}
	b.done = true
	b.m.l.bodies.Store(false)
	if b.m.body == b {
		b.m.body = nil
	}
}
