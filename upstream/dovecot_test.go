package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

// dovecotEnv is one Dovecot shared by the subtests of a test; each subtest
// gets its own user, so their mailboxes do not meet.
type dovecotEnv struct {
	d     *testenv.Dovecot
	users atomic.Int32
}

func startDovecot(t *testing.T) *dovecotEnv {
	t.Helper()
	return &dovecotEnv{d: testenv.StartDovecot(t, testenv.DovecotOptions{POP3: true})}
}

// user adds a fresh account and returns its name.
func (e *dovecotEnv) user(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("user%d", e.users.Add(1))
	if err := e.d.AddUser(testenv.User{Name: name, Password: name + "-pw"}); err != nil {
		t.Fatal(err)
	}
	return name
}

func (e *dovecotEnv) backend(t *testing.T, mod ...func(*Options)) *Backend {
	t.Helper()
	return newBackend(t, &URL{Scheme: SchemeInsecure, Host: e.d.IMAPAddr}, mod...)
}

func (e *dovecotEnv) login(t *testing.T, b *Backend, user string) *maildrop {
	t.Helper()
	mb, err := b.Login(context.Background(), testConn, user, user+"-pw")
	if err != nil {
		t.Fatalf("Login %s: %v", user, err)
	}
	t.Cleanup(func() { mb.Close() })
	return mb.(*maildrop)
}

// dovecotCorpus are messages whose bytes must survive exactly.
func dovecotCorpus() [][]byte {
	big := bytes.NewBufferString("Subject: 20 MiB\r\n\r\n")
	for i := 0; big.Len() < 20<<20; i++ {
		fmt.Fprintf(big, "%07d the quick brown fox jumps over the lazy dog 0123456789\r\n", i)
	}
	return [][]byte{
		[]byte("Subject: plain\r\n\r\nhello\r\n"),
		[]byte("Subject: dots\r\n\r\n.\r\n..two\r\n.three\r\nend\r\n"),
		[]byte("Subject: =?UTF-8?Q?gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße, 日本語, emoji 🎉\r\n"),
		append(append([]byte("Subject: long line\r\n\r\n"), bytes.Repeat([]byte("x"), 5000)...), "\r\nshort\r\n"...),
		[]byte("Subject: no final newline\r\n\r\nlast line"),
		[]byte("Subject: header only\r\n\r\n"),
		// A text of exactly one TOP chunk.
		append([]byte("Subject: exact\r\n\r\n"), bytes.Repeat([]byte(strings.Repeat("e", 62)+"\r\n"), minChunk/64)...),
		big.Bytes(),
	}
}

func TestDovecotSession(t *testing.T) {
	e := startDovecot(t)

	t.Run("auth", func(t *testing.T) {
		checkGoroutines(t)
		user := e.user(t)
		b := e.backend(t)
		for _, u := range []string{user, "nosuchuser"} {
			_, err := b.Login(context.Background(), testConn, u, "wrong")
			wantCode(t, err, pop3server.ErrAuthFailed)
		}
		e.login(t, b, user)
	})

	t.Run("listing, UIDL like Dovecot's POP3, RETR and TOP byte-exact", func(t *testing.T) {
		checkGoroutines(t)
		user := e.user(t)
		corpus := dovecotCorpus()
		for _, msg := range corpus {
			e.d.Append(t, user, "INBOX", msg)
		}
		hidden := e.d.Append(t, user, "INBOX", []byte("Subject: hidden\r\n\r\nx\r\n"), imap.Flag(policy.DeletedKeyword))

		m := e.login(t, e.backend(t), user)
		infos := m.Messages()
		if len(infos) != len(corpus) {
			t.Fatalf("%d messages listed, want %d", len(infos), len(corpus))
		}
		// Dovecot's own POP3 (pop3_uidl_format = %08Xu%08Xv) gives the
		// same UIDLs and sizes; it also lists the $POP3Deleted message,
		// having no pop3_deleted_flag, so drop that one.
		uidls, sizes := dovecotPOP3(t, e.d.POP3Addr, user, user+"-pw")
		ourUIDL := mustUIDL(t, hidden, m.uidValidity)
		i := slices.Index(uidls, ourUIDL)
		if i < 0 {
			t.Fatalf("Dovecot's UIDLs %q lack %q", uidls, ourUIDL)
		}
		uidls, sizes = slices.Delete(uidls, i, i+1), slices.Delete(sizes, i, i+1)
		for n, info := range infos {
			if info.UIDL != uidls[n] || info.Size != sizes[n] {
				t.Errorf("message %d: UIDL %q size %d; Dovecot POP3 says %q %d", n+1, info.UIDL, info.Size, uidls[n], sizes[n])
			}
			if info.Size != int64(len(corpus[n])) {
				t.Errorf("message %d: size %d, appended %d", n+1, info.Size, len(corpus[n]))
			}
		}

		for n, msg := range corpus {
			b, err := m.Retrieve(context.Background(), n+1)
			if err != nil {
				t.Fatalf("Retrieve(%d): %v", n+1, err)
			}
			if got := readAll(t, b); !bytes.Equal(got, msg) {
				t.Errorf("Retrieve(%d): %d octets differ from the %d appended", n+1, len(got), len(msg))
			}
			for _, lines := range []int{0, 1, 2, 3, 63, 64, 65, 1000, 99999999} {
				b, err := m.Top(context.Background(), n+1, lines)
				if err != nil {
					t.Fatalf("Top(%d, %d): %v", n+1, lines, err)
				}
				if got, want := readAll(t, b), topOf(msg, lines); !bytes.Equal(got, want) {
					t.Errorf("Top(%d, %d): got %d octets %.60q, want %d %.60q", n+1, lines, len(got), got, len(want), want)
				}
			}
		}
		for _, st := range e.d.Messages(t, user, "INBOX") {
			if slices.Contains(st.Flags, imap.FlagSeen) {
				t.Errorf("UID %d got \\Seen from RETR or TOP", st.UID)
			}
		}
	})

	t.Run("honor expunges only ours; foreign \\Deleted survives; new mail stays", func(t *testing.T) {
		checkGoroutines(t)
		user := e.user(t)
		var uids []imap.UID
		for i := 1; i <= 4; i++ {
			uids = append(uids, e.d.Append(t, user, "INBOX", testMessage(subject(i), 2)))
		}
		foreign := e.d.Append(t, user, "INBOX", testMessage(subject(5), 1), imap.FlagDeleted)
		m := e.login(t, e.backend(t), user)
		if len(m.Messages()) != 5 {
			t.Fatalf("listed %d", len(m.Messages()))
		}
		late := e.d.Append(t, user, "INBOX", testMessage("late", 1))
		if len(m.Messages()) != 5 {
			t.Errorf("mail arriving mid-session appeared")
		}
		b, err := m.Retrieve(context.Background(), 2)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, b)
		if err := m.Update(context.Background(), pop3server.Marks{Deleted: []int{1, 3}, Retrieved: []int{2}}); err != nil {
			t.Fatalf("Update: %v", err)
		}
		m.Close()
		got := e.d.Messages(t, user, "INBOX")
		if want := []imap.UID{uids[1], uids[3], foreign, late}; !slices.Equal(storedUIDs(got), want) {
			t.Errorf("left %v, want %v", storedUIDs(got), want)
		}
		for _, st := range got {
			if seen := slices.Contains(st.Flags, imap.FlagSeen); seen != (st.UID == uids[1]) {
				t.Errorf("UID %d: \\Seen %v", st.UID, seen)
			}
			if del := slices.Contains(st.Flags, imap.FlagDeleted); del != (st.UID == foreign) {
				t.Errorf("UID %d: \\Deleted %v", st.UID, del)
			}
		}
	})

	t.Run("leave and close apply nothing", func(t *testing.T) {
		checkGoroutines(t)
		user := e.user(t)
		e.d.Append(t, user, "INBOX", testMessage(subject(1), 1))
		e.d.Append(t, user, "INBOX", testMessage(subject(2), 1), imap.FlagDeleted)
		leave := e.backend(t, func(o *Options) { o.Policy = policy.Policy{Delete: policy.Leave, MarkSeen: false} })
		m := e.login(t, leave, user)
		if err := m.Update(context.Background(), pop3server.Marks{Deleted: []int{1, 2}}); err != nil {
			t.Fatal(err)
		}
		m.Close()
		m = e.login(t, e.backend(t), user) // honor, but no QUIT
		m.Close()
		if got := e.d.Messages(t, user, "INBOX"); len(got) != 2 {
			t.Errorf("%d messages left, want 2", len(got))
		}
	})

	t.Run("closing a body early", func(t *testing.T) {
		checkGoroutines(t)
		user := e.user(t)
		corpus := dovecotCorpus()
		big := corpus[len(corpus)-1]
		e.d.Append(t, user, "INBOX", big)
		m := e.login(t, e.backend(t), user)
		b, err := m.Retrieve(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		b.Close()
		if d := time.Since(start); d > time.Second {
			t.Errorf("Close mid-body took %v", d)
		}
		_, err = m.Top(context.Background(), 1, 0)
		wantCode(t, err, pop3server.ErrTemporary)
	})

	t.Run("expunged by another client mid-session", func(t *testing.T) {
		checkGoroutines(t)
		user := e.user(t)
		a := e.d.Append(t, user, "INBOX", testMessage(subject(1), 1))
		bUID := e.d.Append(t, user, "INBOX", testMessage(subject(2), 1))
		m := e.login(t, e.backend(t), user)
		e.d.Expunge(t, user, "INBOX", a)
		_, err := m.Retrieve(context.Background(), 1)
		wantCode(t, err, pop3server.ErrNoSuchMessage)
		_, err = m.Top(context.Background(), 1, 1)
		wantCode(t, err, pop3server.ErrNoSuchMessage)
		// The session goes on; message 2 is still message 2.
		b, err := m.Retrieve(context.Background(), 2)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, b); !bytes.Equal(got, testMessage(subject(2), 1)) {
			t.Errorf("message 2 is %q", got)
		}
		if err := m.Update(context.Background(), pop3server.Marks{Deleted: []int{1, 2}}); err != nil {
			t.Fatalf("Update: %v", err)
		}
		if got := e.d.Messages(t, user, "INBOX"); len(got) != 0 {
			t.Errorf("left %v (UID %d should be gone)", storedUIDs(got), bUID)
		}
	})

	t.Run("UIDVALIDITY changed: nothing applied", func(t *testing.T) {
		checkGoroutines(t)
		user := e.user(t)
		e.d.Append(t, user, "Work", testMessage(subject(1), 1))
		e.d.Append(t, user, "Work", testMessage(subject(2), 1))
		m := e.login(t, e.backend(t, func(o *Options) { o.Mailbox = "Work" }), user)
		old := m.uidValidity
		// Recreate the mailbox: same name, same UIDs, other messages.
		c := e.d.Client(t, user)
		if err := c.Delete("Work").Wait(); err != nil {
			t.Fatal(err)
		}
		c.Logout().Wait()
		n1 := e.d.Append(t, user, "Work", testMessage(subject(3), 1))
		e.d.Append(t, user, "Work", testMessage(subject(4), 1))
		if v := e.d.UIDValidity(t, user, "Work"); v == old {
			t.Skipf("Dovecot reused UIDVALIDITY %d", v)
		}
		err := m.Update(context.Background(), pop3server.Marks{Deleted: []int{1, 2}})
		wantCode(t, err, pop3server.ErrUpdateFailed)
		if !errors.Is(err, errUIDValidity) {
			t.Errorf("Update: %v, want the UIDVALIDITY check to catch it", err)
		}
		if got := e.d.Messages(t, user, "Work"); len(got) != 2 || got[0].UID != n1 {
			t.Errorf("recreated mailbox now holds %v", storedUIDs(got))
		}
	})

	t.Run("UIDVALIDITY changed in place: nothing applied", func(t *testing.T) {
		checkGoroutines(t)
		doveadm := testenv.RequireTool(t, "doveadm")
		user := e.user(t)
		e.d.Append(t, user, "INBOX", testMessage(subject(1), 1))
		m := e.login(t, e.backend(t), user)
		out, err := exec.Command(doveadm, "-c", filepath.Join(e.d.Dir, "dovecot.conf"),
			"mailbox", "update", "-u", user, "--uid-validity", strconv.Itoa(int(m.uidValidity+1000)), "INBOX").CombinedOutput()
		if err != nil {
			t.Fatalf("doveadm: %v\n%s", err, out)
		}
		// Dovecot may notice first and hang up ("IMAP session state is
		// inconsistent"); either way nothing is applied.
		err = m.Update(context.Background(), pop3server.Marks{Deleted: []int{1}})
		wantCode(t, err, pop3server.ErrUpdateFailed)
		t.Logf("Update: %v", err)
		if got := e.d.Messages(t, user, "INBOX"); len(got) != 1 {
			t.Errorf("%d messages left, want 1", len(got))
		}
	})

	t.Run("flag hides from the next session", func(t *testing.T) {
		checkGoroutines(t)
		user := e.user(t)
		e.d.Append(t, user, "INBOX", testMessage(subject(1), 1))
		keep := e.d.Append(t, user, "INBOX", testMessage(subject(2), 1))
		b := e.backend(t, func(o *Options) { o.Policy.Action = policy.Action{Kind: policy.Flag} })
		m := e.login(t, b, user)
		if err := m.Update(context.Background(), pop3server.Marks{Deleted: []int{1}}); err != nil {
			t.Fatal(err)
		}
		m.Close()
		got := e.d.Messages(t, user, "INBOX")
		if len(got) != 2 || !slices.Contains(got[0].Flags, imap.FlagSeen) || !slices.Contains(got[0].Flags, imap.Flag(policy.DeletedKeyword)) {
			t.Errorf("after flag: %+v", got)
		}
		m = e.login(t, b, user)
		if infos := m.Messages(); len(infos) != 1 || infos[0].UIDL != mustUIDL(t, keep, m.uidValidity) {
			t.Errorf("next session lists %v", infos)
		}
	})

	t.Run("move creates the mailbox", func(t *testing.T) {
		checkGoroutines(t)
		user := e.user(t)
		e.d.Append(t, user, "INBOX", testMessage(subject(1), 1))
		e.d.Append(t, user, "INBOX", testMessage(subject(2), 1))
		b := e.backend(t, func(o *Options) {
			o.Policy = policy.Policy{Delete: policy.OnDownload, Action: policy.Action{Kind: policy.Move, Mailbox: "Trash/POP3"}, MarkSeen: true}
		})
		m := e.login(t, b, user)
		body, err := m.Retrieve(context.Background(), 2)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, body)
		if err := m.Update(context.Background(), pop3server.Marks{Retrieved: []int{2}}); err != nil {
			t.Fatal(err)
		}
		m.Close()
		inbox := e.d.Messages(t, user, "INBOX")
		moved := e.d.Messages(t, user, "Trash/POP3")
		if len(inbox) != 1 || len(moved) != 1 || !bytes.Equal(moved[0].Body, testMessage(subject(2), 1)) ||
			!slices.Contains(moved[0].Flags, imap.FlagSeen) {
			t.Errorf("INBOX %+v, Trash/POP3 %+v", inbox, moved)
		}
	})

	t.Run("imaps and STARTTLS", func(t *testing.T) {
		checkGoroutines(t)
		user := e.user(t)
		e.d.Append(t, user, "INBOX", testMessage(subject(1), 1))
		cfg, err := e.d.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []*URL{{Scheme: SchemeIMAPS, Host: e.d.IMAPSAddr}, {Scheme: SchemeIMAP, Host: e.d.IMAPAddr}} {
			b := newBackend(t, u, func(o *Options) { o.TLSConfig = cfg })
			m := e.login(t, b, user)
			if len(m.Messages()) != 1 {
				t.Errorf("%s: listed %d", u, len(m.Messages()))
			}
			if _, ok := m.l.client.Caps()[imap.CapStartTLS]; ok {
				t.Errorf("%s: STARTTLS still offered after TLS", u)
			}
			m.Close()
			// Without the test CA, verification fails.
			_, err := newBackend(t, u).Login(context.Background(), testConn, user, user+"-pw")
			wantCode(t, err, pop3server.ErrTemporary)
		}
	})

	t.Run("ID reaches Dovecot's log", func(t *testing.T) {
		checkGoroutines(t)
		user := e.user(t)
		m := e.login(t, e.backend(t, func(o *Options) { o.SendID = true }), user)
		m.Close()
		// login_trusted_networks covers 127.0.0.1: Dovecot logs the
		// client's address instead of ours.
		deadline := time.Now().Add(2 * time.Minute)
		for !strings.Contains(e.d.Log(), "user=<"+user+">") || !strings.Contains(e.d.Log(), "rip=192.0.2.7") {
			if time.Now().After(deadline) {
				t.Fatalf("no rip=192.0.2.7 for %s in Dovecot's log", user)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func storedUIDs(l []testenv.StoredMessage) []imap.UID {
	var out []imap.UID
	for _, m := range l {
		out = append(out, m.UID)
	}
	return out
}

// dovecotPOP3 returns what Dovecot's own POP3 server says for UIDL and LIST.
func dovecotPOP3(t *testing.T, addr, user, pass string) (uidls []string, sizes []int64) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	line := func() string {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("POP3: %v", err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	cmd := func(s string) string {
		fmt.Fprintf(c, "%s\r\n", s)
		l := line()
		if !strings.HasPrefix(l, "+OK") {
			t.Fatalf("POP3 %s: %s", strings.Fields(s)[0], l)
		}
		return l
	}
	multi := func(s string) []string {
		cmd(s)
		var out []string
		for l := line(); l != "."; l = line() {
			out = append(out, l)
		}
		return out
	}
	line()
	cmd("USER " + user)
	cmd("PASS " + pass)
	for _, l := range multi("UIDL") {
		uidls = append(uidls, strings.Fields(l)[1])
	}
	for _, l := range multi("LIST") {
		var n int
		var size int64
		fmt.Sscan(l, &n, &size)
		sizes = append(sizes, size)
	}
	cmd("QUIT")
	return uidls, sizes
}
