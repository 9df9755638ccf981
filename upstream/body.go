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

// TOP fetches the body text in partial chunks: the first one in the same
// UID FETCH as the header, sized from the line count (most TOP requests
// want a few lines), and, only when the lines run past it, more chunks
// that grow up to maxChunk. The part of the last chunk past the k-th line
// is read and discarded.
const (
	minChunk = 4 << 10
	maxChunk = 1 << 20
	// chunkPerLine is the first chunk's guess of a body line's length.
	chunkPerLine = 128
)

var errBodyAborted = errors.New("body closed before its end")

// Retrieve returns message n whole: from the session's prefetched bodies
// when it has been fetched ahead (docs/prefetch.md), else streamed from
// UID FETCH uid (UID BODY.PEEK[]). PEEK: a RETR marks \Seen only at QUIT,
// and only under the policy.
func (m *maildrop) Retrieve(ctx context.Context, n int) (pop3server.Body, error) {
	msg, err := m.message(n)
	if err != nil {
		return nil, err
	}
	if b, err := m.prefetched(ctx, n, msg, false); b != nil || err != nil {
		return b, err
	}
	return m.openBody(ctx, msg, -1, &imap.FetchItemBodySection{Peek: true})
}

// Top returns the header of message n, the blank line ending it, and at
// most lines lines of its body, in one UID FETCH: BODY.PEEK[HEADER] and,
// for lines > 0, BODY.PEEK[TEXT]<0.chunk>. A message another client
// expunged since the previous command therefore answers -ERR before
// anything is written, instead of failing after +OK.
func (m *maildrop) Top(ctx context.Context, n int, lines int) (pop3server.Body, error) {
	msg, err := m.message(n)
	if err != nil {
		return nil, err
	}
	lines = max(lines, 0)
	// A body line is at least CRLF, two octets, so with lines > size/2
	// the whole message is wanted (fetchmail sends TOP n 99999999): one
	// BODY[] instead of a header and text chunks.
	if int64(lines) > msg.size/2 {
		if b, err := m.prefetched(ctx, n, msg, false); b != nil || err != nil {
			return b, err
		}
		return m.openBody(ctx, msg, -1, &imap.FetchItemBodySection{Peek: true})
	}
	if lines == 0 {
		if b, err := m.prefetched(ctx, n, msg, true); b != nil || err != nil {
			return b, err
		}
		return m.openBody(ctx, msg, 0, &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader})
	}
	chunk := min(max(int64(lines)*chunkPerLine, minChunk), maxChunk)
	return m.openBody(ctx, msg, lines,
		&imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader},
		&imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierText,
			Partial: &imap.SectionPartial{Offset: 0, Size: chunk}})
}

// openBody sends one UID FETCH of items for msg and returns once the first
// item's literal has started. lines < 0 streams just that literal (RETR,
// or TOP past the end); otherwise it is the header, and up to lines lines
// of the text follow it: from the second item, then from further chunks.
func (m *maildrop) openBody(ctx context.Context, msg message, lines int, items ...*imap.FetchItemBodySection) (pop3server.Body, error) {
	if m.body != nil {
		// pop3server closes a body before its next command; if it did
		// not, the connection is in the middle of a literal.
		m.body.abort()
	}
	// Bodies fetched ahead arrive before this answer: read them first.
	if err := m.settleBatches(ctx, true); err != nil {
		return nil, pop3server.ErrTemporary.Wrap(err)
	}
	if err := m.usable(); err != nil {
		return nil, err
	}
	b := &body{m: m, uid: msg.uid, lines: lines, chunk: minChunk}
	if len(items) > 1 {
		b.chunk = items[1].Partial.Size
	}
	m.l.bodies.Store(true)
	err := m.exchange(ctx, "fetch", func() error {
		var err error
		b.f, b.sec, err = m.fetchFirst(msg.uid, items, items[0].Specifier, 0)
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
	if b.sec.lit.Size() != msg.size && lines < 0 && items[0].Specifier == imap.PartSpecifierNone {
		m.warn().Uint32("uid", uint32(msg.uid)).Int64("listed", msg.size).Int64("literal", b.sec.lit.Size()).
			Msg("upstream body size differs from RFC822.SIZE")
	}
	m.body = b
	return b, nil
}

// fetch is one UID FETCH of one message's body sections, read item by item.
type fetch struct {
	uid imap.UID
	cmd *imapclient.FetchCommand
	msg *imapclient.FetchMessageData // the FETCH data being read; nil between
	// ours is set once msg carried our UID. go-imap hands a UID FETCH
	// only data whose UID precedes its first literal, and routes by that
	// UID, but an unsolicited FETCH (another client's flag change) can
	// still land here; its sections are never taken for ours.
	ours bool
	// sections counts the body sections (NIL included) of msg; stolen is
	// set when data for our UID ended without any: see fetchFirst.
	sections int
	stolen   bool
}

// maxFetchTries bounds the UID FETCHes of one section that flag updates
// may answer in place of the body (see fetchFirst): each one needs another
// session to change the message's flags just then.
const maxFetchTries = 4

// fetchFirst sends UID FETCH uid (UID items) and returns once the literal
// of the section spec (at offset) has started. A FETCH that completes
// without it, with NIL, or with NO means the message was expunged by
// another client: ErrNoSuchMessage.
//
// Except in one case. go-imap gives a pending UID FETCH the first FETCH
// response that carries one of its UIDs, and drops any later one for the
// same UID as a duplicate. A server that puts the UID in unsolicited flag
// updates (Dovecot after a UID STORE once CONDSTORE is on, any server with
// QRESYNC) can send one for our message, caused by another session, just
// before our answer: go-imap hands us the update and discards the body.
// Data for our UID without any body section is that case: the message
// exists, so ask again, and never call it expunged.
func (m *maildrop) fetchFirst(uid imap.UID, items []*imap.FetchItemBodySection, spec imap.PartSpecifier, offset int64) (*fetch, *section, error) {
	for try := 1; ; try++ {
		f := m.startFetch(uid, items)
		s, err := f.next(spec, offset)
		if err != nil || s != nil {
			return f, s, err
		}
		err = f.cmd.Close()
		if !f.stolen || err != nil {
			return nil, nil, missing(uid, err)
		}
		if try == maxFetchTries {
			return nil, nil, fmt.Errorf("UID FETCH %d: answered %d times by flag updates instead of the body", uid, try)
		}
		m.debug().Uint32("uid", uint32(uid)).Msg("FETCH answered by an unsolicited flag update; asking again")
	}
}

func (m *maildrop) startFetch(uid imap.UID, items []*imap.FetchItemBodySection) *fetch {
	return &fetch{uid: uid, cmd: m.imap().Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{
		UID:         true,
		BodySection: items,
	})}
}

// next returns the next literal of our message whose section has the given
// specifier (and partial offset), skipping anything else; nil once the
// command's data is exhausted (its tagged response not yet read).
func (f *fetch) next(spec imap.PartSpecifier, offset int64) (*section, error) {
	for {
		if f.msg == nil {
			if f.msg = f.cmd.Next(); f.msg == nil {
				return nil, nil
			}
			f.ours, f.sections = false, 0
		}
		for it := f.msg.Next(); it != nil; it = f.msg.Next() {
			switch it := it.(type) {
			case imapclient.FetchItemDataUID:
				f.ours = it.UID == f.uid
			case imapclient.FetchItemDataBodySection:
				f.sections++
				if !f.ours || it.Literal == nil || it.Section.Specifier != spec {
					continue // NIL, or not ours: go-imap discards it
				}
				// Only TOP's text chunks are partial.
				p := it.Section.Partial
				if spec == imap.PartSpecifierText && (p == nil || p.Offset != offset) ||
					spec != imap.PartSpecifierText && p != nil {
					continue
				}
				s := &section{f: f, lit: it.Literal}
				return s, nil
			}
		}
		f.stolen = f.stolen || (f.ours && f.sections == 0)
		f.msg = nil
	}
}

// missing is the error of a FETCH of uid that ended, with err from its
// Close, without the wanted literal: completed without it, with NIL, or
// with NO means the message was expunged by another client,
// ErrNoSuchMessage.
func missing(uid imap.UID, err error) error {
	if err == nil || isNo(err) {
		if err == nil {
			err = errors.New("FETCH returned no body")
		}
		return pop3server.ErrNoSuchMessage.Wrap(fmt.Errorf("UID %d: %w", uid, err))
	}
	return fmt.Errorf("UID FETCH %d: %w", uid, err)
}

// section is one literal of a fetch.
type section struct {
	f    *fetch
	lit  imap.LiteralReader
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

// body is the pop3server.Body of a RETR or TOP streamed from the upstream.
type body struct {
	m   *maildrop
	uid imap.UID
	f   *fetch   // the command being read; nil between commands
	sec *section // the literal being read; nil between literals
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
// chunk, for TOP) and decides what comes next. The command stays open
// after the header of a TOP n k: the first text chunk follows in it.
func (b *body) finishSection() error {
	s := b.sec
	if _, err := io.Copy(io.Discard, s); err != nil {
		return fmt.Errorf("reading UID %d: %w", b.uid, err)
	}
	b.sec = nil
	switch {
	case !b.inText && b.lines > 0:
		b.inText, b.offset = true, 0
		return nil
	case b.inText && b.lines > 0 && s.got == b.chunk:
		b.offset += s.got
		b.chunk = min(2*b.chunk, maxChunk)
		return b.closeFetch()
	default:
		// RETR, TOP n 0, enough lines, or the text ended short of them.
		if err := b.closeFetch(); err != nil {
			return err
		}
		b.end()
		return nil
	}
}

// closeFetch waits for the tagged OK of the command being read.
func (b *body) closeFetch() error {
	f := b.f
	if f == nil {
		return nil
	}
	b.f = nil
	if err := f.cmd.Close(); err != nil {
		return fmt.Errorf("UID FETCH %d: %w", b.uid, err)
	}
	return nil
}

// nextChunk finds the text chunk at offset: in the open command (TOP's
// first chunk), else with UID FETCH uid (UID BODY.PEEK[TEXT]<offset.chunk>).
// Past +OK a vanished message can only end the connection.
func (b *body) nextChunk() error {
	if b.f != nil {
		s, err := b.f.next(imap.PartSpecifierText, b.offset)
		if err != nil || s != nil {
			b.sec = s
			return err
		}
		// The server answered without the text (or in another order):
		// ask for it alone.
		if err := b.closeFetch(); err != nil {
			return err
		}
	}
	f, s, err := b.m.fetchFirst(b.uid, []*imap.FetchItemBodySection{{
		Peek:      true,
		Specifier: imap.PartSpecifierText,
		Partial:   &imap.SectionPartial{Offset: b.offset, Size: b.chunk},
	}}, imap.PartSpecifierText, b.offset)
	b.f, b.sec = f, s
	return err
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
	if b.done && b.sec == nil && b.f == nil {
		return
	}
	b.m.retire(errBodyAborted)
	clean := true
	if s := b.sec; s != nil {
		_, _ = io.Copy(io.Discard, s)
		clean = s.err == io.EOF
		b.sec = nil
	}
	// FetchCommand.Close discards the rest itself, bypassing
	// section.Read: only safe once our literal ended cleanly. The
	// command fails with the connection anyway.
	if f := b.f; f != nil && clean {
		_ = f.cmd.Close()
	}
	b.f = nil
	if b.err == nil {
		b.err = pop3server.ErrTemporary.Wrap(errBodyAborted)
	}
	b.done = true
	b.m.l.bodies.Store(false)
	if b.m.body == b {
		b.m.body = nil
	}
}
