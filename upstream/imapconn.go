package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
)

// imapConn is the upstream IMAP connection after the greeting: a
// synchronous client that sends one command, reads its responses up to
// the tagged one, and has no goroutine of its own. A session is strictly
// request-response (a POP3 command, then the IMAP commands it needs), so
// nothing is lost by not pipelining, and a body streams from the socket
// to the POP3 client with no hand-off between goroutines. Between
// commands the connection holds no read buffer (see release).
type imapConn struct {
	w    io.Writer     // the plain-text stream: TLS, or the raw connection
	src  io.Reader     // what br reads: the guard over the plain-text stream
	br   *bufio.Reader // nil between commands; see reader and release
	caps imap.CapSet   // current capabilities
	tagN uint64

	lx      lexer    // the response being read
	resp    response // what next returns; reused
	lineBuf []byte   // the current line; reused
	cmd     []byte   // the command being built; reused
	bye     string   // the text of an untagged BYE, once the server sent one
}

// readers holds the read buffers of connections between commands.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// maxKeptLine bounds the line buffer kept between responses; a rare
// longer line (a big UID SEARCH answer) gets a buffer of its own.
const maxKeptLine = 16 << 10

func newIMAPConn(w io.Writer, src io.Reader, br *bufio.Reader, caps imap.CapSet) *imapConn {
	c := &imapConn{w: w, src: src, br: br, caps: caps}
	c.lx = lexer{c: c, done: true}
	return c
}

// reader makes br usable.
func (c *imapConn) reader() {
	if c.br == nil {
		c.br = readers.Get().(*bufio.Reader)
		c.br.Reset(c.src)
	}
}

// release gives br back to the pool once a command is complete and
// nothing is buffered: an idle session then holds no read buffer (what
// the server sends meanwhile waits in the socket).
func (c *imapConn) release() {
	if c.br != nil && c.br.Buffered() == 0 && c.lx.done {
		c.br.Reset(nil)
		readers.Put(c.br)
		c.br = nil
	}
	if cap(c.lineBuf) > maxKeptLine {
		c.lineBuf = nil
	}
}

// readLine reads one line without its CRLF (a bare LF is accepted). The
// guard below br bounds its length.
func (c *imapConn) readLine() ([]byte, error) {
	c.reader()
	c.lineBuf = c.lineBuf[:0]
	for {
		chunk, err := c.br.ReadSlice('\n')
		c.lineBuf = append(c.lineBuf, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
				if c.bye != "" {
					err = fmt.Errorf("server closed the connection: %s", truncate(c.bye))
				}
			}
			return nil, err
		}
		line := c.lineBuf[:len(c.lineBuf)-1]
		return bytes.TrimSuffix(line, []byte("\r")), nil
	}
}

// response is the start of one server response; for untagged data, c.lx
// is left after name for the caller to read on (or not: the rest is
// skipped by the next read).
type response struct {
	tag    string // "" for untagged and continuation requests
	cont   bool   // a continuation request ("+ ...")
	status string // OK, NO, BAD, BYE or PREAUTH; "" for data
	code   string // the response code's name, upper case
	// codeNum is the argument of UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ;
	// codeList that of PERMANENTFLAGS and CAPABILITY.
	codeNum  uint64
	codeList []string
	text     string
	num      uint64 // the number of "* n EXISTS" and the like
	name     string // the data name, upper case: FETCH, EXISTS, SEARCH...
}

// next reads the start of the next response, skipping what is left of
// the previous one. Capabilities in responses update c.caps; a BYE is
// noted (the connection is about to end).
func (c *imapConn) next() (*response, error) {
	if err := c.lx.skip(); err != nil {
		return nil, err
	}
	line, err := c.readLine()
	if err != nil {
		return nil, err
	}
	c.lx.line, c.lx.done = line, false
	l := &c.lx
	r := &c.resp
	*r = response{}
	switch {
	case l.special('+'):
		r.cont = true
		l.sp()
		r.text = string(l.line)
		return r, l.skip()
	case l.special('*'):
		if !l.sp() {
			return nil, l.syntax("untagged response")
		}
	default:
		r.tag = string(l.atom())
		if r.tag == "" || !l.sp() {
			return nil, l.syntax("tagged response")
		}
	}
	first := l.atom()
	if n, err := strconv.ParseUint(string(first), 10, 64); err == nil && r.tag == "" {
		// "* 3 EXISTS", "* 7 FETCH (...)".
		r.num = n
		if !l.sp() {
			return nil, l.syntax("message data")
		}
		first = l.atom()
	}
	word := wordOf(first)
	switch word {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		if r.num == 0 {
			r.status = word
			if err := c.statusTail(r); err != nil {
				return nil, err
			}
			if word == "BYE" {
				c.bye = r.text
			}
			return r, nil
		}
	}
	if r.tag != "" {
		return nil, l.syntax("tagged response status")
	}
	r.name = word
	if word == "CAPABILITY" {
		var caps []string
		for l.sp() {
			if a := l.atom(); len(a) > 0 {
				caps = append(caps, string(a))
			}
		}
		c.caps = capSetOf(caps)
		return r, l.skip()
	}
	l.sp()
	return r, nil
}

// statusTail reads "[code args] text" after a status word.
func (c *imapConn) statusTail(r *response) error {
	l := &c.lx
	l.sp()
	if l.special('[') {
		r.code = strings.ToUpper(string(l.atom()))
		switch r.code {
		case "UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ":
			l.sp()
			n, err := l.number()
			if err != nil {
				return err
			}
			r.codeNum = n
		case "PERMANENTFLAGS":
			l.sp()
			flags, err := l.flags()
			if err != nil {
				return err
			}
			r.codeList = flags
		case "CAPABILITY":
			for l.sp() {
				if a := l.atom(); len(a) > 0 {
					r.codeList = append(r.codeList, string(a))
				}
			}
			c.caps = capSetOf(r.codeList)
		}
		// Arguments of other codes (COPYUID ...) are not needed.
		if i := bytes.IndexByte(l.line, ']'); i >= 0 {
			l.line = l.line[i+1:]
		} else {
			return l.syntax("response code")
		}
		l.sp()
	}
	r.text = string(l.line)
	l.line = nil
	return l.skip()
}

// words are the response words next compares, so that a 50,000-message
// listing does not allocate one string per response for "FETCH".
var words = []string{"FETCH", "OK", "NO", "BAD", "BYE", "PREAUTH", "EXISTS", "EXPUNGE", "RECENT",
	"SEARCH", "ESEARCH", "CAPABILITY", "FLAGS", "LIST", "STATUS", "ENABLED", "VANISHED"}

func wordOf(b []byte) string {
	for _, w := range words {
		if len(b) == len(w) && bytes.EqualFold(b, []byte(w)) {
			return w
		}
	}
	return strings.ToUpper(string(b))
}

func capSetOf(caps []string) imap.CapSet {
	set := make(imap.CapSet, len(caps))
	for _, s := range caps {
		set[canonicalCap(s)] = struct{}{}
	}
	return set
}

// respError is the error of a tagged NO or BAD.
func respError(r *response) error {
	t := imap.StatusResponseTypeNo
	if r.status == "BAD" {
		t = imap.StatusResponseTypeBad
	}
	return &imap.Error{Type: t, Code: imap.ResponseCode(r.code), Text: truncate(r.text)}
}

// imapCmd is a command being built: tag, name and arguments, written in
// one write by send.
type imapCmd struct {
	c   *imapConn
	tag string
	err error
}

// start begins the command name (arguments follow with the methods).
func (c *imapConn) start(name string) *imapCmd {
	c.tagN++
	tag := "A" + strconv.FormatUint(c.tagN, 10)
	c.cmd = append(append(append(c.cmd[:0], tag...), ' '), name...)
	return &imapCmd{c: c, tag: tag}
}

// arg appends a space and s, which must be atom-safe or otherwise
// already encoded (a UID set, a parenthesized list).
func (b *imapCmd) arg(s string) *imapCmd {
	b.c.cmd = append(append(b.c.cmd, ' '), s...)
	return b
}

func (b *imapCmd) uint(n uint64) *imapCmd {
	b.c.cmd = strconv.AppendUint(append(b.c.cmd, ' '), n, 10)
	return b
}

func (b *imapCmd) uids(set imap.UIDSet) *imapCmd { return b.arg(set.String()) }

// flags appends a parenthesized flag list.
func (b *imapCmd) flags(flags []imap.Flag) *imapCmd {
	b.c.cmd = append(b.c.cmd, " ("...)
	for i, f := range flags {
		if i > 0 {
			b.c.cmd = append(b.c.cmd, ' ')
		}
		b.c.cmd = append(b.c.cmd, f...)
	}
	b.c.cmd = append(b.c.cmd, ')')
	return b
}

// mailbox appends a mailbox name: INBOX as is, others in modified UTF-7.
func (b *imapCmd) mailbox(name string) *imapCmd {
	if strings.EqualFold(name, "INBOX") {
		return b.arg("INBOX")
	}
	return b.astring(encodeMailbox(name))
}

// astring appends s as a quoted string, or as a literal when it cannot be
// quoted (8-bit octets, or long): non-synchronizing with LITERAL+ (or
// LITERAL- up to 4096 octets), else synchronizing, which means waiting
// for the server's go-ahead.
func (b *imapCmd) astring(s string) *imapCmd {
	if b.err != nil {
		return b
	}
	c := b.c
	if quotable(s) {
		c.cmd = append(c.cmd, ' ', '"')
		for i := 0; i < len(s); i++ {
			if s[i] == '"' || s[i] == '\\' {
				c.cmd = append(c.cmd, '\\')
			}
			c.cmd = append(c.cmd, s[i])
		}
		c.cmd = append(c.cmd, '"')
		return b
	}
	if c.caps.Has(imap.CapLiteralPlus) || (c.caps.Has(imap.CapLiteralMinus) && len(s) <= 4096) {
		c.cmd = append(strconv.AppendInt(append(c.cmd, " {"...), int64(len(s)), 10), "+}\r\n"...)
		c.cmd = append(c.cmd, s...)
		return b
	}
	c.cmd = append(strconv.AppendInt(append(c.cmd, " {"...), int64(len(s)), 10), "}\r\n"...)
	if _, err := c.w.Write(c.cmd); err != nil {
		b.err = err
		return b
	}
	c.cmd = c.cmd[:0]
	for {
		r, err := c.next()
		if err != nil {
			b.err = err
			return b
		}
		if r.cont {
			break
		}
		if r.tag == b.tag {
			b.err = respError(r)
			return b
		}
	}
	c.cmd = append(c.cmd, s...)
	return b
}

func quotable(s string) bool {
	if len(s) > 4096 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || c == '\r' || c == '\n' || c >= 0x80 {
			return false
		}
	}
	return true
}

// send ends the command and writes it.
func (b *imapCmd) send() error {
	if b.err != nil {
		return b.err
	}
	b.c.cmd = append(b.c.cmd, '\r', '\n')
	_, err := b.c.w.Write(b.c.cmd)
	if cap(b.c.cmd) > maxKeptLine {
		b.c.cmd = nil
	}
	return err
}

// wait reads responses up to the tagged one of b, passing untagged data to
// data (which may read on with c.lx, or leave it) and untagged status
// responses (their codes: UIDNEXT...) to status; either may be nil. A
// tagged NO or BAD is an *imap.Error.
func (b *imapCmd) wait(data func(r *response) error, status func(r *response)) error {
	c := b.c
	for {
		r, err := c.next()
		if err != nil {
			return err
		}
		switch {
		case r.tag == "" && r.status != "":
			if status != nil {
				status(r)
			}
		case r.tag == b.tag:
			if err := c.lx.skip(); err != nil {
				return err
			}
			c.release()
			if r.status != "OK" {
				return respError(r)
			}
			return nil
		case r.tag != "":
			return fmt.Errorf("response for unknown tag %q", truncate(r.tag))
		case r.cont:
			return errors.New("unexpected continuation request")
		case r.name != "" && data != nil:
			if err := data(r); err != nil {
				return err
			}
		}
	}
}

// run sends b and waits for it.
func (b *imapCmd) run(data func(r *response) error, status func(r *response)) error {
	if err := b.send(); err != nil {
		return err
	}
	return b.wait(data, status)
}
