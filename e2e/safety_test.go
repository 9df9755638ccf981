package e2e

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestSafety checks the safety rules and the session snapshot of
// docs/design.md against a real Dovecot, with the raw POP3 client: what each session
// does to the mailbox is read back over IMAP (UIDs, sizes, flags) once the
// bridge has logged the session's end. Each subtest has its own user.
func TestSafety(t *testing.T) {
	t.Parallel()
	users := []string{"drop", "reset", "rset", "dele", "foreign", "arrive", "vanish",
		"uidl", "top", "seen", "noseen", "wire"}
	d := startDovecot(t, true, users...)
	// Parallel subtests connect from one address at once.
	b := startBridge(t, d, "--max-conns-per-ip", "100")
	e := &safetyEnv{d: d, b: b}

	t.Run("DropAfterDeleAndRetr", func(t *testing.T) {
		t.Parallel()
		const user = "drop"
		appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")

		p := e.login(t, b, user)
		p.OK("DELE 1")
		p.OK("DELE 2")
		e.retr(t, p, 3, before[2].Body)
		drop(p, false)
		e.waitEnd(t, b, p, "disconnected")
		e.expectState(t, user, "after DELE, DELE, RETR and a dropped connection (nothing applied, no \\Seen)", before)
	})

	t.Run("ResetDuringBigRetr", func(t *testing.T) {
		t.Parallel()
		const user = "reset"
		appendCorpus(t, d, user)
		before := d.Messages(t, user, "INBOX")
		big := slices.IndexFunc(before, func(m testenv.StoredMessage) bool { return messageName(m.Body) == "big" }) + 1

		p := e.login(t, b, user)
		p.OK("DELE 1")
		e.retr(t, p, 2, before[1].Body)
		p.OK(fmt.Sprintf("RETR %d", big))
		// Take part of the 20 MiB body, then vanish with a reset.
		if _, err := io.CopyN(io.Discard, p.Reader(), 1<<20); err != nil {
			t.Fatalf("reading the first MiB of RETR %d: %v", big, err)
		}
		drop(p, true)
		e.waitEnd(t, b, p, "")
		e.expectState(t, user, "after a reset in the middle of a 20 MiB RETR", before)

		// The aborted transfer left nothing stuck: a new session works.
		p = e.login(t, b, user)
		if n, _ := stat(p); n != len(before) {
			t.Errorf("STAT after the reset: %d messages, want %d", n, len(before))
		}
		if s := quit(p); !strings.HasPrefix(s, "+OK") {
			t.Errorf("QUIT: %q", s)
		}
	})

	t.Run("DeleRsetQuit", func(t *testing.T) {
		t.Parallel()
		const user = "rset"
		appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")

		p := e.login(t, b, user)
		for n := 1; n <= len(before); n++ {
			p.OK(fmt.Sprintf("DELE %d", n))
		}
		if n, _ := stat(p); n != 0 {
			t.Errorf("STAT after deleting everything: %d messages, want 0", n)
		}
		p.OK("RSET")
		if n, _ := stat(p); n != len(before) {
			t.Errorf("STAT after RSET: %d messages, want %d", n, len(before))
		}
		e.quitOK(t, p)
		e.waitEnd(t, b, p, "quit")
		e.expectState(t, user, "after DELE of every message, RSET and QUIT", before)
	})

	t.Run("DeleQuit", func(t *testing.T) {
		t.Parallel()
		const user = "dele"
		uids := appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")
		uidv := d.UIDValidity(t, user, "INBOX")

		p := e.login(t, b, user)
		p.OK("DELE 2")
		p.CmdPrefix("DELE 2", "-ERR") // already deleted
		p.CmdPrefix("RETR 2", "-ERR")
		e.quitOK(t, p)
		e.waitEnd(t, b, p, "quit")
		e.expectState(t, user, "after DELE 2 and QUIT (exactly that message gone)", without(before, uids[1]))

		// The next session lists the others, renumbered, with their UIDLs.
		p = e.login(t, b, user)
		uidl := list(p, "UIDL")
		want := make(listing)
		for i, uid := range slices.Delete(slices.Clone(uids), 1, 2) {
			want[i+1] = dovecotUIDL(uint32(uid), uidv)
		}
		if !maps.Equal(uidl, want) {
			t.Errorf("UIDL in the next session: %v, want %v", uidl, want)
		}
		e.quitOK(t, p)
	})

	t.Run("ForeignDeletedSurvives", func(t *testing.T) {
		t.Parallel()
		const user = "foreign"
		uids := appendMessages(t, d, user, smallCorpus())
		uidv := d.UIDValidity(t, user, "INBOX")
		// Another IMAP client flags one message \Deleted before the session
		// and one during it, and never expunges.
		d.SetFlags(t, user, "INBOX", uids[0], imap.FlagDeleted)

		p := e.login(t, b, user)
		d.SetFlags(t, user, "INBOX", uids[3], imap.FlagDeleted)
		mid := d.Messages(t, user, "INBOX")
		n := numberOf(t, p, dovecotUIDL(uint32(uids[2]), uidv))
		p.OK(fmt.Sprintf("DELE %d", n))
		e.quitOK(t, p)
		e.waitEnd(t, b, p, "quit")
		e.expectState(t, user, "after our DELE and QUIT (the \\Deleted messages of another client stay)", without(mid, uids[2]))
	})

	t.Run("ArrivalMidSession", func(t *testing.T) {
		t.Parallel()
		const user = "arrive"
		appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")
		uidv := d.UIDValidity(t, user, "INBOX")

		p := e.login(t, b, user)
		n1, size1 := stat(p)
		list1, uidl1 := list(p, "LIST"), list(p, "UIDL")

		late := message("arrival", "Arrived during the session", nil, "I am new.\r\n")
		lateUID := d.Append(t, user, "INBOX", late)

		if n2, size2 := stat(p); n2 != n1 || size2 != size1 {
			t.Errorf("STAT after new mail arrived: %d %d, want the snapshot's %d %d", n2, size2, n1, size1)
		}
		if list2 := list(p, "LIST"); !maps.Equal(list2, list1) {
			t.Errorf("LIST after new mail arrived: %v, want %v", list2, list1)
		}
		if uidl2 := list(p, "UIDL"); !maps.Equal(uidl2, uidl1) {
			t.Errorf("UIDL after new mail arrived: %v, want %v", uidl2, uidl1)
		}
		p.CmdPrefix(fmt.Sprintf("RETR %d", n1+1), "-ERR")
		p.CmdPrefix(fmt.Sprintf("LIST %d", n1+1), "-ERR")
		for i, m := range before {
			e.retr(t, p, i+1, m.Body)
		}
		e.quitOK(t, p)
		e.waitEnd(t, b, p, "quit")

		// The next session has it, last.
		p = e.login(t, b, user)
		if n, _ := stat(p); n != n1+1 {
			t.Errorf("STAT in the next session: %d messages, want %d", n, n1+1)
		}
		if got, want := list(p, "UIDL")[n1+1], dovecotUIDL(uint32(lateUID), uidv); got != want {
			t.Errorf("UIDL %d in the next session: %q, want %q", n1+1, got, want)
		}
		e.retr(t, p, n1+1, late)
		e.quitOK(t, p)
	})

	t.Run("ExpungedMidSession", func(t *testing.T) {
		t.Parallel()
		const user = "vanish"
		uids := appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")

		p := e.login(t, b, user)
		d.Expunge(t, user, "INBOX", uids[1])
		if s := p.CmdPrefix("RETR 2", "-ERR"); strings.Contains(s, "octets") {
			t.Errorf("RETR of an expunged message: %q", s)
		}
		p.CmdPrefix("TOP 2 0", "-ERR")
		e.retr(t, p, 1, before[0].Body)
		e.retr(t, p, 3, before[2].Body)
		if _, top := multi(p, "TOP 4 0"); !bytes.Equal(top, headerSection(before[3].Body)) {
			t.Errorf("TOP 4 0 after another message vanished: %s", firstDiff(top, headerSection(before[3].Body)))
		}
		e.quitOK(t, p)
		e.waitEnd(t, b, p, "quit")
		want := withFlag(without(before, uids[1]), imap.FlagSeen, uids[0], uids[2])
		e.expectState(t, user, "after another client expunged message 2 mid-session (RETR 1 and 3 marked \\Seen)", want)
	})

	t.Run("UIDLStableAndDovecotCompatible", func(t *testing.T) {
		t.Parallel()
		const user = "uidl"
		uids := appendMessages(t, d, user, smallCorpus())
		uidv := d.UIDValidity(t, user, "INBOX")
		want := make(listing)
		for i, uid := range uids {
			want[i+1] = dovecotUIDL(uint32(uid), uidv)
		}

		var lists []listing
		for range 2 {
			p := e.login(t, b, user)
			uidl := list(p, "UIDL")
			if !maps.Equal(uidl, want) {
				t.Errorf("UIDL: %v, want %%08Xu%%08Xv of UID and UIDVALIDITY %d: %v", uidl, uidv, want)
			}
			for n, u := range uidl {
				if one := p.OK(fmt.Sprintf("UIDL %d", n)); one != fmt.Sprintf("+OK %d %s", n, u) {
					t.Errorf("UIDL %d: %q, want %q", n, one, fmt.Sprintf("+OK %d %s", n, u))
				}
			}
			lists = append(lists, list(p, "LIST"))
			e.quitOK(t, p)
		}

		// Dovecot's own POP3 server, default pop3_uidl_format, same store.
		dp := dialPOP3(t, d.POP3Addr)
		dp.Login(user, password(user))
		if got := list(dp, "UIDL"); !maps.Equal(got, want) {
			t.Errorf("Dovecot's POP3 UIDL %v differs from popbridge's %v", got, want)
		}
		if got := list(dp, "LIST"); !maps.Equal(got, lists[0]) {
			t.Errorf("Dovecot's POP3 LIST %v differs from popbridge's %v", got, lists[0])
		}
		quit(dp)
	})

	t.Run("TopNeverMarksSeen", func(t *testing.T) {
		t.Parallel()
		const user = "top"
		appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")

		p := e.login(t, b, user)
		for i, m := range before {
			for _, k := range []int{0, 1, 2, 3, 99999999} {
				_, got := multi(p, fmt.Sprintf("TOP %d %d", i+1, k))
				if want := topLines(m.Body, k); !bytes.Equal(got, want) {
					t.Errorf("TOP %d %d (%s): %s", i+1, k, messageName(m.Body), firstDiff(got, want))
				}
			}
		}
		p.CmdPrefix("TOP 1", "-ERR")
		p.CmdPrefix("TOP 1 -1", "-ERR")
		p.CmdPrefix(fmt.Sprintf("TOP %d 0", len(before)+1), "-ERR")
		e.quitOK(t, p)
		e.waitEnd(t, b, p, "quit")
		e.expectState(t, user, "after TOP of every message and QUIT (TOP never marks \\Seen)", before)
	})

	t.Run("RetrMarksSeenAtQuit", func(t *testing.T) {
		t.Parallel()
		const user = "seen"
		uids := appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")

		p := e.login(t, b, user)
		e.retr(t, p, 1, before[0].Body)
		e.retr(t, p, 3, before[2].Body)
		multi(p, "TOP 2 0")
		multi(p, "TOP 4 99999999")
		// Nothing before QUIT.
		e.expectState(t, user, "before QUIT", before)
		e.quitOK(t, p)
		e.waitEnd(t, b, p, "quit")
		e.expectState(t, user, "after RETR 1, RETR 3, TOP 2 and TOP 4 and QUIT", withFlag(before, imap.FlagSeen, uids[0], uids[2]))
	})

	t.Run("MarkSeenOff", func(t *testing.T) {
		t.Parallel()
		const user = "noseen"
		appendMessages(t, d, user, smallCorpus())
		before := d.Messages(t, user, "INBOX")
		nb := startBridge(t, d, "--mark-seen=false")

		p := e.login(t, nb, user)
		for i, m := range before {
			e.retr(t, p, i+1, m.Body)
		}
		e.quitOK(t, p)
		e.waitEnd(t, nb, p, "quit")
		e.expectState(t, user, "after RETR of everything and QUIT with --mark-seen=false", before)
	})

	t.Run("WireFormat", func(t *testing.T) {
		t.Parallel()
		const user = "wire"
		appendCorpus(t, d, user)
		want := upstreamMessages(t, d, user)

		p := e.login(t, b, user)
		var total int64
		sizes := make(listing)
		for i, m := range want {
			total += int64(len(m.Body))
			sizes[i+1] = strconv.Itoa(len(m.Body))
		}
		if n, size := stat(p); n != len(want) || size != total {
			t.Errorf("STAT: %d %d, want %d %d", n, size, len(want), total)
		}
		if got := list(p, "LIST"); !maps.Equal(got, sizes) {
			t.Errorf("LIST: %v, want the BODY[] sizes %v", got, sizes)
		}

		// PIPELINING: one write, answers in order.
		p.Send("NOOP\r\nLIST 1\r\nRETR 2\r\nSTAT")
		if s := p.ReadLine(); !strings.HasPrefix(s, "+OK") {
			t.Errorf("pipelined NOOP: %q", s)
		}
		if s, exp := p.ReadLine(), "+OK 1 "+sizes[1]; s != exp {
			t.Errorf("pipelined LIST 1: %q, want %q", s, exp)
		}
		if s := p.ReadLine(); !strings.HasPrefix(s, "+OK") {
			t.Fatalf("pipelined RETR 2: %q", s)
		}
		if body := p.Multiline(); !bytes.Equal(body, want[1].Body) {
			t.Errorf("pipelined RETR 2: %s", firstDiff(body, want[1].Body))
		}
		if s, exp := p.ReadLine(), fmt.Sprintf("+OK %d %d", len(want), total); s != exp {
			t.Errorf("pipelined STAT: %q, want %q", s, exp)
		}

		var got [][]byte
		for i := range want {
			status, body := multi(p, fmt.Sprintf("RETR %d", i+1))
			if wantStatus := fmt.Sprintf("+OK %d octets", len(want[i].Body)); status != wantStatus {
				t.Errorf("RETR %d: status %q, want %q", i+1, status, wantStatus)
			}
			got = append(got, body)
		}
		checkDelivered(t, "raw POP3 client", want, got, nil)
		e.quitOK(t, p)
	})
}

// safetyEnv is what the subtests of TestSafety share.
type safetyEnv struct {
	d *testenv.Dovecot
	b *bridgeproc.Bridge
}

// login opens a session on bridge b as user.
func (e *safetyEnv) login(t testing.TB, b *bridgeproc.Bridge, user string) *pop3client.Client {
	t.Helper()
	p := dialPOP3(t, b.POP3)
	p.Login(user, password(user))
	return p
}

// retr requires RETR n to return exactly want.
func (e *safetyEnv) retr(t testing.TB, p *pop3client.Client, n int, want []byte) {
	t.Helper()
	if _, got := multi(p, fmt.Sprintf("RETR %d", n)); !bytes.Equal(got, want) {
		t.Errorf("RETR %d: %s", n, firstDiff(got, want))
	}
}

// quitOK requires QUIT to answer +OK.
func (e *safetyEnv) quitOK(t testing.TB, p *pop3client.Client) {
	t.Helper()
	if s := quit(p); !strings.HasPrefix(s, "+OK") {
		t.Errorf("QUIT: %q, want +OK", s)
	}
}

// waitEnd waits until b has logged the end of p's session and checks its
// result ("" accepts any).
func (e *safetyEnv) waitEnd(t testing.TB, b *bridgeproc.Bridge, p *pop3client.Client, result string) {
	t.Helper()
	end := waitSessionEnd(t, b, localPort(p))
	if result != "" && end["result"] != result {
		t.Errorf("session end result %v, want %q", end["result"], result)
	}
}

// expectState requires user's INBOX to be want (UIDs, sizes, flags).
func (e *safetyEnv) expectState(t testing.TB, user, when string, want []testenv.StoredMessage) {
	t.Helper()
	got := e.d.Messages(t, user, "INBOX")
	if g, w := stateOf(got), stateOf(want); g != w {
		t.Errorf("upstream %s:\n got:\n%s\nwant:\n%s", when, g, w)
	}
}

// without returns msgs minus the message with UID uid.
func without(msgs []testenv.StoredMessage, uid imap.UID) []testenv.StoredMessage {
	return slices.DeleteFunc(slices.Clone(msgs), func(m testenv.StoredMessage) bool { return m.UID == uid })
}

// withFlag returns msgs with flag added to the messages uids.
func withFlag(msgs []testenv.StoredMessage, flag imap.Flag, uids ...imap.UID) []testenv.StoredMessage {
	out := slices.Clone(msgs)
	for i, m := range out {
		if slices.Contains(uids, m.UID) && !hasFlag(m.Flags, flag) {
			out[i].Flags = append(slices.Clone(m.Flags), flag)
		}
	}
	return out
}

// numberOf returns the message number whose UIDL is uidl in p's session.
func numberOf(t testing.TB, p *pop3client.Client, uidl string) int {
	t.Helper()
	for n, u := range list(p, "UIDL") {
		if u == uidl {
			return n
		}
	}
	t.Fatalf("no message with UIDL %s", uidl)
	return 0
}

// topLines is what TOP n k returns for msg: the header, the blank line and
// the first k lines of the body (all of it when k is past the end).
func topLines(msg []byte, k int) []byte {
	hdr := headerSection(msg)
	body := msg[len(hdr):]
	end := 0
	for range k {
		i := bytes.Index(body[end:], []byte("\r\n"))
		if i < 0 {
			end = len(body)
			break
		}
		end += i + 2
	}
	return append(slices.Clone(hdr), body[:end]...)
}
