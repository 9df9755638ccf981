package upstream

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/pop3server"
)

func TestEncodeMailbox(t *testing.T) {
	for in, want := range map[string]string{
		"INBOX":          "INBOX",
		"Trash/POP3":     "Trash/POP3",
		"Entwürfe":       "Entw&APw-rfe",
		"日本語":            "&ZeVnLIqe-",
		"A&B":            "A&-B",
		"Gelöschte Ä":    "Gel&APY-schte &AMQ-",
		"emoji 🎉 party":  "emoji &2DzfiQ- party",
		"tab\there":      "tab&AAk-here",
		"~peter/mail/台北": "~peter/mail/&U,BTFw-",
	} {
		if got := encodeMailbox(in); got != want {
			t.Errorf("encodeMailbox(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseUIDs(t *testing.T) {
	got, err := parseUIDs("1:3,7,10:9")
	if err != nil || !slices.Equal(uint32s(got), []uint32{1, 2, 3, 7, 9, 10}) {
		t.Errorf("parseUIDs = %v, %v", got, err)
	}
	for _, bad := range []string{"", "1:*", "a", "1,,2", "1:4294967295"} {
		if _, err := parseUIDs(bad); err == nil {
			t.Errorf("parseUIDs(%q) succeeded", bad)
		}
	}
}

// TestWireOddities: responses that are legal IMAP but that Dovecot does not
// send in our tests: literals in untagged data, escapes in quoted strings,
// a body as a quoted string, NIL, unsolicited data around a body, items
// after the body, SEARCH without ESEARCH, NOMODSEQ.
func TestWireOddities(t *testing.T) {
	checkGoroutines(t)
	s := startFake(t, "* OK [CAPABILITY IMAP4rev1 UIDPLUS] hi", func(c *fakeConn, tag, cmd string) bool {
		up := strings.ToUpper(cmd)
		switch {
		case strings.HasPrefix(up, "LOGIN "):
			c.send(`* OK [ALERT] mind the {braces}`,
				`* STATUS "a \"b\" {3}" (MESSAGES 1)`,
				`* LIST () "/" {5}`, "INBOX",
				`* LIST () {1}`, `/ {7}`, `Archive`,
				tag+" OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in")
		case strings.HasPrefix(up, "SELECT "):
			c.send("* FLAGS (\\Seen \\Deleted $POP3Deleted)", "* 3 EXISTS", "* 0 RECENT",
				"* OK [UIDVALIDITY 42] ok", "* OK [UIDNEXT 10] ok", "* OK [NOMODSEQ] no",
				"* OK [PERMANENTFLAGS (\\Seen \\Deleted \\*)] ok", tag+" OK [READ-WRITE] selected")
		case strings.HasPrefix(up, "UID FETCH 1:* "):
			c.send("* 1 FETCH (UID 3 RFC822.SIZE 5 FLAGS ())",
				"* 2 FETCH (FLAGS (\\Seen) UID 4)", // unsolicited, then the real one
				"* 2 FETCH (RFC822.SIZE 6 UID 4 FLAGS (\\Seen) INTERNALDATE \"01-Jan-2020 00:00:00 +0000\")",
				"* 3 FETCH (UID 7 FLAGS ($pop3deleted) RFC822.SIZE 9)",
				tag+" OK done")
		case strings.HasPrefix(up, "UID FETCH 3 "):
			// A quoted body; items before and after it.
			c.send(`* 1 FETCH (UID 3 BODY[] "a\"b\\c" FLAGS ())`, tag+" OK done")
		case strings.HasPrefix(up, "UID FETCH 4 "):
			// Unsolicited data first, then the body with items after it.
			c.send("* 3 FETCH (UID 7 FLAGS (\\Seen))", "* 4 EXISTS",
				"* 2 FETCH (UID 4 BODY[] {6}", "abcdef FLAGS (\\Seen) MODSEQ (5))", tag+" OK done")
		case strings.HasPrefix(up, "UID FETCH 7 "):
			c.send("* 3 FETCH (UID 7 BODY[] NIL)", tag+" OK done")
		case strings.HasPrefix(up, "UID SEARCH "):
			c.send("* SEARCH 3 4", tag+" OK done")
		case strings.HasPrefix(up, "LOGOUT"):
			c.send("* BYE bye", tag+" OK bye")
			return false
		default:
			c.send(tag + " BAD unexpected")
		}
		return true
	})
	m := login(t, newBackend(t, s.url()))
	if m.uidValidity != 42 || len(m.infos) != 2 || m.infos[0].Size != 5 || m.infos[1].Size != 6 {
		t.Fatalf("listing: UIDVALIDITY %d, %v", m.uidValidity, m.infos)
	}
	if !m.keepsKeyword() {
		t.Error("PERMANENTFLAGS \\* not understood")
	}
	for n, want := range map[int]string{1: `a"b\c`, 2: "abcdef"} {
		b, err := m.Retrieve(context.Background(), n)
		if err != nil {
			t.Fatalf("Retrieve(%d): %v", n, err)
		}
		if got := string(readAll(t, b)); got != want {
			t.Errorf("Retrieve(%d) = %q, want %q", n, got, want)
		}
	}
	// The connection is still in step: the SEARCH answers.
	uids, err := m.l.conn.search("DELETED")
	if err != nil || !slices.Equal(uint32s(uids), []uint32{3, 4}) {
		t.Errorf("search = %v, %v", uids, err)
	}
}

func TestWireNilBody(t *testing.T) {
	checkGoroutines(t)
	s := startFake(t, "* OK [CAPABILITY IMAP4rev1] hi", func(c *fakeConn, tag, cmd string) bool {
		up := strings.ToUpper(cmd)
		if strings.HasPrefix(up, "UID FETCH 1 ") {
			c.send("* 1 FETCH (UID 1 BODY[] NIL)", tag+" OK done")
			return true
		}
		handled, keep := basicIMAP(c, tag, cmd, 10)
		if !handled {
			c.send(tag + " BAD unexpected")
		}
		return keep
	})
	m := login(t, newBackend(t, s.url()))
	_, err := m.Retrieve(context.Background(), 1)
	wantCode(t, err, pop3server.ErrNoSuchMessage)
	// NIL is a complete answer: the connection goes on.
	if err := m.usable(); err != nil {
		t.Errorf("connection retired after NIL: %v", err)
	}
}

func uint32s[T ~uint32](l []T) []uint32 {
	out := make([]uint32, len(l))
	for i, v := range l {
		out[i] = uint32(v)
	}
	return out
}

// TestLoginLiterals: a password that cannot be quoted (8-bit) goes as a
// literal: non-synchronizing with LITERAL+, else after the server's "+".
func TestLoginLiterals(t *testing.T) {
	const pass = "pässwörd \"x\""
	for _, caps := range []string{"IMAP4rev1 LITERAL+", "IMAP4rev1"} {
		t.Run(caps, func(t *testing.T) {
			checkGoroutines(t)
			var got string
			s := startFake(t, "* OK [CAPABILITY "+caps+"] hi", func(c *fakeConn, tag, cmd string) bool {
				if !strings.HasPrefix(cmd, "LOGIN ") {
					handled, keep := basicIMAP(c, tag, cmd, 10)
					if !handled {
						c.send(tag + " BAD unexpected")
					}
					return keep
				}
				// LOGIN "alice" {N+} or {N}: the literal follows.
				i := strings.LastIndexByte(cmd, '{')
				n, sync := 0, !strings.HasSuffix(cmd, "+}")
				fmt.Sscanf(cmd[i+1:], "%d", &n)
				if sync == strings.Contains(caps, "LITERAL+") {
					t.Errorf("LOGIN %q with capabilities %s", cmd, caps)
				}
				if sync {
					c.send("+ go ahead")
				}
				lit := make([]byte, n)
				if _, err := io.ReadFull(c.r, lit); err != nil {
					return false
				}
				c.r.ReadString('\n')
				got = cmd[:i] + string(lit)
				c.send(tag + " OK [CAPABILITY IMAP4rev1] in")
				return true
			})
			mb, err := newBackend(t, s.url()).Login(context.Background(), testConn, testUser, pass)
			if err != nil {
				t.Fatal(err)
			}
			mb.Close()
			if want := `LOGIN "alice" ` + pass; got != want {
				t.Errorf("server got %q, want %q", got, want)
			}
		})
	}
}
