package upstream

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

// The IMAP commands a session sends, on imapConn.

// login sends LOGIN, and then CAPABILITY unless the answer carried them
// (capabilities before login are void after it).
func (c *imapConn) login(user, pass string) error {
	b := c.start("LOGIN").astring(user).astring(pass) // LITERAL+ as offered before login
	c.caps = nil
	if err := b.run(nil, nil); err != nil {
		return err
	}
	return c.capability()
}

// authenticatePlain sends AUTHENTICATE PLAIN (RFC 4616), with the initial
// response inline where SASL-IR allows it.
func (c *imapConn) authenticatePlain(user, pass string) error {
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	saslIR := c.caps.Has(imap.CapSASLIR)
	c.caps = nil
	b := c.start("AUTHENTICATE").arg("PLAIN")
	if saslIR {
		b.arg(ir)
	}
	if err := b.send(); err != nil {
		return err
	}
	if !saslIR {
		r, err := c.next()
		if err != nil {
			return err
		}
		if !r.cont {
			if r.tag == b.tag {
				return respError(r)
			}
			return errors.New("AUTHENTICATE: no continuation request")
		}
		if _, err := io.WriteString(c.w, ir+"\r\n"); err != nil {
			return err
		}
	}
	if err := b.wait(nil, nil); err != nil {
		return err
	}
	return c.capability()
}

// capability sends CAPABILITY unless the capabilities are known.
func (c *imapConn) capability() error {
	if c.caps != nil {
		return nil
	}
	if err := c.start("CAPABILITY").run(nil, nil); err != nil {
		return err
	}
	if c.caps == nil {
		return errors.New("CAPABILITY: no capability list in the response")
	}
	return nil
}

// selectMailbox sends SELECT, with CONDSTORE for HIGHESTMODSEQ.
func (c *imapConn) selectMailbox(name string, condstore bool) (*imap.SelectData, error) {
	b := c.start("SELECT").mailbox(name)
	if condstore {
		b.arg("(CONDSTORE)")
	}
	var sel imap.SelectData
	noModSeq := false
	err := b.run(func(r *response) error {
		switch r.name {
		case "EXISTS":
			sel.NumMessages = uint32(r.num)
		case "FLAGS":
			flags, err := c.lx.flags()
			if err != nil {
				return err
			}
			sel.Flags = toFlags(flags)
		}
		return nil
	}, func(r *response) {
		switch r.code {
		case "UIDVALIDITY":
			sel.UIDValidity = uint32(r.codeNum)
		case "UIDNEXT":
			sel.UIDNext = imap.UID(r.codeNum)
		case "HIGHESTMODSEQ":
			sel.HighestModSeq = r.codeNum
		case "NOMODSEQ":
			noModSeq = true
		case "PERMANENTFLAGS":
			sel.PermanentFlags = toFlags(r.codeList)
		}
	})
	if err != nil {
		return nil, err
	}
	if noModSeq {
		sel.HighestModSeq = 0
	}
	return &sel, nil
}

func toFlags(l []string) []imap.Flag {
	out := make([]imap.Flag, len(l))
	for i, f := range l {
		out[i] = imap.Flag(f)
	}
	return out
}

// fetchListing sends UID FETCH set (UID RFC822.SIZE FLAGS), with
// CHANGEDSINCE since when it is not 0, and returns the messages whose
// response carried all three. partial lists the UIDs that only came in
// responses lacking the size or the flags: unsolicited flag updates from
// other sessions, whose real answer should also have come.
func (c *imapConn) fetchListing(set imap.UIDSet, since uint64) (msgs []cache.Message, partial []uint32, err error) {
	b := c.start("UID FETCH").uids(set).arg("(UID RFC822.SIZE FLAGS)")
	if since != 0 {
		b.arg("(CHANGEDSINCE " + strconv.FormatUint(since, 10) + ")")
	}
	err = b.run(func(r *response) error {
		if r.name != "FETCH" {
			return nil
		}
		var (
			m                 cache.Message
			hasSize, hasFlags bool
		)
		l := &c.lx
		err := l.list(func() error {
			name := l.atom()
			if !l.sp() {
				return l.syntax("FETCH item")
			}
			switch {
			case bytes.EqualFold(name, []byte("UID")):
				n, err := l.number()
				m.UID = uint32(n)
				return err
			case bytes.EqualFold(name, []byte("RFC822.SIZE")):
				n, err := l.number()
				m.Size, hasSize = int64(n), true
				return err
			case bytes.EqualFold(name, []byte("FLAGS")):
				hasFlags = true
				return l.list(func() error {
					f := l.atom()
					if len(f) == 0 {
						return l.syntax("flag")
					}
					// imapmemserver lower-cases keywords; IMAP flags
					// are case-insensitive anyway.
					m.Hidden = m.Hidden || bytes.EqualFold(f, []byte(policy.DeletedKeyword))
					return nil
				})
			}
			return l.skipValue()
		})
		if err != nil {
			return err
		}
		switch {
		case m.UID == 0:
		case hasSize && hasFlags:
			msgs = append(msgs, m)
		default:
			partial = append(partial, m.UID)
		}
		return l.end()
	}, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("UID FETCH %v: %w", set, err)
	}
	return msgs, partial, nil
}

// search sends UID SEARCH criteria and returns the UIDs found, asking for
// ranges (ESEARCH RETURN (ALL)) where the server offers them.
func (c *imapConn) search(criteria string) ([]imap.UID, error) {
	b := c.start("UID SEARCH")
	if c.caps.Has(imap.CapESearch) {
		b.arg("RETURN (ALL)")
	}
	var uids []imap.UID
	err := b.arg(criteria).run(func(r *response) error {
		l := &c.lx
		switch r.name {
		case "SEARCH":
			for l.peek() != 0 && l.peek() != '(' { // "(MODSEQ n)" may end it
				n, err := l.number()
				if err != nil {
					return err
				}
				uids = append(uids, imap.UID(n))
				l.sp()
			}
		case "ESEARCH":
			// * ESEARCH (TAG "A5") UID ALL 1:3,7
			if l.peek() == '(' {
				if err := l.skipValue(); err != nil {
					return err
				}
				l.sp()
			}
			for l.peek() != 0 {
				word := l.atom()
				l.sp()
				if bytes.EqualFold(word, []byte("ALL")) {
					set, err := parseUIDs(string(l.atom()))
					if err != nil {
						return err
					}
					uids = append(uids, set...)
				} else if !bytes.EqualFold(word, []byte("UID")) && len(word) > 0 {
					if err := l.skipValue(); err != nil {
						return err
					}
				}
				if len(word) == 0 {
					return l.syntax("ESEARCH")
				}
				l.sp()
			}
		}
		return nil
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("UID SEARCH %s: %w", criteria, err)
	}
	return uids, nil
}

// parseUIDs expands "1:3,7" (no "*": ESEARCH sends actual UIDs).
func parseUIDs(s string) ([]imap.UID, error) {
	var out []imap.UID
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: UID set %q", errSyntax, truncate(s))
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil {
				return nil, fmt.Errorf("%w: UID set %q", errSyntax, truncate(s))
			}
		}
		a, b = min(a, b), max(a, b)
		if b-a > 1<<24 {
			return nil, fmt.Errorf("%w: UID range %q too large", errSyntax, truncate(part))
		}
		for u := a; u <= b; u++ {
			out = append(out, imap.UID(u))
		}
	}
	return out, nil
}

// store sends UID STORE set ±FLAGS.SILENT (flags).
func (c *imapConn) store(set imap.UIDSet, op string, flags []imap.Flag) error {
	return c.start("UID STORE").uids(set).arg(op+".SILENT").flags(flags).run(nil, nil)
}

// uidExpunge sends UID EXPUNGE set (UIDPLUS).
func (c *imapConn) uidExpunge(set imap.UIDSet) error {
	return c.start("UID EXPUNGE").uids(set).run(nil, nil)
}

// expunge sends EXPUNGE: every \Deleted message goes.
func (c *imapConn) expunge() error { return c.start("EXPUNGE").run(nil, nil) }

// copyOrMove sends UID MOVE or UID COPY (verb) set mailbox.
func (c *imapConn) copyOrMove(verb string, set imap.UIDSet, mailbox string) error {
	return c.start(verb).uids(set).mailbox(mailbox).run(nil, nil)
}

// create sends CREATE mailbox.
func (c *imapConn) create(mailbox string) error {
	return c.start("CREATE").mailbox(mailbox).run(nil, nil)
}

// logout sends LOGOUT and reads up to its tagged OK.
func (c *imapConn) logout() error { return c.start("LOGOUT").run(nil, nil) }

// bodyFetch is a UID FETCH of one body section whose literal is being
// read: Read streams it from the socket, finish reads the rest of the
// command's responses.
type bodyFetch struct {
	c        *imapConn
	cmd      *imapCmd
	uid      imap.UID
	size     int64  // of the literal
	left     int64  // literal octets not read yet
	isInline bool   // the server sent the body as a quoted string:
	inline   []byte // what is left of it
}

// fetchBody sends UID FETCH uid (UID item) and returns once the body's
// literal has started. A FETCH that completes without the body, with NIL,
// or with NO means the message was expunged by another client:
// pop3server.ErrNoSuchMessage.
func (c *imapConn) fetchBody(uid imap.UID, item string) (*bodyFetch, error) {
	b := c.start("UID FETCH").uint(uint64(uid)).arg("(UID " + item + ")")
	if err := b.send(); err != nil {
		return nil, err
	}
	f := &bodyFetch{c: c, cmd: b, uid: uid}
	for {
		r, err := c.next()
		if err != nil {
			return nil, err
		}
		switch {
		case r.tag == b.tag:
			if err := c.lx.skip(); err != nil {
				return nil, err
			}
			c.release()
			switch r.status {
			case "OK":
				return nil, pop3server.ErrNoSuchMessage.Wrap(fmt.Errorf("UID %d: FETCH returned no body", uid))
			case "NO":
				return nil, pop3server.ErrNoSuchMessage.Wrap(fmt.Errorf("UID %d: %w", uid, respError(r)))
			}
			return nil, respError(r)
		case r.tag != "" || r.cont:
			return nil, errors.New("unexpected response to UID FETCH")
		case r.name == "FETCH":
			found, err := f.items()
			if err != nil || found {
				return f, err
			}
		}
	}
}

// items reads the items of one FETCH response up to the body's literal;
// found is false for a response without a body (an unsolicited flag
// update, or NIL), which is then read to its end.
func (f *bodyFetch) items() (found bool, err error) {
	l := &f.c.lx
	if !l.special('(') {
		return false, l.syntax("FETCH")
	}
	for !l.special(')') {
		if len(l.line) == 0 {
			return false, l.syntax("unterminated FETCH")
		}
		l.sp()
		name := l.atom()
		if !l.sp() {
			return false, l.syntax("FETCH item")
		}
		switch {
		case bytes.EqualFold(name, []byte("UID")):
			n, err := l.number()
			if err != nil {
				return false, err
			}
			if imap.UID(n) != f.uid {
				// Another message's (unsolicited) data.
				return false, l.skip()
			}
		case len(name) > 5 && bytes.EqualFold(name[:5], []byte("BODY[")):
			if n, ok := l.literalSize(); ok {
				f.size, f.left = n, n
				l.line = nil
				return true, nil
			}
			s, isNil, err := l.nstring()
			if err != nil || isNil {
				continue
			}
			f.isInline, f.inline, f.size = true, s, int64(len(s))
			return true, nil
		default:
			if err := l.skipValue(); err != nil {
				return false, err
			}
		}
	}
	return false, l.end()
}

// Read reads the body.
func (f *bodyFetch) Read(p []byte) (int, error) {
	if f.isInline {
		if len(f.inline) == 0 {
			return 0, io.EOF
		}
		n := copy(p, f.inline)
		f.inline = f.inline[n:]
		return n, nil
	}
	if f.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.c.br.Read(p)
	f.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // the connection ended inside the literal
	}
	return n, err
}

// finish reads what follows the body, once it has been read whole: the
// rest of the FETCH response, which must be well-formed (a literal longer
// than announced is not), and the command's tagged OK.
func (f *bodyFetch) finish() error {
	if f.left != 0 || len(f.inline) != 0 {
		return errors.New("body not read to its end")
	}
	l := &f.c.lx
	if !f.isInline {
		if err := l.afterLiteral(); err != nil {
			return err
		}
	}
	for !l.special(')') {
		if !l.sp() {
			return l.syntax("after the body")
		}
		l.atom()
		if !l.sp() {
			return l.syntax("FETCH item")
		}
		if err := l.skipValue(); err != nil {
			return err
		}
	}
	if err := l.end(); err != nil {
		return err
	}
	return f.cmd.wait(nil, nil)
}
