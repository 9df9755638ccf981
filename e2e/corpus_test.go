package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// corpusMessage is one message of the shared corpus. Every message has a
// unique Message-ID header naming it, so a delivered copy can be matched to
// its original; Raw has CRLF line ends throughout, as IMAP stores them.
type corpusMessage struct {
	Name string
	Raw  []byte
}

// bigAttachmentRaw is the size of the attachment before base64: its
// encoding is 20 MiB.
const bigAttachmentRaw = 15 << 20

// corpus returns the shared corpus, built once: the cases the issue names
// (leading dots and a lone dot, 8-bit UTF-8, a line past 998 octets, a
// 20 MiB base64 attachment, a header with no body) plus a plain message.
var corpus = sync.OnceValue(func() []corpusMessage {
	return []corpusMessage{
		{"plain", message("plain", "Plain text", nil,
			"Hello,\r\n\r\nthis is a plain text message.\r\n\r\n-- \r\nAlice\r\n")},
		{"dots", message("dots", "Lines that start with dots", nil,
			".leading dot\r\n"+
				"..two leading dots\r\n"+
				".\r\n"+
				"the line above is a lone dot\r\n"+
				"...\r\n"+
				". space after a dot\r\n"+
				"text.\r\n"+
				".\r\n")}, // the last line too is a lone dot
		{"utf8", message("utf8", "8-bit body", []string{
			"MIME-Version: 1.0",
			"Content-Type: text/plain; charset=utf-8",
			"Content-Transfer-Encoding: 8bit",
		}, "Grüße aus Köln, ¡hola!, Ελληνικά, 日本語のテキスト, emoji 📬✉️.\r\n"+
			"Bytes 0x80-0xFF in UTF-8: \u00a0\u00e9\u00ff\u0100.\r\n")},
		{"longline", message("longline", "A line longer than 998 octets", nil,
			"short line\r\n"+longLine(5000)+"\r\n"+"."+longLine(1500)+"\r\nend\r\n")},
		{"big", bigMessage()},
		{"headeronly", []byte(headerBlock("headeronly", "Header only, no body", nil) + "\r\n")},
	}
})

// headerBlock returns the header lines (each ending in CRLF) of a corpus
// message, without the blank line that ends the header.
func headerBlock(name, subject string, extra []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Return-Path: <alice@example.org>\r\n")
	fmt.Fprintf(&b, "From: Alice Example <alice@example.org>\r\n")
	fmt.Fprintf(&b, "To: Bob Example <bob@example.net>\r\n")
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n")
	fmt.Fprintf(&b, "Message-ID: <%s@e2e.popbridge.test>\r\n", name)
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	return b.String()
}

func message(name, subject string, extra []string, body string) []byte {
	return []byte(headerBlock(name, subject, extra) + "\r\n" + body)
}

// longLine returns n octets of printable text with no white space, so no
// client can fold it.
func longLine(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[(i*7+i/61)%len(alphabet)]
	}
	return string(b)
}

// bigMessage is a multipart message with a text part and a 20 MiB base64
// attachment of deterministic pseudo-random bytes (SHA-256 in counter
// mode), in 76-character lines.
func bigMessage() []byte {
	raw := make([]byte, 0, bigAttachmentRaw)
	var ctr [8]byte
	for i := uint64(0); len(raw) < bigAttachmentRaw; i++ {
		binary.BigEndian.PutUint64(ctr[:], i)
		sum := sha256.Sum256(ctr[:])
		raw = append(raw, sum[:]...)
	}
	raw = raw[:bigAttachmentRaw]
	enc := base64.StdEncoding.EncodeToString(raw)

	const boundary = "=_popbridge_e2e_boundary"
	var b bytes.Buffer
	b.WriteString(headerBlock("big", "A 20 MiB attachment", []string{
		"MIME-Version: 1.0",
		`Content-Type: multipart/mixed; boundary="` + boundary + `"`,
	}))
	b.WriteString("\r\nThis is a multi-part message in MIME format.\r\n")
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n\r\n")
	b.WriteString("The attachment is 15 MiB of pseudo-random bytes.\r\n")
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: application/octet-stream\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n")
	b.WriteString(`Content-Disposition: attachment; filename="random.bin"` + "\r\n\r\n")
	for len(enc) > 0 {
		n := min(76, len(enc))
		b.WriteString(enc[:n] + "\r\n")
		enc = enc[n:]
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes()
}

// appendCorpus stores the corpus in user's INBOX, in corpus order, and
// returns the UIDs Dovecot gave the messages.
func appendCorpus(t testing.TB, d *testenv.Dovecot, user string) []imap.UID {
	t.Helper()
	return appendMessages(t, d, user, corpus())
}

// smallCorpus is the corpus without the 20 MiB message, for tests about
// state rather than transfer.
func smallCorpus() []corpusMessage {
	var out []corpusMessage
	for _, m := range corpus() {
		if m.Name != "big" {
			out = append(out, m)
		}
	}
	return out
}

// appendMessages stores msgs in user's INBOX in order and returns their
// UIDs.
func appendMessages(t testing.TB, d *testenv.Dovecot, user string, msgs []corpusMessage) []imap.UID {
	t.Helper()
	var uids []imap.UID
	for _, m := range msgs {
		uids = append(uids, d.Append(t, user, "INBOX", m.Raw))
	}
	return uids
}
