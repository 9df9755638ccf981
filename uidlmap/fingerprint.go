// Package uidlmap keeps POP3 UIDLs stable across a UIDVALIDITY change, a
// move to another IMAP server and a migration from another POP3 server
// (docs/migration.md). The fingerprints and the plan are pure (no I/O, no
// IMAP; OnStore adapts the state store to Store). The upstream layer
// lists the mailbox, asks a Plan which messages need a fingerprint, fetches
// their header fields and lets the Plan assign UIDLs; the records to store
// come back with them.
//
// The rules, in order of importance: a UIDL shown for one message is never
// shown for another (a client that has it would never download the other
// message: a hidden message is a lost message), two messages never share a
// UIDL, and a message keeps the UIDL it was shown whenever that can be
// proven from its fingerprint. A duplicate download is the price of doubt.
package uidlmap

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"
)

// HeaderFields are the header fields a fingerprint hashes, in the form an
// IMAP BODY.PEEK[HEADER.FIELDS (...)] takes. Why these and not the whole
// header:
//
//   - Cost: a new message costs one small fetch of these fields (a few
//     hundred octets, answered from Dovecot's header cache) instead of the
//     whole header (often 5-20 KB of Received and DKIM lines); the first
//     listing of a large mailbox fingerprints every message.
//   - Stability: these are set once by the sender's software. Headers
//     added on the way (Received, Return-Path, Delivered-To, X-Spam-*,
//     mbox's Status and X-UID) differ after a re-delivery, an imapsync or
//     an mbox-to-maildir conversion, and would break every match.
//   - Discrimination: Message-ID and Date single a message out; for the
//     messages without a Message-ID (scanners, cron mail) From, To,
//     Subject, Date and the MIME boundary in Content-Type still do.
//
// A POP3 server's TOP n 0 (uidl import) gives the whole header, which
// Parse filters to the same fields, so both sides hash the same text.
// Messages these fields cannot tell apart (generated mail) are told apart
// by Fingerprint.Body.
var HeaderFields = []string{"MESSAGE-ID", "DATE", "FROM", "TO", "CC", "SUBJECT", "IN-REPLY-TO", "CONTENT-TYPE"}

// maxHeaderBytes bounds how much of a header Parse reads; the rest is
// ignored (a fingerprint only needs the identity fields, which come first
// in practice, and nothing here may hold a whole message in memory).
const maxHeaderBytes = 256 << 10

// maxFieldValue bounds one kept field value.
const maxFieldValue = 4 << 10

// Fingerprint identifies a message's content well enough to recognise it
// in another mailbox state. The zero Hash means unknown: such a message
// never matches anything.
type Fingerprint struct {
	Size      int64  // RFC822.SIZE, or the POP3 LIST size
	MessageID string // the Message-ID field, unfolded and trimmed; "" when absent
	Date      string // the Date field, unfolded and trimmed; "" when absent
	Hash      string // hex SHA-256 (first 16 octets) of the HeaderFields, normalised
	// Body is the hex SHA-256 (first 16 octets) of the first BodyPrefix
	// octets of the body, or "" when not read (a POP3 server's TOP n 0).
	// It tells apart messages whose header fields and size are the same
	// (generated mail, a cron job's reports) when both sides have it.
	Body string
}

// BodyPrefix is how much of a body Fingerprint.Body hashes: enough to
// differ between generated messages, small enough to fetch for every new
// message (BODY.PEEK[TEXT]<0.256>).
const BodyPrefix = 256

// HashBody hashes the first BodyPrefix octets of r (a body, or the answer
// to a partial fetch of its first octets) for Fingerprint.Body.
func HashBody(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(r, BodyPrefix)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// Known reports whether f can match anything.
func (f Fingerprint) Known() bool { return f.Hash != "" }

// Parse reads a message header (a whole message, a whole header, or the
// answer to a HEADER.FIELDS fetch; CRLF or LF) and fingerprints it. Only
// HeaderFields count. Each kept field is normalised (name lower-cased,
// value unfolded, runs of white space made one space, trimmed) and the
// lines are sorted before hashing, so the field order a server returns
// does not matter. size is copied into the result.
func Parse(r io.Reader, size int64) (Fingerprint, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxHeaderBytes), 4096)
	var (
		lines   []string
		cur     []byte // the field being read, folded lines joined
		curKeep bool
	)
	flush := func() {
		if curKeep {
			if l, ok := normalise(cur); ok {
				lines = append(lines, l)
			}
		}
		cur, curKeep = cur[:0], false
	}
	for {
		line, err := readLine(br)
		if len(line) == 0 && err == nil {
			break // the blank line ending the header
		}
		if len(line) > 0 {
			if line[0] == ' ' || line[0] == '\t' {
				if curKeep && len(cur) < maxFieldValue {
					cur = append(cur, ' ')
					cur = append(cur, line...)
				}
			} else {
				flush()
				curKeep = wanted(line)
				if curKeep {
					cur = append(cur, line...)
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return Fingerprint{}, err
		}
	}
	flush()
	f := Fingerprint{Size: size}
	slices.Sort(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
		name, value, _ := strings.Cut(l, ":")
		switch name {
		case "message-id":
			f.MessageID = value
		case "date":
			f.Date = value
		}
	}
	f.Hash = hex.EncodeToString(h.Sum(nil)[:16])
	return f, nil
}

// readLine returns the next line without its line ending; a line longer
// than the buffer is truncated to what fits (the rest is skipped). At the
// end of input it returns what is left with io.EOF.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		out := bytes.Clone(line)
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
		return out, err
	}
	return bytes.TrimRight(line, "\r\n"), err
}

// wanted reports whether a header line starts one of HeaderFields.
func wanted(line []byte) bool {
	name, _, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return false
	}
	name = bytes.TrimRight(name, " \t")
	for _, f := range HeaderFields {
		if bytes.EqualFold(name, []byte(f)) {
			return true
		}
	}
	return false
}

// normalise turns one unfolded field into "name:value".
func normalise(field []byte) (string, bool) {
	name, value, ok := bytes.Cut(field, []byte(":"))
	if !ok {
		return "", false
	}
	if len(value) > maxFieldValue {
		value = value[:maxFieldValue]
	}
	var b strings.Builder
	b.WriteString(strings.ToLower(string(bytes.TrimRight(name, " \t"))))
	b.WriteByte(':')
	b.WriteString(strings.Join(strings.Fields(string(value)), " "))
	return b.String(), true
}
