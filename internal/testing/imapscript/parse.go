package imapscript

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits that keep a misbehaving client from exhausting the fake.
const (
	maxCommandLine = 64 << 10
	maxLiteral     = 1 << 20
)

var errSyntax = errors.New("syntax error")

// readCommand reads one command: its line and, for every literal it
// announces, the literal's octets and the rest of the line. A synchronizing
// literal is acknowledged with a continuation request. The result is the
// command as sent, CRLF of the last line removed.
func readCommand(br *bufio.Reader, w *bufio.Writer) (string, error) {
	var b strings.Builder
	for {
		line, err := readLine(br)
		if err != nil {
			return "", err
		}
		b.WriteString(line)
		n, sync, ok := literalAtEnd(line)
		if !ok {
			return b.String(), nil
		}
		if n > maxLiteral || b.Len() > maxCommandLine {
			return "", fmt.Errorf("literal of %d octets: too large", n)
		}
		if sync {
			w.WriteString("+ go ahead\r\n")
			if err := w.Flush(); err != nil {
				return "", err
			}
		}
		b.WriteString("\r\n")
		if _, err := io.CopyN(&b, br, n); err != nil {
			return "", err
		}
	}
}

// readLine returns one line without its CRLF.
func readLine(br *bufio.Reader) (string, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxCommandLine {
			return "", errors.New("command line too long")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		return strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r"), nil
	}
}

// literalAtEnd parses "{N}" or "{N+}" at the end of a line.
func literalAtEnd(line string) (n int64, sync, ok bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false, false
	}
	open := strings.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	digits := line[open+1 : len(line)-1]
	sync = !strings.HasSuffix(digits, "+")
	digits = strings.TrimSuffix(digits, "+")
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, sync, true
}

// token is one argument of a command: an atom (including BODY[...]<...>
// forms), a quoted string or literal (isString), or a parenthesized list.
type token struct {
	text     string
	isString bool
	list     []token
	isList   bool
}

// tokenize splits the arguments of a command.
func tokenize(s string) ([]token, error) {
	p := &tokenizer{s: s}
	toks, err := p.items(false)
	if err != nil {
		return nil, err
	}
	return toks, nil
}

type tokenizer struct {
	s string
	i int
}

func (p *tokenizer) items(inList bool) ([]token, error) {
	var toks []token
	for {
		for p.i < len(p.s) && p.s[p.i] == ' ' {
			p.i++
		}
		if p.i >= len(p.s) {
			if inList {
				return nil, errSyntax
			}
			return toks, nil
		}
		switch c := p.s[p.i]; c {
		case ')':
			if !inList {
				return nil, errSyntax
			}
			p.i++
			return toks, nil
		case '(':
			p.i++
			list, err := p.items(true)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{list: list, isList: true})
		case '"':
			t, err := p.quoted()
			if err != nil {
				return nil, err
			}
			toks = append(toks, t)
		case '{':
			t, err := p.literal()
			if err != nil {
				return nil, err
			}
			toks = append(toks, t)
		default:
			toks = append(toks, p.atom())
		}
	}
}

func (p *tokenizer) quoted() (token, error) {
	var b strings.Builder
	for p.i++; p.i < len(p.s); p.i++ {
		switch c := p.s[p.i]; c {
		case '\\':
			p.i++
			if p.i < len(p.s) {
				b.WriteByte(p.s[p.i])
			}
		case '"':
			p.i++
			return token{text: b.String(), isString: true}, nil
		default:
			b.WriteByte(c)
		}
	}
	return token{}, errSyntax
}

func (p *tokenizer) literal() (token, error) {
	end := strings.Index(p.s[p.i:], "}\r\n")
	if end < 0 {
		return token{}, errSyntax
	}
	digits := strings.TrimSuffix(p.s[p.i+1:p.i+end], "+")
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 {
		return token{}, errSyntax
	}
	start := p.i + end + 3
	if start+n > len(p.s) {
		return token{}, errSyntax
	}
	p.i = start + n
	return token{text: p.s[start : start+n], isString: true}, nil
}

// atom reads up to a space or parenthesis, keeping "[...]" whole so that
// BODY.PEEK[HEADER.FIELDS (A B)]<0.10> is one token.
func (p *tokenizer) atom() token {
	start, depth := p.i, 0
	for ; p.i < len(p.s); p.i++ {
		switch p.s[p.i] {
		case '[':
			depth++
		case ']':
			depth--
		case ' ', '(', ')':
			if depth <= 0 {
				return token{text: p.s[start:p.i]}
			}
		}
	}
	return token{text: p.s[start:]}
}

// uidSet is a parsed sequence set of UIDs; "*" is resolved against the
// mailbox when matched.
type uidSet []uidRange

type uidRange struct{ lo, hi uint32 } // 0 stands for "*"

func parseSet(s string) (uidSet, error) {
	if s == "" {
		return nil, errSyntax
	}
	var set uidSet
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := parseSetNum(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parseSetNum(hi); err != nil {
				return nil, err
			}
		}
		set = append(set, uidRange{a, b})
	}
	return set, nil
}

func parseSetNum(s string) (uint32, error) {
	if s == "*" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, errSyntax
	}
	return uint32(n), nil
}

// contains reports whether uid is in the set, "*" being max.
func (set uidSet) contains(uid, max uint32) bool {
	for _, r := range set {
		lo, hi := r.lo, r.hi
		if lo == 0 {
			lo = max
		}
		if hi == 0 {
			hi = max
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if uid >= lo && uid <= hi {
			return true
		}
	}
	return false
}
