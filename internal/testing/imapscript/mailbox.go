package imapscript

import (
	"bytes"
	"slices"
	"strings"
)

// Message is one stored message.
type Message struct {
	UID   uint32
	Flags []string // as stored; compared case-insensitively
	Body  []byte   // BODY[] octet for octet; RFC822.SIZE is len(Body)
}

// HasFlag reports whether m carries flag (case-insensitive).
func (m Message) HasFlag(flag string) bool {
	return slices.ContainsFunc(m.Flags, func(f string) bool { return strings.EqualFold(f, flag) })
}

func (m Message) clone() Message {
	m.Flags = slices.Clone(m.Flags)
	m.Body = bytes.Clone(m.Body)
	return m
}

type account struct {
	password string
	boxes    map[string]*mailbox // keyed by canonical name (INBOX upper-case)
}

type mailbox struct {
	uidValidity uint32
	uidNext     uint32
	msgs        []*Message // in UID order
}

func newMailbox(validity uint32) *mailbox {
	return &mailbox{uidValidity: validity, uidNext: 1}
}

func (mb *mailbox) append(body []byte, flags []string) uint32 {
	uid := mb.uidNext
	mb.uidNext++
	mb.msgs = append(mb.msgs, &Message{UID: uid, Flags: slices.Clone(flags), Body: bytes.Clone(body)})
	return uid
}

// maxUID is what "*" means in a UID set.
func (mb *mailbox) maxUID() uint32 {
	if len(mb.msgs) == 0 {
		return 0
	}
	return mb.msgs[len(mb.msgs)-1].UID
}

// matching returns the sequence numbers (1-based) and messages in set.
func (mb *mailbox) matching(set uidSet) ([]int, []*Message) {
	var seqs []int
	var msgs []*Message
	max := mb.maxUID()
	for i, m := range mb.msgs {
		if set.contains(m.UID, max) {
			seqs = append(seqs, i+1)
			msgs = append(msgs, m)
		}
	}
	return seqs, msgs
}

// expunge removes the \Deleted messages for which keep is false and
// returns their sequence numbers, highest first, as EXPUNGE responses must
// be sent so that each number is valid when it is read.
func (mb *mailbox) expunge(only func(*Message) bool) []int {
	var seqs []int
	for i := len(mb.msgs) - 1; i >= 0; i-- {
		m := mb.msgs[i]
		if m.HasFlag(`\Deleted`) && only(m) {
			seqs = append(seqs, i+1)
			mb.msgs = slices.Delete(mb.msgs, i, i+1)
		}
	}
	return seqs
}

func canonicalMailbox(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	return name
}

// setFlags applies a STORE operation ("+FLAGS", "-FLAGS" or "FLAGS").
func setFlags(m *Message, op string, flags []string) {
	has := func(f string) bool { return m.HasFlag(f) }
	switch op {
	case "+FLAGS":
		for _, f := range flags {
			if !has(f) {
				m.Flags = append(m.Flags, f)
			}
		}
	case "-FLAGS":
		m.Flags = slices.DeleteFunc(m.Flags, func(have string) bool {
			return slices.ContainsFunc(flags, func(f string) bool { return strings.EqualFold(f, have) })
		})
	case "FLAGS":
		m.Flags = slices.Clone(flags)
	}
}

// header returns the header of body, blank line included; the whole body
// when it has no blank line.
func header(body []byte) []byte {
	if i := bytes.Index(body, []byte("\r\n\r\n")); i >= 0 {
		return body[:i+4]
	}
	if bytes.HasPrefix(body, []byte("\r\n")) {
		return body[:2]
	}
	return body
}

// text returns what follows the header.
func text(body []byte) []byte { return body[len(header(body)):] }
