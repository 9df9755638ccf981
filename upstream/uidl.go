package upstream

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultUIDLFormat is Dovecot's default pop3_uidl_format: the UID and then
// the UIDVALIDITY, each as 8 lower-case hex digits.
const DefaultUIDLFormat = "%08Xu%08Xv"

// maxModifiers is Dovecot's MAX_MODIFIER_COUNT.
const maxModifiers = 10

// maxUIDLen is the longest unique-id RFC 1939 allows.
const maxUIDLen = 70

// uidlFormat is a parsed --uidl-format, so the listing does not parse the
// format once per message.
type uidlFormat []uidlPart

// uidlPart is literal text (variable 0) or one expanded variable.
type uidlPart struct {
	text      string
	variable  byte // 'u' (UID), 'v' (UIDVALIDITY) or 0 for text
	width     int  // zero-padded to this width, never truncated
	modifiers string
}

// UIDLFormat is a parsed --uidl-format: checked once, when parsed, and
// never parsed again per message. The zero value is DefaultUIDLFormat.
type UIDLFormat struct {
	source string
	parts  uidlFormat
}

// ParseUIDLFormat parses a --uidl-format: the Dovecot var_expand syntax
// %[0width][modifiers]<var> with the variables %u (or %{uid}) and %v (or
// %{uidvalidity}), the modifiers X (hex, lower-case as in Dovecot), U and
// L (case), and %%. It must contain the UID, and every result must be
// 1..70 characters in 0x21..0x7E.
func ParseUIDLFormat(format string) (UIDLFormat, error) {
	parts, err := parseUIDLFormat(format)
	if err != nil {
		return UIDLFormat{}, err
	}
	return UIDLFormat{source: format, parts: parts}, nil
}

// defaultUIDLFormat is DefaultUIDLFormat parsed.
var defaultUIDLFormat = func() UIDLFormat {
	f, err := ParseUIDLFormat(DefaultUIDLFormat)
	if err != nil {
		panic(err)
	}
	return f
}()

// orDefault is f, or the default format for the zero value.
func (f UIDLFormat) orDefault() UIDLFormat {
	if f.parts == nil {
		return defaultUIDLFormat
	}
	return f
}

// String is the format as given.
func (f UIDLFormat) String() string { return f.orDefault().source }

// Format expands the format for one message.
func (f UIDLFormat) Format(uid, uidValidity uint32) string {
	return f.orDefault().parts.format(uid, uidValidity)
}

// FormatUIDL expands format for one message. It returns the same string as
// Dovecot's POP3 server with pop3_uidl_format set to format.
func FormatUIDL(format string, uid, uidValidity uint32) (string, error) {
	f, err := parseUIDLFormat(format)
	if err != nil {
		return "", err
	}
	return f.format(uid, uidValidity), nil
}

func parseUIDLFormat(format string) (uidlFormat, error) {
	if format == "" {
		return nil, errors.New("uidl format is empty")
	}
	var f uidlFormat
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			f = append(f, uidlPart{text: text.String()})
			text.Reset()
		}
	}
	hasUID := false
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			if c < 0x21 || c > 0x7e {
				return nil, fmt.Errorf("uidl format %q: character %q is not allowed in a UIDL (want 0x21..0x7E)", format, c)
			}
			text.WriteByte(c)
			continue
		}
		part, n, err := parseUIDLVar(format[i+1:])
		if err != nil {
			return nil, fmt.Errorf("uidl format %q: %w", format, err)
		}
		i += n
		if part.variable == '%' {
			text.WriteByte('%')
			continue
		}
		flush()
		f = append(f, part)
		hasUID = hasUID || part.variable == 'u'
	}
	flush()
	if !hasUID {
		return nil, fmt.Errorf("uidl format %q lacks %%u: UIDLs would not be unique", format)
	}
	// Lengths grow with the values and padding is fixed, so the extremes
	// bound every result.
	if n := len(f.format(^uint32(0), ^uint32(0))); n > maxUIDLen {
		return nil, fmt.Errorf("uidl format %q yields up to %d characters (max %d)", format, n, maxUIDLen)
	}
	return f, nil
}

// parseUIDLVar parses what follows a '%' and returns the part and how many
// bytes it used.
func parseUIDLVar(s string) (uidlPart, int, error) {
	var p uidlPart
	i := 0
	if i < len(s) && s[i] == '%' {
		return uidlPart{variable: '%'}, 1, nil
	}
	if i < len(s) && s[i] == '-' {
		return p, 0, errors.New("offsets from the end (%-) are not supported for UIDLs")
	}
	zero := i < len(s) && s[i] == '0'
	if zero {
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i > start {
		w, err := strconv.Atoi(s[start:i])
		if err != nil || w > maxUIDLen {
			return p, 0, fmt.Errorf("width %q is too large", s[start:i])
		}
		if !zero {
			// Dovecot truncates to a width without 0: UIDLs would collide.
			return p, 0, fmt.Errorf("width %s without 0 truncates in Dovecot; use %%0%su", s[start:i], s[start:i])
		}
		p.width = w
	}
	if i < len(s) && s[i] == '.' {
		return p, 0, errors.New("offsets (%N.M) are not supported for UIDLs")
	}
	for i < len(s) && strings.IndexByte("XUL", s[i]) >= 0 {
		p.modifiers += s[i : i+1]
		i++
	}
	if len(p.modifiers) > maxModifiers {
		return p, 0, fmt.Errorf("more than %d modifiers", maxModifiers)
	}
	if i >= len(s) {
		return p, 0, errors.New("format ends inside a %-sequence")
	}
	switch c := s[i]; c {
	case 'u', 'v':
		p.variable = c
		return p, i + 1, nil
	case '{':
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return p, 0, errors.New("unterminated %{")
		}
		switch name := s[i+1 : i+end]; name {
		case "uid":
			p.variable = 'u'
		case "uidvalidity":
			p.variable = 'v'
		default:
			return p, 0, fmt.Errorf("unsupported variable %%{%s} (want uid or uidvalidity)", name)
		}
		return p, i + end + 1, nil
	default:
		// %m, %f, %g and friends depend on message content or storage.
		return p, 0, fmt.Errorf("unsupported variable %%%c (want %%u or %%v)", c)
	}
}

func (f uidlFormat) format(uid, uidValidity uint32) string {
	var buf [maxUIDLen]byte
	return string(f.append(buf[:0], uid, uidValidity))
}

// maxLen is the length of the longest UIDL f yields: lengths grow with
// the values and padding is fixed, so the largest values give it.
func (f uidlFormat) maxLen() int {
	var buf [maxUIDLen]byte
	return len(f.append(buf[:0], ^uint32(0), ^uint32(0)))
}

// fixedLen is the length of every UIDL f yields when they all have the
// same length (every variable zero-padded to at least its widest value,
// as in the default), else 0.
func (f uidlFormat) fixedLen() int {
	var buf [maxUIDLen]byte
	if n := len(f.append(buf[:0], 0, 0)); n == f.maxLen() {
		return n
	}
	return 0
}

// append appends the UIDL of one message to dst without allocating for
// the usual formats (plain or hex numbers); a listing formats one per
// message at every login.
func (f uidlFormat) append(dst []byte, uid, uidValidity uint32) []byte {
	for _, p := range f {
		if p.variable == 0 {
			dst = append(dst, p.text...)
			continue
		}
		v := uid
		if p.variable == 'v' {
			v = uidValidity
		}
		switch p.modifiers {
		case "X", "XL":
			// As Dovecot's m_str_hex: print with "%llx", lower-case.
			dst = appendHex(dst, v, p.width)
			continue
		}
		var num [32]byte
		var s []byte
		switch p.modifiers {
		case "", "L", "U":
			s = strconv.AppendUint(num[:0], uint64(v), 10)
		default:
			s = []byte(applyModifiers(strconv.FormatUint(uint64(v), 10), p.modifiers))
		}
		for n := len(s); n < p.width; n++ {
			dst = append(dst, '0')
		}
		dst = append(dst, s...)
	}
	return dst
}

// appendHex appends v in lower-case hex, zero-padded to width.
func appendHex(dst []byte, v uint32, width int) []byte {
	const digits = "0123456789abcdef"
	var buf [8]byte
	for i := 7; i >= 0; i-- {
		buf[i] = digits[v&0xf]
		v >>= 4
	}
	start := 0 // the first significant digit
	for start < 7 && buf[start] == '0' {
		start++
	}
	// Pad with buf's own leading zeros first, then with more.
	if w := 8 - width; w < start {
		start = max(w, 0)
	}
	for n := 8; n < width; n++ {
		dst = append(dst, '0')
	}
	return append(dst, buf[start:]...)
}

// applyModifiers applies Dovecot's modifiers to a variable's decimal text
// one after another, as var_expand does.
func applyModifiers(s, modifiers string) string {
	for _, m := range modifiers {
		switch m {
		case 'X':
			// As Dovecot's m_str_hex: parse as decimal (0 if that
			// fails) and print with "%llx", lower-case.
			n, _ := strconv.ParseUint(s, 10, 64)
			s = strconv.FormatUint(n, 16)
		case 'U':
			s = strings.ToUpper(s)
		case 'L':
			s = strings.ToLower(s)
		}
	}
	return s
}
