package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// A server response is a line that may go on after literals: "{n}" at the
// end of a line announces n octets, after which the response continues on
// the next line (RFC 3501 section 4.3). lexer reads the current response
// token by token; tokens are copied out, since the next line reuses the
// buffer.

var errSyntax = errors.New("malformed server response")

// lexer is the current response of an imapConn.
type lexer struct {
	c    *imapConn
	line []byte // what is left of the current line, CRLF stripped
	done bool   // the response has been read to its end
}

func (l *lexer) syntax(what string) error {
	return fmt.Errorf("%w: %s at %q", errSyntax, what, truncate(string(l.line)))
}

// peek returns the next octet of the line, 0 at its end.
func (l *lexer) peek() byte {
	if len(l.line) == 0 {
		return 0
	}
	return l.line[0]
}

// sp consumes one space if there is one.
func (l *lexer) sp() bool {
	if l.peek() == ' ' {
		l.line = l.line[1:]
		return true
	}
	return false
}

// special consumes the octet c if it comes next.
func (l *lexer) special(c byte) bool {
	if l.peek() == c {
		l.line = l.line[1:]
		return true
	}
	return false
}

// atom reads an atom (flags such as \Seen and \* included). A '['
// opens a section that runs to its ']', spaces included, and may be
// followed by "<origin>": "BODY[HEADER]<0>" is one atom. It stops at ']'
// otherwise, so "[UIDNEXT 5]" gives "UIDNEXT" and "5".
func (l *lexer) atom() []byte {
	i := 0
	for i < len(l.line) {
		c := l.line[i]
		if c == '[' {
			j := bytes.IndexByte(l.line[i:], ']')
			if j < 0 {
				break
			}
			i += j + 1
			if i < len(l.line) && l.line[i] == '<' {
				if k := bytes.IndexByte(l.line[i:], '>'); k >= 0 {
					i += k + 1
				}
			}
			continue
		}
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '{' || c == '"' || c == ']' {
			break
		}
		i++
	}
	a := l.line[:i]
	l.line = l.line[i:]
	return a
}

// number reads a number.
func (l *lexer) number() (uint64, error) {
	a := l.atom()
	n, err := strconv.ParseUint(string(a), 10, 64)
	if err != nil || len(a) == 0 {
		return 0, l.syntax("number")
	}
	return n, nil
}

// literalSize reports the size of a literal if one comes next; the
// literal itself follows in the stream.
func (l *lexer) literalSize() (int64, bool) {
	if l.peek() != '{' {
		return 0, false
	}
	n, ok := literalAtEnd(l.line)
	if !ok || bytes.IndexByte(l.line[1:], '{') >= 0 {
		return 0, false
	}
	return n, true
}

// afterLiteral reads the next line: the rest of the response after a
// literal the caller consumed.
func (l *lexer) afterLiteral() error {
	line, err := l.c.readLine()
	if err != nil {
		return err
	}
	l.line = line
	return nil
}

// nstring reads NIL, a quoted string or a literal (into memory: the guard
// bounds it outside message bodies). isNil reports NIL.
func (l *lexer) nstring() (s []byte, isNil bool, err error) {
	switch c := l.peek(); {
	case c == '"':
		s, err := l.quoted()
		return s, false, err
	case c == '{':
		n, ok := l.literalSize()
		if !ok {
			return nil, false, l.syntax("literal")
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(l.c.br, buf); err != nil {
			return nil, false, err
		}
		return buf, false, l.afterLiteral()
	default:
		a := l.atom()
		if string(bytes.ToUpper(a)) == "NIL" {
			return nil, true, nil
		}
		if len(a) == 0 {
			return nil, false, l.syntax("string")
		}
		return bytes.Clone(a), false, nil // an atom where a string belongs: be lenient
	}
}

// quoted reads a quoted string.
func (l *lexer) quoted() ([]byte, error) {
	if !l.special('"') {
		return nil, l.syntax("quoted string")
	}
	var out []byte
	for i := 0; i < len(l.line); i++ {
		switch c := l.line[i]; c {
		case '\\':
			if i+1 < len(l.line) {
				i++
				out = append(out, l.line[i])
			}
		case '"':
			l.line = l.line[i+1:]
			return out, nil
		default:
			out = append(out, c)
		}
	}
	return nil, l.syntax("unterminated quoted string")
}

// skipValue skips one value: an atom, a string, a literal or a
// parenthesized list of values.
func (l *lexer) skipValue() error {
	switch c := l.peek(); c {
	case '(':
		l.line = l.line[1:]
		for !l.special(')') {
			if len(l.line) == 0 {
				return l.syntax("unterminated list")
			}
			if l.sp() {
				continue
			}
			if err := l.skipValue(); err != nil {
				return err
			}
		}
		return nil
	case '"', '{':
		_, _, err := l.nstring()
		return err
	default:
		if len(l.atom()) == 0 {
			return l.syntax("value")
		}
		return nil
	}
}

// list calls item for each element of a parenthesized list; item must
// consume exactly one element.
func (l *lexer) list(item func() error) error {
	if !l.special('(') {
		return l.syntax("list")
	}
	for !l.special(')') {
		if len(l.line) == 0 {
			return l.syntax("unterminated list")
		}
		if l.sp() {
			continue
		}
		if err := item(); err != nil {
			return err
		}
	}
	return nil
}

// flags reads a parenthesized flag list.
func (l *lexer) flags() ([]string, error) {
	var out []string
	err := l.list(func() error {
		f := l.atom()
		if len(f) == 0 {
			return l.syntax("flag")
		}
		out = append(out, string(f))
		return nil
	})
	return out, err
}

// skip reads what is left of the response, literals included.
func (l *lexer) skip() error {
	for !l.done {
		if n, ok := literalAtEnd(l.line); ok {
			if _, err := io.CopyN(io.Discard, l.c.br, n); err != nil {
				return err
			}
			if err := l.afterLiteral(); err != nil {
				return err
			}
			continue
		}
		l.line, l.done = nil, true
	}
	return nil
}

// end checks that the response ended and marks it read.
func (l *lexer) end() error {
	if len(l.line) != 0 {
		return l.syntax("trailing data")
	}
	l.done = true
	return nil
}
