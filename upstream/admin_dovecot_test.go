package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
}

// adminEnv is a Dovecot with a master user (for immediate restores), a
// store and a fake clock.
type adminEnv struct {
	*dovecotEnv
	st    State
	clock *fakeClock
}

const (
	masterUser = "popbridge-master"
	masterPass = "master-secret"
)

func startAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	// Dovecot's auth process runs as another user: t.TempDir's parent is
	// not open to it.
	dir, err := os.MkdirTemp("", "popbridge-master-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	masters := filepath.Join(dir, "masters")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(masters, []byte(masterUser+":{PLAIN}"+masterPass+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A master passdb: "user*popbridge-master" with the master password
	// logs in as user (Dovecot's master users, docs/policy.md).
	d := testenv.StartDovecot(t, testenv.DovecotOptions{ExtraConfig: fmt.Sprintf(
		"auth_master_user_separator = *\npassdb {\n  driver = passwd-file\n  master = yes\n  args = scheme=PLAIN %s\n  pass = yes\n}\n", masters)})
	return &adminEnv{dovecotEnv: &dovecotEnv{d: d}, st: newTestState(t), clock: newFakeClock()}
}

// backend is a backend with the env's store and clock; mod may change
// the policy.
func (e *adminEnv) backend(t *testing.T, p policy.Policy, mod ...func(*Options)) *Backend {
	t.Helper()
	return e.dovecotEnv.backend(t, append([]func(*Options){func(o *Options) {
		o.Policy = p
		o.State = e.st
		o.Passive = true
		o.DeviceSeparator = "#"
		o.Now = e.clock.now
	}}, mod...)...)
}

// session logs in as name (user#device or user) with user's password.
func (e *adminEnv) session(t *testing.T, b *Backend, name string) *maildrop {
	t.Helper()
	user, _, _ := strings.Cut(name, "#")
	mb, err := b.Login(context.Background(), testConn, name, user+"-pw")
	if err != nil {
		t.Fatalf("Login %s: %v", name, err)
	}
	t.Cleanup(func() { mb.Close() })
	return mb.(*maildrop)
}

// quit is a QUIT after the session marked del (message numbers) deleted
// and retr retrieved; it closes the session.
func quit(t *testing.T, m *maildrop, del, retr []int) error {
	t.Helper()
	err := m.Update(context.Background(), pop3server.Marks{Deleted: del, Retrieved: retr})
	m.Close()
	return err
}

// seenSubjects lists the subjects a session sees, in order.
func seenSubjects(t *testing.T, m *maildrop) []string {
	t.Helper()
	var out []string
	for i := range m.Messages() {
		body, err := m.Top(context.Background(), i+1, 0)
		if err != nil {
			t.Fatalf("TOP %d: %v", i+1, err)
		}
		out = append(out, headerSubject(string(readAll(t, body))))
	}
	return out
}

func headerSubject(header string) string {
	for _, l := range strings.Split(header, "\r\n") {
		if s, ok := strings.CutPrefix(l, "Subject: "); ok {
			return s
		}
	}
	return ""
}

func storedSubjects(t *testing.T, d *testenv.Dovecot, user, mailbox string) []string {
	t.Helper()
	var out []string
	for _, m := range d.Messages(t, user, mailbox) {
		out = append(out, headerSubject(string(m.Body)))
	}
	return out
}

// mail appends messages with these subjects, each with a Message-ID and
// Date derived from it.
func mail(t *testing.T, d *testenv.Dovecot, user string, subjects ...string) []imap.UID {
	t.Helper()
	var uids []imap.UID
	for _, s := range subjects {
		uids = append(uids, d.Append(t, user, "INBOX", []byte(msgText(s))))
	}
	return uids
}

func msgText(subject string) string {
	return fmt.Sprintf("Message-ID: <%s@test>\r\nDate: Tue, 01 Dec 2026 08:00:00 +0000\r\nSubject: %s\r\n\r\nbody of %s\r\n", subject, subject, subject)
}

func (e *adminEnv) journal(t *testing.T, user string) []JournalEntry {
	t.Helper()
	rows, err := e.st.Journal(context.Background(), JournalQuery{User: user})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func equalStrings(a, b []string) bool { return reflect.DeepEqual(a, b) || (len(a) == 0 && len(b) == 0) }

func TestDevicesDovecot(t *testing.T) {
	e := startAdminEnv(t)
	honor := policy.Policy{Delete: policy.Honor, Action: policy.Action{Kind: policy.Expunge}, MarkSeen: true}

	t.Run("honor: the message leaves upstream only once phone and desktop deleted it", func(t *testing.T) {
		user := e.user(t)
		mail(t, e.d, user, "one", "two")
		b := e.backend(t, honor)
		if err := quit(t, e.session(t, b, user+"#desktop"), nil, nil); err != nil { // the desktop is known
			t.Fatal(err)
		}
		phone := e.session(t, b, user+"#phone")
		if got := seenSubjects(t, phone); !equalStrings(got, []string{"one", "two"}) {
			t.Fatalf("phone sees %q", got)
		}
		if err := quit(t, phone, []int{1}, nil); err != nil {
			t.Fatal(err)
		}
		if got := storedSubjects(t, e.d, user, "INBOX"); !equalStrings(got, []string{"one", "two"}) {
			t.Fatalf("after phone's DELE the upstream has %q, want both", got)
		}
		phone = e.session(t, b, user+"#phone")
		if got := seenSubjects(t, phone); !equalStrings(got, []string{"two"}) {
			t.Errorf("phone sees %q after deleting one, want only two", got)
		}
		desk := e.session(t, b, user+"#desktop")
		if p, d := phone.Messages()[0].UIDL, desk.Messages()[1].UIDL; p != d {
			t.Errorf("message two has UIDL %q on the phone and %q on the desktop", p, d)
		}
		if got := seenSubjects(t, desk); !equalStrings(got, []string{"one", "two"}) {
			t.Fatalf("desktop sees %q, want both", got)
		}
		body, err := desk.Retrieve(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(readAll(t, body)); got != strings.ReplaceAll(msgText("one"), "\n", "\n") {
			t.Errorf("desktop RETR 1 = %q", got)
		}
		if err := quit(t, desk, []int{1}, []int{1}); err != nil {
			t.Fatal(err)
		}
		if got := storedSubjects(t, e.d, user, "INBOX"); !equalStrings(got, []string{"two"}) {
			t.Errorf("after both deleted, upstream has %q, want only two", got)
		}
		if done, err := e.st.Done(context.Background(), stateKey(user, "INBOX"), e.d.UIDValidity(t, user, "INBOX")); err != nil || len(done) != 0 {
			t.Errorf("ledger after the message left: %+v %v, want it forgotten", done, err)
		}
		rows := e.journal(t, user)
		if len(rows) != 1 || rows[0].Device != "desktop" || rows[0].Action != "expunge" || rows[0].Outcome != OutcomeApplied ||
			rows[0].MessageID != "one@test" {
			t.Errorf("journal: %+v, want one applied expunge of one@test by desktop", rows)
		}
	})

	t.Run("a device past expiry stops holding back", func(t *testing.T) {
		user := e.user(t)
		mail(t, e.d, user, "one", "two")
		b := e.backend(t, honor)
		if err := quit(t, e.session(t, b, user+"#desktop"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := quit(t, e.session(t, b, user+"#phone"), []int{2}, nil); err != nil {
			t.Fatal(err)
		}
		if got := storedSubjects(t, e.d, user, "INBOX"); !equalStrings(got, []string{"one", "two"}) {
			t.Fatalf("desktop active: upstream has %q, want both", got)
		}
		e.clock.advance(29 * 24 * time.Hour)
		if err := quit(t, e.session(t, b, user+"#phone"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := storedSubjects(t, e.d, user, "INBOX"); !equalStrings(got, []string{"one", "two"}) {
			t.Fatalf("desktop seen 29 days ago: upstream has %q, want both", got)
		}
		e.clock.advance(2 * 24 * time.Hour)
		// No new DELE: the phone's earlier one is applied now that the
		// desktop, unseen for 31 days, no longer counts.
		if err := quit(t, e.session(t, b, user+"#phone"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := storedSubjects(t, e.d, user, "INBOX"); !equalStrings(got, []string{"one"}) {
			t.Errorf("desktop expired: upstream has %q, want only one", got)
		}
		// The desktop comes back: it gets what is left.
		if got := seenSubjects(t, e.session(t, b, user+"#desktop")); !equalStrings(got, []string{"one"}) {
			t.Errorf("desktop sees %q", got)
		}
	})

	t.Run("leave with a store: a client that DELEs does not see the message again", func(t *testing.T) {
		user := e.user(t)
		mail(t, e.d, user, "one", "two", "three")
		b := e.backend(t, policy.Policy{Delete: policy.Leave, Action: policy.Action{Kind: policy.Expunge}, MarkSeen: true})
		if err := quit(t, e.session(t, b, user), []int{1, 3}, []int{1}); err != nil {
			t.Fatal(err)
		}
		if got := seenSubjects(t, e.session(t, b, user)); !equalStrings(got, []string{"two"}) {
			t.Errorf("after DELE 1 and 3 under leave the client sees %q, want only two", got)
		}
		if got := storedSubjects(t, e.d, user, "INBOX"); !equalStrings(got, []string{"one", "two", "three"}) {
			t.Errorf("leave changed the upstream: %q", got)
		}
		// Another device still sees everything.
		if got := seenSubjects(t, e.session(t, b, user+"#tablet")); !equalStrings(got, []string{"one", "two", "three"}) {
			t.Errorf("tablet sees %q", got)
		}
		if rows := e.journal(t, user); len(rows) != 0 {
			t.Errorf("leave journaled %+v", rows)
		}
	})
}

// TestJournalDovecot: one row per message and action, exact, written
// before the change and completed with the upstream's answer.
func TestJournalDovecot(t *testing.T) {
	e := startAdminEnv(t)

	for _, action := range []string{"expunge", "flag", "move:Trash", "quarantine"} {
		t.Run(action, func(t *testing.T) {
			user := e.user(t)
			mail(t, e.d, user, "keep", "gone")
			a, err := policy.ParseAction(action)
			if err != nil {
				t.Fatal(err)
			}
			b := e.backend(t, policy.Policy{Delete: policy.Honor, Action: a, MarkSeen: true})
			m := e.session(t, b, user+"#phone")
			uv, uid := m.uidValidity, uint32(m.msgUIDs[1])
			if err := quit(t, m, []int{2}, nil); err != nil {
				t.Fatal(err)
			}
			want := []JournalEntry{{
				Time: e.clock.now(), User: user, Device: "phone", ClientAddr: "192.0.2.7", SessionID: "test",
				Mailbox: "INBOX", UIDValidity: uv, UID: uid, MessageID: "gone@test", Date: "2026-12-01T08:00:00Z",
				Size: int64(len(msgText("gone"))), Policy: "honor", Action: action, Outcome: OutcomeApplied,
			}}
			switch action {
			case "move:Trash":
				want[0].Detail = "to Trash"
			case "quarantine":
				want[0].Detail = "to POPBRIDGE-QUARANTINE"
			}
			got := e.journal(t, user)
			for i := range got {
				if got[i].ID == 0 {
					t.Errorf("row %d has no ID", i)
				}
				got[i].ID = 0
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("journal:\n got %+v\nwant %+v", got, want)
			}
			inbox := storedSubjects(t, e.d, user, "INBOX")
			switch action {
			case "flag":
				if !equalStrings(inbox, []string{"keep", "gone"}) {
					t.Errorf("INBOX %q", inbox)
				}
			default:
				if !equalStrings(inbox, []string{"keep"}) {
					t.Errorf("INBOX %q", inbox)
				}
			}
		})
	}

	t.Run("refused UID EXPUNGE: outcome failed, the message stays", func(t *testing.T) {
		user := e.user(t)
		mail(t, e.d, user, "keep", "gone")
		p := startIMAPProxy(t, e.d.IMAPAddr)
		p.set("UID EXPUNGE", false)
		b := e.backend(t, policy.Default, func(o *Options) { o.URL = &URL{Scheme: SchemeInsecure, Host: p.addr()} })
		err := quit(t, e.session(t, b, user), []int{2}, nil)
		if !errors.Is(err, pop3server.ErrUpdateFailed) {
			t.Fatalf("QUIT: %v, want ErrUpdateFailed", err)
		}
		rows := e.journal(t, user)
		if len(rows) != 1 || rows[0].Outcome != OutcomeFailed || rows[0].MessageID != "gone@test" || rows[0].Action != "expunge" {
			t.Errorf("journal %+v, want one failed expunge", rows)
		}
		if got := storedSubjects(t, e.d, user, "INBOX"); !equalStrings(got, []string{"keep", "gone"}) {
			t.Errorf("INBOX %q", got)
		}
	})

	t.Run("dropped connection: nothing journaled as applied", func(t *testing.T) {
		user := e.user(t)
		mail(t, e.d, user, "keep", "gone")
		b := e.backend(t, policy.Default)
		// The client goes away after DELE: pop3server never calls Update.
		e.session(t, b, user).Close()
		// The upstream goes away during the update.
		p := startIMAPProxy(t, e.d.IMAPAddr)
		b = e.backend(t, policy.Default, func(o *Options) { o.URL = &URL{Scheme: SchemeInsecure, Host: p.addr()} })
		m := e.session(t, b, user)
		p.set("UID EXPUNGE", true)
		err := quit(t, m, []int{2}, nil)
		if !errors.Is(err, pop3server.ErrUpdateFailed) {
			t.Fatalf("QUIT: %v, want ErrUpdateFailed", err)
		}
		for _, r := range e.journal(t, user) {
			if r.Outcome == OutcomeApplied {
				t.Errorf("journal row %+v applied", r)
			}
		}
	})
}

// imapProxy relays IMAP between the backend and Dovecot, line by line
// towards the server, and can refuse one command (answered NO by Dovecot
// itself: the command is swapped for a STATUS of a mailbox that does not
// exist, under the same tag) or cut the connection when it is sent.
type imapProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	verb   string
	cut    bool
}

func startIMAPProxy(t *testing.T, target string) *imapProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &imapProxy{ln: ln, target: target}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); p.relay(c) }()
		}
	}()
	return p
}

func (p *imapProxy) addr() string { return p.ln.Addr().String() }

// set makes the proxy refuse (or, with cut, cut the connection at) every
// command whose verb after the tag starts with verb.
func (p *imapProxy) set(verb string, cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.verb, p.cut = verb, cut
}

func (p *imapProxy) relay(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() { _, _ = io.Copy(c, s); c.Close() }()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		p.mu.Lock()
		verb, cut := p.verb, p.cut
		p.mu.Unlock()
		if tag, rest, ok := strings.Cut(line, " "); ok && verb != "" && strings.HasPrefix(strings.ToUpper(rest), verb) {
			if cut {
				return
			}
			line = tag + " STATUS popbridge-test-no-such-mailbox (MESSAGES)\r\n"
		}
		if _, err := io.WriteString(s, line); err != nil {
			return
		}
	}
}

// failingJournal is a store whose journal cannot be written.
type failingJournal struct{ State }

func (failingJournal) AppendJournal(context.Context, []JournalEntry) ([]int64, error) {
	return nil, errors.New("disk full")
}

func TestJournalFailureDovecot(t *testing.T) {
	e := startAdminEnv(t)
	user := e.user(t)
	mail(t, e.d, user, "one", "two")
	before := e.d.Messages(t, user, "INBOX")
	for _, p := range []policy.Policy{
		policy.Default,
		{Delete: policy.OnDownload, Action: policy.Action{Kind: policy.Flag}, MarkSeen: true},
		{Delete: policy.Honor, Action: policy.Action{Kind: policy.Quarantine, Mailbox: policy.DefaultQuarantineMailbox}},
	} {
		b := e.backend(t, p, func(o *Options) { o.State = failingJournal{e.st} })
		err := quit(t, e.session(t, b, user+"#phone"), []int{1}, []int{2})
		if !errors.Is(err, pop3server.ErrUpdateFailed) {
			t.Errorf("%v: QUIT = %v, want ErrUpdateFailed ([SYS/TEMP])", p.Action, err)
		}
		if after := e.d.Messages(t, user, "INBOX"); !sameMessages(after, before) {
			t.Errorf("%v: the journal failed but the mailbox changed:\n%+v\n%+v", p.Action, before, after)
		}
	}
}

func TestDryRunDovecot(t *testing.T) {
	e := startAdminEnv(t)
	user := e.user(t)
	mail(t, e.d, user, "one", "two", "three")
	before := e.d.Messages(t, user, "INBOX")
	p := policy.Policy{Delete: policy.OnDownload, Action: policy.Action{Kind: policy.Expunge}, MarkSeen: true, DryRun: true}
	b := e.backend(t, p, func(o *Options) { o.Passive = false }) // a dry run journals anyway
	m := e.session(t, b, user)
	body, err := m.Retrieve(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, body)
	if err := quit(t, m, []int{1}, []int{2}); err != nil {
		t.Fatal(err)
	}
	if after := e.d.Messages(t, user, "INBOX"); !sameMessages(after, before) {
		t.Errorf("dry run changed the mailbox:\n%+v\n%+v", before, after)
	}
	rows := e.journal(t, user)
	var got []string
	for _, r := range rows {
		got = append(got, r.MessageID+" "+r.Action+" "+r.Outcome+" "+r.Policy)
	}
	want := []string{"one@test expunge dry-run on-download", "two@test expunge dry-run on-download"}
	if !equalStrings(got, want) {
		t.Errorf("journal %q, want %q", got, want)
	}
	// The next session sees everything: a dry run hides nothing.
	if got := seenSubjects(t, e.session(t, b, user)); !equalStrings(got, []string{"one", "two", "three"}) {
		t.Errorf("after the dry run the client sees %q", got)
	}
}

func TestQuarantineDovecot(t *testing.T) {
	e := startAdminEnv(t)
	q := policy.Policy{Delete: policy.Honor, Action: policy.Action{Kind: policy.Quarantine, Mailbox: policy.DefaultQuarantineMailbox}, MarkSeen: true}

	// quarantineOne quarantines "gone" and returns the UIDL the client saw.
	quarantineOne := func(t *testing.T, b *Backend, user string) string {
		t.Helper()
		mail(t, e.d, user, "keep", "gone")
		m := e.session(t, b, user)
		uidl := m.Messages()[1].UIDL
		if err := quit(t, m, []int{2}, nil); err != nil {
			t.Fatal(err)
		}
		if got := storedSubjects(t, e.d, user, "INBOX"); !equalStrings(got, []string{"keep"}) {
			t.Fatalf("INBOX after quarantine: %q", got)
		}
		if got := storedSubjects(t, e.d, user, policy.DefaultQuarantineMailbox); !equalStrings(got, []string{"gone"}) {
			t.Fatalf("quarantine: %q", got)
		}
		return uidl
	}
	outcomes := func(t *testing.T, user string) []string {
		var out []string
		for _, r := range e.journal(t, user) {
			out = append(out, r.Mailbox+" "+r.Action+" "+r.Outcome)
		}
		return out
	}

	t.Run("queued restore is applied at the next login, with the UIDL the client saw", func(t *testing.T) {
		user := e.user(t)
		b := e.backend(t, q, func(o *Options) { o.UIDLs = &memUIDLs{} })
		uidl := quarantineOne(t, b, user)
		_, n, err := b.QueueRestore(context.Background(), user, RestoreFilter{MessageID: "<gone@test>"})
		if err != nil || n != 1 {
			t.Fatalf("QueueRestore: %d, %v", n, err)
		}
		m := e.session(t, b, user)
		if got := seenSubjects(t, m); !equalStrings(got, []string{"keep", "gone"}) {
			t.Errorf("after the queued restore the client sees %q", got)
		}
		if got := m.Messages()[1].UIDL; got != uidl || m.msgUIDs[1] == 2 {
			t.Errorf("restored message (UID %d) has UIDL %q, want %q as before the quarantine", m.msgUIDs[1], got, uidl)
		}
		if got := storedSubjects(t, e.d, user, policy.DefaultQuarantineMailbox); len(got) != 0 {
			t.Errorf("quarantine still holds %q", got)
		}
		want := []string{"INBOX quarantine restored", policy.DefaultQuarantineMailbox + " restore applied"}
		if got := outcomes(t, user); !equalStrings(got, want) {
			t.Errorf("journal %q, want %q", got, want)
		}
		// Nothing is restored twice.
		if got := seenSubjects(t, e.session(t, b, user)); !equalStrings(got, []string{"keep", "gone"}) {
			t.Errorf("second login sees %q", got)
		}
	})

	t.Run("immediate restore with a Dovecot master user", func(t *testing.T) {
		user := e.user(t)
		b := e.backend(t, q)
		quarantineOne(t, b, user)
		if _, err := b.RestoreApp(context.Background(), user, RestoreFilter{}); !errors.Is(err, ErrNoAppAccess) {
			t.Errorf("RestoreApp without OAuth2: %v, want ErrNoAppAccess", err)
		}
		n, err := b.RestoreNow(context.Background(), user, user+"*"+masterUser, masterPass, RestoreFilter{Since: e.clock.now().Add(-time.Hour)})
		if err != nil || n != 1 {
			t.Fatalf("RestoreNow: %d, %v", n, err)
		}
		if got := storedSubjects(t, e.d, user, "INBOX"); !equalStrings(got, []string{"keep", "gone"}) {
			t.Errorf("INBOX after the restore: %q", got)
		}
		want := []string{"INBOX quarantine restored", policy.DefaultQuarantineMailbox + " restore applied"}
		if got := outcomes(t, user); !equalStrings(got, want) {
			t.Errorf("journal %q, want %q", got, want)
		}
		if _, err := b.RestoreNow(context.Background(), user, user+"*"+masterUser, "wrong", RestoreFilter{}); err != nil {
			t.Errorf("nothing left to restore, yet: %v", err)
		}
	})

	t.Run("quarantine expiry at a later session", func(t *testing.T) {
		user := e.user(t)
		b := e.backend(t, q)
		quarantineOne(t, b, user)
		e.clock.advance(13 * 24 * time.Hour)
		if err := quit(t, e.session(t, b, user), nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := storedSubjects(t, e.d, user, policy.DefaultQuarantineMailbox); !equalStrings(got, []string{"gone"}) {
			t.Errorf("after 13 days the quarantine holds %q, want gone", got)
		}
		e.clock.advance(2 * 24 * time.Hour)
		if err := quit(t, e.session(t, b, user), nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := storedSubjects(t, e.d, user, policy.DefaultQuarantineMailbox); len(got) != 0 {
			t.Errorf("after 15 days the quarantine holds %q", got)
		}
		if got := storedSubjects(t, e.d, user, "INBOX"); !equalStrings(got, []string{"keep"}) {
			t.Errorf("INBOX %q", got)
		}
		want := []string{"INBOX quarantine expired", policy.DefaultQuarantineMailbox + " expire applied"}
		if got := outcomes(t, user); !equalStrings(got, want) {
			t.Errorf("journal %q, want %q", got, want)
		}
	})

	t.Run("the quarantine mailbox is never served", func(t *testing.T) {
		user := e.user(t)
		b := e.backend(t, q, func(o *Options) { o.Mailbox = policy.DefaultQuarantineMailbox })
		_, err := b.Login(context.Background(), testConn, user, user+"-pw")
		if !errors.Is(err, errConfig) {
			t.Errorf("login to the quarantine: %v, want [SYS/PERM]", err)
		}
	})
}

// sameMessages compares stored messages byte for byte, flags included,
// except \Recent, which belongs to the IMAP session that looked.
func sameMessages(a, b []testenv.StoredMessage) bool {
	strip := func(l []testenv.StoredMessage) []testenv.StoredMessage {
		out := make([]testenv.StoredMessage, len(l))
		for i, m := range l {
			m.Flags = slices.DeleteFunc(slices.Clone(m.Flags), func(f imap.Flag) bool { return f == `\Recent` })
			if len(m.Flags) == 0 {
				m.Flags = nil
			}
			out[i] = m
		}
		return out
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

// TestJournalRetentionDovecot: rows older than --journal-retention are
// pruned by a later session.
func TestJournalRetentionDovecot(t *testing.T) {
	e := startAdminEnv(t)
	user := e.user(t)
	mail(t, e.d, user, "one", "two")
	b := e.backend(t, policy.Default, func(o *Options) { o.JournalRetention = 90 * 24 * time.Hour })
	if err := quit(t, e.session(t, b, user), []int{1}, nil); err != nil {
		t.Fatal(err)
	}
	if rows := e.journal(t, user); len(rows) != 1 {
		t.Fatalf("journal %+v", rows)
	}
	e.clock.advance(89 * 24 * time.Hour)
	if err := quit(t, e.session(t, b, user), nil, nil); err != nil {
		t.Fatal(err)
	}
	if rows := e.journal(t, user); len(rows) != 1 {
		t.Fatalf("after 89 days: journal %+v, want the row kept", rows)
	}
	e.clock.advance(2 * 24 * time.Hour)
	if err := quit(t, e.session(t, b, user), nil, nil); err != nil {
		t.Fatal(err)
	}
	if rows := e.journal(t, user); len(rows) != 0 {
		t.Errorf("after 91 days: journal %+v, want it pruned", rows)
	}
}
