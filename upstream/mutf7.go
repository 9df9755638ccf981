package upstream

import (
	"encoding/base64"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// mutf7 is the base64 alphabet of modified UTF-7 (RFC 3501 section
// 5.1.3): "," instead of "/", no padding.
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// encodeMailbox encodes a UTF-8 mailbox name in modified UTF-7, as IMAP4rev1
// servers expect: printable ASCII stands for itself ("&" as "&-"), every
// other run of characters is "&" + base64 of its UTF-16BE + "-".
func encodeMailbox(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); {
		if c := name[i]; c >= 0x20 && c <= 0x7e {
			b.WriteByte(c)
			if c == '&' {
				b.WriteByte('-')
			}
			i++
			continue
		}
		j := i + 1
		for j < len(name) && (name[j] < 0x20 || name[j] > 0x7e) {
			j++
		}
		var u16 []byte
		for _, r := range name[i:j] {
			if r == utf8.RuneError {
				r = '\uFFFD'
			}
			if r1, r2 := utf16.EncodeRune(r); r1 != '\uFFFD' {
				u16 = append(u16, byte(r1>>8), byte(r1), byte(r2>>8), byte(r2))
				continue
			}
			u16 = append(u16, byte(r>>8), byte(r))
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(u16))
		b.WriteByte('-')
		i = j
	}
	return b.String()
}
