package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// matrixMsg is one message of a matrix mailbox and what the POP3 session
// does to it, in this order: the TOPs, the RETR, the DELE.
type matrixMsg struct {
	name string
	pre  []imap.Flag // flags it has before the session
	// foreign: another IMAP client flagged it \Deleted before the session
	// (and never expunged); the session leaves it alone.
	foreign bool
	tops    []int // TOP n k for each k
	retr    bool  // RETR n, read in full
	dele    bool  // DELE n
}

// matrixMsgs is the mailbox every matrix cell starts with, in UID order,
// so message number i+1 of the first session is matrixMsgs[i].
var matrixMsgs = []matrixMsg{
	{name: "retr-dele", retr: true, dele: true},
	{name: "retr", retr: true},
	{name: "top0", tops: []int{0}},
	{name: "foreign", foreign: true},
	{name: "dele", pre: []imap.Flag{imap.FlagFlagged}, dele: true},
	{name: "top5-dele", tops: []int{5}, dele: true},
	{name: "untouched"},
	{name: "top0-retr", tops: []int{0}, retr: true},
	{name: "top5-seen", pre: []imap.Flag{imap.FlagSeen}, tops: []int{5}},
}

// matrixCell is one combination of the delete settings (docs/policy.md).
type matrixCell struct {
	policy   string // --delete-policy
	action   string // --delete-action
	markSeen bool   // --mark-seen
}

func (c matrixCell) name() string {
	return fmt.Sprintf("%s/%s/mark-seen=%t", c.policy, c.action, c.markSeen)
}

// user is the cell's Dovecot account for variant ("quit" or "drop"):
// every cell has its own mailboxes, so one Dovecot serves the matrix.
func (c matrixCell) user(variant string) string {
	action, _, _ := strings.Cut(c.action, ":")
	seen := "noseen"
	if c.markSeen {
		seen = "seen"
	}
	return strings.Join([]string{"mx", c.policy, action, seen, variant}, "-")
}

func (c matrixCell) flags() []string {
	return []string{"--delete-policy", c.policy, "--delete-action", c.action,
		"--mark-seen=" + strconv.FormatBool(c.markSeen)}
}

// matrixPlace is where a message is after QUIT and with which flags.
type matrixPlace struct {
	box   string // "INBOX", "Trash" or "" (gone)
	flags []imap.Flag
}

// expectAfterQuit is docs/policy.md written out for one message, independently
// of package policy: what a QUIT in cell c leaves of m.
func expectAfterQuit(c matrixCell, m matrixMsg) matrixPlace {
	flags := append([]imap.Flag(nil), m.pre...)
	if m.foreign {
		flags = append(flags, imap.FlagDeleted)
	}
	// --mark-seen: a message RETR'd in full gets \Seen at QUIT, whatever
	// the policy; TOP never marks.
	if c.markSeen && m.retr {
		flags = append(flags, imap.FlagSeen)
	}
	// docs/policy.md, --delete-policy: which messages are "applied" at QUIT.
	var applied bool
	switch c.policy {
	case "honor": // the client's DELE: applied; RETR'd only: stays
		applied = m.dele
	case "leave": // DELE accepted, not applied; RETR'd only: stays
		applied = false
	case "on-download": // DELE: applied; RETR'd in full: applied
		applied = m.dele || m.retr
	}
	if !applied {
		return matrixPlace{box: "INBOX", flags: flags}
	}
	// docs/policy.md, --delete-action: what "applied" means upstream.
	switch c.action {
	case "expunge": // gone, and only it
		return matrixPlace{}
	case "flag": // stays, with \Seen and $POP3Deleted
		return matrixPlace{box: "INBOX", flags: append(flags, imap.FlagSeen, "$POP3Deleted")}
	case "move:Trash": // in Trash, gone from the maildrop; MOVE keeps flags
		return matrixPlace{box: "Trash", flags: flags}
	}
	panic("unknown action " + c.action)
}

// matrixMailbox is a cell's seeded INBOX.
type matrixMailbox struct {
	user   string
	before []testenv.StoredMessage // matrixMsgs as stored, same order
	uidv   uint32
}

// matrixRaw is message name: 13 body lines, the last of which needs
// dot-stuffing, so TOP n 5 returns part of the body.
func matrixRaw(name string) []byte {
	var body strings.Builder
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&body, "Line %d of %s.\r\n", i, name)
	}
	body.WriteString(".a line that starts with a dot\r\n")
	return message(name, "Policy matrix: "+name, nil, body.String())
}

// seedMatrix stores matrixMsgs in user's INBOX; the foreign message gets
// \Deleted from a second IMAP session, as another client would set it.
func seedMatrix(t *testing.T, d *testenv.Dovecot, user string) *matrixMailbox {
	t.Helper()
	var seed []seedMessage
	for _, m := range matrixMsgs {
		seed = append(seed, seedMessage{Raw: matrixRaw(m.name), Flags: m.pre})
	}
	uids := seedMailbox(t, d, user, "INBOX", seed)
	for i, m := range matrixMsgs {
		if m.foreign {
			d.SetFlags(t, user, "INBOX", uids[i], imap.FlagDeleted)
		}
	}
	mx := &matrixMailbox{user: user, before: d.Messages(t, user, "INBOX"), uidv: d.UIDValidity(t, user, "INBOX")}
	if len(mx.before) != len(matrixMsgs) {
		t.Fatalf("seeded %d messages, INBOX holds %d", len(matrixMsgs), len(mx.before))
	}
	for i, m := range mx.before {
		if messageName(m.Body) != matrixMsgs[i].name || m.UID != uids[i] {
			t.Fatalf("seeded INBOX out of order at %d: %q UID %d", i, messageName(m.Body), m.UID)
		}
	}
	return mx
}

// uidl is the Dovecot-default UIDL of the message at index i.
func (mx *matrixMailbox) uidl(i int) string { return dovecotUIDL(uint32(mx.before[i].UID), mx.uidv) }

// session logs in to b and does what matrixMsgs say, checking every answer;
// the caller ends it with QUIT or a drop.
func (mx *matrixMailbox) session(t *testing.T, b *bridgeproc.Bridge) *pop3client.Client {
	t.Helper()
	p := dialPOP3(t, b.POP3)
	p.Login(mx.user, password(mx.user))
	want := make(listing)
	for i := range mx.before {
		want[i+1] = mx.uidl(i)
	}
	// The foreign \Deleted message exists upstream, so it is in the
	// snapshot (docs/design.md#pop3-service) like any other.
	if got := list(p, "UIDL"); !maps.Equal(got, want) {
		t.Fatalf("UIDL at the start of the session: %v, want %v", got, want)
	}
	for i, m := range matrixMsgs {
		n, body := i+1, mx.before[i].Body
		for _, k := range m.tops {
			if _, got := multi(p, fmt.Sprintf("TOP %d %d", n, k)); !bytes.Equal(got, topLines(body, k)) {
				t.Errorf("TOP %d %d (%s): %s", n, k, m.name, firstDiff(got, topLines(body, k)))
			}
		}
		if m.retr {
			if _, got := multi(p, fmt.Sprintf("RETR %d", n)); !bytes.Equal(got, body) {
				t.Errorf("RETR %d (%s): %s", n, m.name, firstDiff(got, body))
			}
		}
		if m.dele {
			p.OK(fmt.Sprintf("DELE %d", n))
		}
	}
	return p
}

// upstream reads INBOX and Trash and describes them with placeText.
func (mx *matrixMailbox) upstream(t *testing.T, d *testenv.Dovecot) (text string, inbox, trash []testenv.StoredMessage, trashExists bool) {
	t.Helper()
	inbox = d.Messages(t, mx.user, "INBOX")
	trash, trashExists = mailboxOrNil(t, d, mx.user, "Trash")
	return placeText(matrixNames(), map[string][]testenv.StoredMessage{"INBOX": inbox, "Trash": trash}), inbox, trash, trashExists
}

func matrixNames() []string {
	var names []string
	for _, m := range matrixMsgs {
		names = append(names, m.name)
	}
	return names
}

// TestPolicyMatrix runs every --delete-policy × --delete-action ×
// --mark-seen against Dovecot through the popbridge binary. In each cell
// one session TOPs, RETRs and DELEs the messages of matrixMsgs; then an
// independent IMAP connection checks INBOX and Trash message by message
// against expectAfterQuit, and a second POP3 session checks what the
// client is shown. The Drop variant ends the session by closing the
// connection instead of QUIT: nothing may change, flags included. Every
// cell has a \Deleted message of another client that must survive.
func TestPolicyMatrix(t *testing.T) {
	t.Parallel()
	var cells []matrixCell
	for _, pol := range []string{"honor", "leave", "on-download"} {
		for _, act := range []string{"expunge", "flag", "move:Trash"} {
			for _, seen := range []bool{true, false} {
				cells = append(cells, matrixCell{pol, act, seen})
			}
		}
	}
	var users []string
	for _, c := range cells {
		users = append(users, c.user("quit"), c.user("drop"))
	}
	d := startDovecot(t, false, users...)

	for _, c := range cells {
		t.Run(c.name(), func(t *testing.T) {
			t.Parallel()
			b := startBridge(t, d, c.flags()...)
			t.Run("Quit", func(t *testing.T) {
				t.Parallel()
				matrixQuit(t, d, b, c)
			})
			t.Run("Drop", func(t *testing.T) {
				t.Parallel()
				matrixDrop(t, d, b, c)
			})
		})
	}
}

// matrixQuit is one cell ended with QUIT.
func matrixQuit(t *testing.T, d *testenv.Dovecot, b *bridgeproc.Bridge, c matrixCell) {
	mx := seedMatrix(t, d, c.user("quit"))
	p := mx.session(t, b)
	if s := quit(p); !strings.HasPrefix(s, "+OK") {
		t.Errorf("QUIT: %q, want +OK (Dovecot has UIDPLUS and MOVE)", s)
	}
	if end := waitSessionEnd(t, b, localPort(p)); end["result"] != "quit" {
		t.Errorf("session end result %v, want quit", end["result"])
	}

	// What an IMAP user sees: each message's place and flags.
	want := make(map[string][]testenv.StoredMessage)
	var visible []int // indexes a later POP3 session lists, in UID order
	for i, m := range matrixMsgs {
		pl := expectAfterQuit(c, m)
		if pl.box == "" {
			continue
		}
		want[pl.box] = append(want[pl.box], testenv.StoredMessage{Body: mx.before[i].Body, Flags: pl.flags})
		if pl.box == "INBOX" && !hasFlag(pl.flags, "$POP3Deleted") {
			visible = append(visible, i)
		}
	}
	wantText := placeText(matrixNames(), want)
	got, inbox, trash, trashExists := mx.upstream(t, d)
	if got != wantText {
		t.Errorf("upstream after QUIT (message: place (flags)):\n got:\n%s\nwant (docs/policy.md):\n%s", got, wantText)
	}
	for _, m := range append(append([]testenv.StoredMessage(nil), inbox...), trash...) {
		if hasFlag(m.Flags, imap.FlagDeleted) && messageName(m.Body) != "foreign" {
			t.Errorf("%s kept \\Deleted after QUIT: %s", messageName(m.Body), flagText(m.Flags))
		}
	}
	// Kept messages are the same messages: UID, size and bytes.
	for _, m := range inbox {
		i := indexOfName(messageName(m.Body))
		if i < 0 {
			continue
		}
		if m.UID != mx.before[i].UID || m.Size != mx.before[i].Size || !bytes.Equal(m.Body, mx.before[i].Body) {
			t.Errorf("INBOX %s: UID %d, %d octets; before the session UID %d, %d octets", matrixMsgs[i].name,
				m.UID, m.Size, mx.before[i].UID, mx.before[i].Size)
		}
	}
	for _, m := range trash {
		if i := indexOfName(messageName(m.Body)); i >= 0 && !bytes.Equal(m.Body, mx.before[i].Body) {
			t.Errorf("Trash %s differs from the original: %s", matrixMsgs[i].name, firstDiff(m.Body, mx.before[i].Body))
		}
	}
	if trashExists && len(want["Trash"]) == 0 {
		t.Errorf("Trash was created though the cell moves nothing")
	}

	// What the POP3 client sees next time.
	p = dialPOP3(t, b.POP3)
	p.Login(mx.user, password(mx.user))
	wantList, wantUIDL := make(listing), make(listing)
	var wantSize int64
	for n, i := range visible {
		wantList[n+1] = strconv.FormatInt(mx.before[i].Size, 10)
		wantUIDL[n+1] = mx.uidl(i)
		wantSize += mx.before[i].Size
	}
	if n, size := stat(p); n != len(visible) || size != wantSize {
		t.Errorf("STAT in the next session: %d %d, want %d %d", n, size, len(visible), wantSize)
	}
	if l := list(p, "LIST"); !maps.Equal(l, wantList) {
		t.Errorf("LIST in the next session: %v, want %v", l, wantList)
	}
	uidl := list(p, "UIDL")
	if !maps.Equal(uidl, wantUIDL) {
		t.Errorf("UIDL in the next session: %v, want %v", uidl, wantUIDL)
	}
	listed := make(map[string]bool)
	for _, u := range uidl {
		listed[u] = true
	}
	for i, m := range matrixMsgs {
		pl := expectAfterQuit(c, m)
		switch {
		case hasFlag(pl.flags, "$POP3Deleted") && listed[mx.uidl(i)]:
			t.Errorf("%s carries $POP3Deleted but the next session lists it", m.name)
		case c.policy == "leave" && m.dele && !listed[mx.uidl(i)]:
			t.Errorf("leave: %s was DELE'd and is not listed again with UIDL %s", m.name, mx.uidl(i))
		}
	}
	// The numbering follows: message n is the n-th visible one.
	for n, i := range visible {
		if _, hdr := multi(p, fmt.Sprintf("TOP %d 0", n+1)); !bytes.Equal(hdr, headerSection(mx.before[i].Body)) {
			t.Errorf("TOP %d 0 in the next session is not %s: %s", n+1, matrixMsgs[i].name,
				firstDiff(hdr, headerSection(mx.before[i].Body)))
		}
	}
	if s := quit(p); !strings.HasPrefix(s, "+OK") {
		t.Errorf("QUIT of the next session: %q", s)
	}
	waitSessionEnd(t, b, localPort(p))
	// TOP alone, even under on-download, changes nothing.
	if again, _, _, _ := mx.upstream(t, d); again != got {
		t.Errorf("a session of TOPs changed the mailbox:\n before:\n%s\n after:\n%s", got, again)
	}
}

// matrixDrop is one cell ended by closing the connection without QUIT
// (with a reset in half the cells): nothing at all may change.
func matrixDrop(t *testing.T, d *testenv.Dovecot, b *bridgeproc.Bridge, c matrixCell) {
	mx := seedMatrix(t, d, c.user("drop"))
	p := mx.session(t, b)
	drop(p, c.markSeen)
	waitSessionEnd(t, b, localPort(p))

	if got, want := stateOf(d.Messages(t, mx.user, "INBOX")), stateOf(mx.before); got != want {
		t.Errorf("INBOX after a dropped connection (nothing may change, flags included):\n got:\n%s\nwant:\n%s", got, want)
	}
	if mailboxExists(t, d, mx.user, "Trash") {
		t.Errorf("Trash exists after a dropped connection")
	}
	p = dialPOP3(t, b.POP3)
	p.Login(mx.user, password(mx.user))
	want := make(listing)
	for i := range mx.before {
		want[i+1] = mx.uidl(i)
	}
	if got := list(p, "UIDL"); !maps.Equal(got, want) {
		t.Errorf("UIDL after a dropped session: %v, want every message again %v", got, want)
	}
	if s := quit(p); !strings.HasPrefix(s, "+OK") {
		t.Errorf("QUIT of the next session: %q", s)
	}
}

func indexOfName(name string) int {
	for i, m := range matrixMsgs {
		if m.name == name {
			return i
		}
	}
	return -1
}
