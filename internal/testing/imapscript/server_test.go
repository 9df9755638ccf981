package imapscript

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const msg1 = "From: a@example.com\r\nSubject: one\r\n\r\nline 1\r\nline 2\r\n"

func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.AddUser("alice", "secret")
	s.Append("alice", "INBOX", []byte(msg1))
	s.Append("alice", "INBOX", []byte("Subject: two\r\n\r\nbody two\r\n"), `\Seen`)
	return s
}

// goClient logs in with go-imap, the client popbridge uses.
func goClient(t *testing.T, s *Server) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGoIMAPClientWorks(t *testing.T) {
	s := newServer(t, Options{})
	c := goClient(t, s)
	caps, err := c.Capability().Wait()
	if err != nil || !caps.Has(imap.CapUIDPlus) || !caps.Has(imap.CapMove) {
		t.Fatalf("CAPABILITY: %v %v", caps, err)
	}
	sel, err := c.Select("inbox", nil).Wait()
	if err != nil || sel.NumMessages != 2 || sel.UIDValidity != 1000 || sel.UIDNext != 3 {
		t.Fatalf("SELECT: %+v %v", sel, err)
	}
	msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, RFC822Size: true, Flags: true}).Collect()
	if err != nil || len(msgs) != 2 || msgs[0].RFC822Size != int64(len(msg1)) || len(msgs[1].Flags) != 1 {
		t.Fatalf("listing: %+v %v", msgs, err)
	}

	whole := &imap.FetchItemBodySection{Peek: true}
	hdr := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader}
	txt := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 2, Size: 5}}
	bufs, err := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{whole, hdr, txt}}).Collect()
	if err != nil || len(bufs) != 1 {
		t.Fatalf("body fetch: %v", err)
	}
	if got := string(bufs[0].FindBodySection(whole)); got != msg1 {
		t.Errorf("BODY[] = %q", got)
	}
	if got := string(bufs[0].FindBodySection(hdr)); got != "From: a@example.com\r\nSubject: one\r\n\r\n" {
		t.Errorf("BODY[HEADER] = %q", got)
	}
	if got := string(bufs[0].FindBodySection(txt)); got != "ne 1\r" {
		t.Errorf("BODY[TEXT]<2.5> = %q", got)
	}
	if s.Messages("alice", "INBOX")[0].HasFlag(`\Seen`) {
		t.Error("BODY.PEEK set \\Seen")
	}

	if err := c.Store(imap.UIDSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	found, err := c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
	if err != nil || len(found.AllUIDs()) != 2 {
		t.Fatalf("UID SEARCH DELETED: %v %v", found, err)
	}
	if err := c.UIDExpunge(imap.UIDSetNum(2)).Close(); err != nil {
		t.Fatal(err)
	}
	if got := s.Messages("alice", "INBOX"); len(got) != 1 || got[0].UID != 1 {
		t.Fatalf("after UID EXPUNGE 2: %+v", got)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{UIDValidity: true, NumMessages: true}).Wait()
	if err != nil || st.UIDValidity != 1000 || *st.NumMessages != 1 {
		t.Fatalf("STATUS: %+v %v", st, err)
	}

	if _, err := c.Move(imap.UIDSetNum(1), "Trash").Wait(); err == nil {
		t.Fatal("MOVE to a missing mailbox succeeded")
	}
	if err := c.Create("Trash", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(imap.UIDSetNum(1), "Trash").Wait(); err != nil {
		t.Fatal(err)
	}
	if len(s.Messages("alice", "INBOX")) != 0 || len(s.Messages("alice", "Trash")) != 1 {
		t.Fatal("MOVE did not move")
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}

	var names []string
	for _, cmd := range s.Commands() {
		names = append(names, cmd.Name)
	}
	want := "LOGIN CAPABILITY SELECT UID FETCH UID FETCH UID STORE UID SEARCH UID EXPUNGE STATUS UID MOVE CREATE UID MOVE LOGOUT"
	if strings.Join(names, " ") != want {
		t.Errorf("recorded:\n%s\nwant:\n%s", strings.Join(names, " "), want)
	}
	if cs := s.CommandsNamed("UID EXPUNGE"); len(cs) != 1 || cs[0].Args != "2" || cs[0].User != "alice" || cs[0].Session != 1 {
		t.Errorf("UID EXPUNGE recorded as %+v", cs)
	}
}

func TestWithoutUIDPlusAndMove(t *testing.T) {
	s := newServer(t, Options{Caps: []string{"IMAP4rev1"}})
	c := goClient(t, s)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	// go-imap sends UID EXPUNGE regardless; the server refuses it.
	if err := c.UIDExpunge(imap.UIDSetNum(1)).Close(); err == nil {
		t.Fatal("UID EXPUNGE accepted without UIDPLUS")
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	if got := s.Messages("alice", "INBOX"); len(got) != 1 || got[0].UID != 2 {
		t.Fatalf("after EXPUNGE: %+v", got)
	}
	if err := c.Create("Old", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Copy(imap.UIDSetNum(2), "Old").Wait(); err != nil {
		t.Fatal(err)
	}
	if got := s.Messages("alice", "Old"); len(got) != 1 || string(got[0].Body) != "Subject: two\r\n\r\nbody two\r\n" {
		t.Fatalf("after COPY: %+v", got)
	}
}

// rawConn is a line-level client for watching misbehaviour.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, s *Server) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawConn) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// line reads one line, failing the test on error.
func (c *rawConn) line() string {
	c.t.Helper()
	l, err := c.readLine(2 * time.Second)
	if err != nil {
		c.t.Fatalf("reading: %v", err)
	}
	return l
}

func (c *rawConn) readLine(d time.Duration) (string, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	l, err := c.br.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// until reads lines up to the one starting with prefix.
func (c *rawConn) until(prefix string) []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, prefix) {
			return lines
		}
	}
}

func (c *rawConn) expectSilence() {
	c.t.Helper()
	if l, err := c.readLine(150 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("expected silence, got %q %v", l, err)
	}
}

func (c *rawConn) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	rest, err := io.ReadAll(c.br)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		c.t.Fatalf("expected close, got %q %v", rest, err)
	}
}

func (c *rawConn) login() {
	c.t.Helper()
	c.line() // greeting
	c.send(`a LOGIN alice "secret"`)
	if l := c.line(); !strings.HasPrefix(l, "a OK") {
		c.t.Fatalf("LOGIN: %q", l)
	}
	c.send("b SELECT INBOX")
	c.until("b OK")
}

func TestHangAtGreeting(t *testing.T) {
	s := newServer(t, Options{})
	s.AddRule(Rule{At: Greeting, Step: Hang})
	c := dialRaw(t, s)
	c.expectSilence()
	c.send("a CAPABILITY")
	c.expectSilence()
	if _, ok := s.WaitCommand("CAPABILITY", time.Second); !ok {
		t.Fatal("commands sent to a hung session are not recorded")
	}
}

func TestHangAtLoginForOneUser(t *testing.T) {
	s := newServer(t, Options{})
	s.AddUser("bob", "pw")
	s.AddRule(Rule{At: Login, Step: Hang, User: "alice"})
	bob := dialRaw(t, s)
	bob.line()
	bob.send("a LOGIN bob pw")
	if l := bob.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("bob: %q", l)
	}
	alice := dialRaw(t, s)
	alice.line()
	alice.send("a LOGIN alice secret")
	alice.expectSilence()
}

func TestSelectRules(t *testing.T) {
	s := newServer(t, Options{})
	s.AddRule(Rule{At: Select, Step: No, Times: 1, Text: "[SERVERBUG] oops"})
	s.AddRule(Rule{At: Select, Step: ChangeUIDValidity, Times: 1})
	c := dialRaw(t, s)
	c.line()
	c.send("a LOGIN alice secret")
	c.line()
	c.send("b SELECT INBOX")
	if l := c.line(); l != "b NO [SERVERBUG] oops" {
		t.Fatalf("scripted NO: %q", l)
	}
	c.send("c SELECT INBOX")
	if lines := c.until("c OK"); !strings.Contains(strings.Join(lines, "\n"), "[UIDVALIDITY 1000]") {
		t.Fatalf("SELECT before the change: %q", lines)
	}
	c.send("d STATUS INBOX (UIDVALIDITY)")
	if l := c.line(); l != `* STATUS "INBOX" (UIDVALIDITY 1001)` {
		t.Fatalf("STATUS after the change: %q", l)
	}
}

func TestCutBetweenStoreAndExpunge(t *testing.T) {
	s := newServer(t, Options{})
	s.AddRule(Rule{At: Store, Step: CutAfter})
	c := dialRaw(t, s)
	c.login()
	c.send(`c UID STORE 1 +FLAGS.SILENT (\Deleted)`)
	if l := c.line(); !strings.HasPrefix(l, "c OK") {
		t.Fatalf("STORE: %q", l)
	}
	c.expectClosed()
	if m := s.Messages("alice", "INBOX"); len(m) != 2 || !m[0].HasFlag(`\Deleted`) {
		t.Fatalf("after the cut: %+v", m)
	}
}

func TestNoOnUIDExpunge(t *testing.T) {
	s := newServer(t, Options{})
	s.AddRule(Rule{At: UIDExpunge, Step: No})
	c := dialRaw(t, s)
	c.login()
	c.send(`c UID STORE 1 +FLAGS (\Deleted)`)
	if lines := c.until("c OK"); lines[0] != `* 1 FETCH (UID 1 FLAGS (\Deleted))` {
		t.Fatalf("STORE: %q", lines)
	}
	c.send("d UID EXPUNGE 1")
	if l := c.line(); !strings.HasPrefix(l, "d NO") {
		t.Fatalf("UID EXPUNGE: %q", l)
	}
	if len(s.Messages("alice", "INBOX")) != 2 {
		t.Fatal("a refused UID EXPUNGE removed messages")
	}
}

func TestByeMidSession(t *testing.T) {
	s := newServer(t, Options{})
	s.AddRule(Rule{At: FetchBody, Step: Bye})
	c := dialRaw(t, s)
	c.login()
	c.send("c UID FETCH 1 (UID BODY.PEEK[])")
	if l := c.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("got %q", l)
	}
	c.expectClosed()
}

func TestBodyFaults(t *testing.T) {
	for _, tc := range []struct {
		step  Step
		check func(t *testing.T, c *rawConn)
	}{
		{HangMidBody, func(t *testing.T, c *rawConn) {
			head := c.line()
			if head != "* 1 FETCH (UID 1 BODY[] {"+itoa(len(msg1))+"}" {
				t.Fatalf("head %q", head)
			}
			half := make([]byte, len(msg1)/2)
			if _, err := io.ReadFull(c.br, half); err != nil || string(half) != msg1[:len(msg1)/2] {
				t.Fatalf("half %q %v", half, err)
			}
			c.expectSilence()
		}},
		{CutMidBody, func(t *testing.T, c *rawConn) {
			c.line()
			c.expectClosed()
		}},
		{LiteralOverrun, func(t *testing.T, c *rawConn) {
			c.line()
			rest := make([]byte, len(msg1))
			io.ReadFull(c.br, rest)
			if l := c.line(); !strings.Contains(l, "OVERRUN") {
				t.Fatalf("after the literal: %q", l)
			}
		}},
	} {
		t.Run(tc.step.String(), func(t *testing.T) {
			s := newServer(t, Options{})
			s.AddRule(Rule{At: FetchBody, Step: tc.step})
			c := dialRaw(t, s)
			c.login()
			c.send("c UID FETCH 1 (UID BODY.PEEK[])")
			tc.check(t, c)
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestUnderstateSize(t *testing.T) {
	s := newServer(t, Options{})
	s.AddRule(Rule{At: List, Step: UnderstateSize})
	c := dialRaw(t, s)
	c.login()
	c.send("c UID FETCH 1 (UID RFC822.SIZE)")
	if l := c.line(); l != "* 1 FETCH (UID 1 RFC822.SIZE "+itoa(len(msg1)-10)+")" {
		t.Fatalf("got %q", l)
	}
}

func TestEndlessLineAndHugeLiteral(t *testing.T) {
	for _, step := range []Step{EndlessLine, HugeLiteral} {
		t.Run(step.String(), func(t *testing.T) {
			s := newServer(t, Options{})
			s.AddRule(Rule{At: Greeting, Step: step})
			c := dialRaw(t, s)
			c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 1<<20)
			if _, err := io.ReadFull(c.br, buf); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(buf, []byte("\n")) != (step == HugeLiteral) {
				t.Fatalf("first MiB: %q...", buf[:64])
			}
			c.nc.Close()
			if !s.WaitIdle(2 * time.Second) {
				t.Fatal("server kept writing after the client left")
			}
		})
	}
}

func TestTimesExpires(t *testing.T) {
	s := newServer(t, Options{})
	s.AddRule(Rule{At: Noop, Step: Bad, Times: 2})
	c := dialRaw(t, s)
	c.login()
	for i, want := range []string{"x BAD", "x BAD", "x OK"} {
		c.send("x NOOP")
		if l := c.line(); !strings.HasPrefix(l, want) {
			t.Fatalf("NOOP %d: %q, want %s", i+1, l, want)
		}
	}
}

func TestSynchronizingLiteralLogin(t *testing.T) {
	s := newServer(t, Options{})
	c := dialRaw(t, s)
	c.line()
	c.send("a LOGIN {5}")
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("continuation: %q", l)
	}
	c.send(`alice "secret"`)
	if l := c.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("LOGIN with a literal: %q", l)
	}
}

func TestAuthenticatePlain(t *testing.T) {
	s := newServer(t, Options{Caps: []string{"IMAP4rev1", "LOGINDISABLED", "AUTH=PLAIN"}})
	c := dialRaw(t, s)
	c.line()
	c.send("a AUTHENTICATE PLAIN")
	c.line()
	c.send("AGFsaWNlAHNlY3JldA==") // \0alice\0secret
	if l := c.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("AUTHENTICATE: %q", l)
	}
}

func TestCloseEndsHungSessions(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.AddRule(Rule{At: Greeting, Step: Hang})
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for s.Active() == 0 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung")
	}
}

func TestDirectChanges(t *testing.T) {
	s := newServer(t, Options{})
	if !s.AddFlags("alice", "INBOX", 1, `\Deleted`, "$Junk") || s.AddFlags("alice", "INBOX", 99, `\Seen`) {
		t.Fatal("AddFlags: wrong existence report")
	}
	if m := s.Messages("alice", "INBOX")[0]; !m.HasFlag(`\deleted`) || !m.HasFlag("$junk") {
		t.Fatalf("flags %v", m.Flags)
	}
	if n := s.Expunge("alice", "INBOX", 2, 7); n != 1 {
		t.Fatalf("Expunge removed %d, want 1", n)
	}
	if m := s.Messages("alice", "INBOX"); len(m) != 1 || m[0].UID != 1 {
		t.Fatalf("after Expunge: %+v", m)
	}
	s.SetUIDValidity("alice", "INBOX", 7)
	if v := s.UIDValidity("alice", "INBOX"); v != 7 {
		t.Fatalf("UIDValidity %d", v)
	}
}
