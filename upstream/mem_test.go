package upstream

import (
	"bytes"
	"context"
	"io"
	"net"
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

func TestLogin(t *testing.T) {
	checkGoroutines(t)
	s := startMem(t, capsFull)
	b := newBackend(t, s.url())

	m := login(t, b)
	if len(m.Messages()) != 0 {
		t.Errorf("empty INBOX lists %d messages", len(m.Messages()))
	}
	if got := m.Expire(); got != "NEVER" {
		t.Errorf("Expire() = %q", got)
	}

	for _, user := range []string{testUser, "nobody"} {
		_, err := b.Login(context.Background(), testConn, user, "wrong")
		wantCode(t, err, pop3server.ErrAuthFailed)
	}
}

func TestLoginUpstreamDown(t *testing.T) {
	checkGoroutines(t)
	addr := testenv.RefusedAddr(t)
	b := newBackend(t, &URL{Scheme: SchemeInsecure, Host: addr})
	_, err := b.Login(context.Background(), testConn, testUser, testPass)
	wantCode(t, err, pop3server.ErrTemporary)
}

func TestLoginUpstreamSilent(t *testing.T) {
	checkGoroutines(t)
	// Accepts and never greets: the login timeout must give SYS/TEMP.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	b := newBackend(t, &URL{Scheme: SchemeInsecure, Host: ln.Addr().String()}, func(o *Options) {
		o.LoginTimeout = 300 * time.Millisecond
	})
	start := time.Now()
	_, err = b.Login(context.Background(), testConn, testUser, testPass)
	wantCode(t, err, pop3server.ErrTemporary)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("login took %v with a 300ms login timeout", d)
	}
}

func TestListing(t *testing.T) {
	checkGoroutines(t)
	s := startMem(t, capsFull)
	m1 := testMessage("one", 3)
	m2 := testMessage("two", 5)
	m3 := testMessage("three", 1)
	u1 := s.append(t, "INBOX", m1)
	s.append(t, "INBOX", testMessage("hidden", 1), imap.Flag(policy.DeletedKeyword))
	u2 := s.append(t, "INBOX", m2, imap.FlagSeen)
	u3 := s.append(t, "INBOX", m3, imap.FlagDeleted) // foreign \Deleted stays listed

	m := login(t, newBackend(t, s.url()))
	got := m.Messages()
	want := []pop3server.MessageInfo{
		{Size: int64(len(m1)), UIDL: mustUIDL(t, u1, m.uidValidity)},
		{Size: int64(len(m2)), UIDL: mustUIDL(t, u2, m.uidValidity)},
		{Size: int64(len(m3)), UIDL: mustUIDL(t, u3, m.uidValidity)},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Messages() = %v, want %v", got, want)
	}
	if want := "00000001" + "00000001"; got[0].UIDL != want {
		t.Errorf("first UIDL %q, want %q (imapmemserver: UID 1, UIDVALIDITY 1)", got[0].UIDL, want)
	}
	for i, body := range [][]byte{m1, m2, m3} {
		b, err := m.Retrieve(context.Background(), i+1)
		if err != nil {
			t.Fatalf("Retrieve(%d): %v", i+1, err)
		}
		if got := readAll(t, b); !bytes.Equal(got, body) {
			t.Errorf("Retrieve(%d) = %q, want %q", i+1, got, body)
		}
	}
	for _, n := range []int{0, 4, -1} {
		_, err := m.Retrieve(context.Background(), n)
		wantCode(t, err, pop3server.ErrNoSuchMessage)
		_, err = m.Top(context.Background(), n, 1)
		wantCode(t, err, pop3server.ErrNoSuchMessage)
	}
	// RETR used PEEK: nothing became \Seen.
	for _, st := range inspect(t, s.addr, "INBOX") {
		if st.UID == u1 && st.has(imap.FlagSeen) {
			t.Error("RETR marked the message \\Seen")
		}
	}
}

func mustUIDL(t *testing.T, uid imap.UID, uidValidity uint32) string {
	t.Helper()
	s, err := FormatUIDL(DefaultUIDLFormat, uint32(uid), uidValidity)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTop(t *testing.T) {
	checkGoroutines(t)
	s := startMem(t, capsFull)
	short := testMessage("short", 3)
	// Long enough for several growing TEXT chunks.
	var long bytes.Buffer
	long.WriteString("Subject: long\r\n\r\n")
	for i := 0; long.Len() < 3*maxChunk; i++ {
		long.WriteString(strings.Repeat("x", i%300) + "\r\n")
	}
	noBody := []byte("Subject: no body\r\n\r\n")
	// A text of exactly one chunk: the next chunk starts at its end.
	exact := append([]byte("Subject: exact\r\n\r\n"), bytes.Repeat([]byte(strings.Repeat("e", 62)+"\r\n"), minChunk/64)...)
	s.append(t, "INBOX", short)
	s.append(t, "INBOX", long.Bytes())
	s.append(t, "INBOX", noBody)
	s.append(t, "INBOX", exact)
	m := login(t, newBackend(t, s.url()))

	tests := []struct {
		n, lines int
		msg      []byte
	}{
		{1, 0, short}, {1, 1, short}, {1, 2, short}, {1, 3, short}, {1, 4, short}, {1, 99999999, short},
		{2, 0, long.Bytes()}, {2, 10, long.Bytes()}, {2, 5000, long.Bytes()}, {2, 20000, long.Bytes()},
		{2, 99999999, long.Bytes()},
		{3, 0, noBody}, {3, 5, noBody},
		{4, 63, exact}, {4, 64, exact}, {4, 65, exact}, {4, 200, exact},
	}
	for _, tt := range tests {
		b, err := m.Top(context.Background(), tt.n, tt.lines)
		if err != nil {
			t.Fatalf("Top(%d, %d): %v", tt.n, tt.lines, err)
		}
		got := readAll(t, b)
		if want := topOf(tt.msg, tt.lines); !bytes.Equal(got, want) {
			t.Errorf("Top(%d, %d): got %d octets, want %d", tt.n, tt.lines, len(got), len(want))
		}
	}
}

// topOf is what TOP n lines returns: the header, the blank line and lines
// lines of the body.
func topOf(msg []byte, lines int) []byte {
	end := bytes.Index(msg, []byte("\r\n\r\n")) + 4
	for ; lines > 0 && end < len(msg); lines-- {
		j := bytes.IndexByte(msg[end:], '\n')
		if j < 0 {
			return msg
		}
		end += j + 1
	}
	return msg[:end]
}

func TestBodyCloseEarly(t *testing.T) {
	checkGoroutines(t)
	s := startMem(t, capsFull)
	big := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrst\r\n"), 300000) // ~20 MB
	msg := append([]byte("Subject: big\r\n\r\n"), big...)
	s.append(t, "INBOX", msg)
	s.append(t, "INBOX", testMessage("small", 1))
	m := login(t, newBackend(t, s.url()))

	b, err := m.Retrieve(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(b, buf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close mid-body took %v", d)
	}
	_, err = m.Retrieve(context.Background(), 2)
	wantCode(t, err, pop3server.ErrTemporary)
	err = m.Update(context.Background(), pop3server.Marks{Deleted: []int{2}})
	wantCode(t, err, pop3server.ErrUpdateFailed)
	if got := len(inspect(t, s.addr, "INBOX")); got != 2 {
		t.Errorf("%d messages left, want 2", got)
	}
}

func TestCloseAppliesNothing(t *testing.T) {
	checkGoroutines(t)
	s := startMem(t, capsFull)
	s.append(t, "INBOX", testMessage("a", 1))
	s.append(t, "INBOX", testMessage("b", 1), imap.FlagDeleted)
	m := login(t, newBackend(t, s.url(), func(o *Options) { o.Policy.Delete = policy.OnDownload }))
	b, err := m.Retrieve(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, b)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	got := inspect(t, s.addr, "INBOX")
	if len(got) != 2 || got[0].has(imap.FlagSeen) {
		t.Errorf("after Close without Update: %+v", got)
	}
}

func TestUpdate(t *testing.T) {
	type setup struct {
		caps   imap.CapSet
		policy policy.Policy
		// foreign adds a \Deleted message the session does not touch.
		foreign bool
	}
	expunge := policy.Action{Kind: policy.Expunge}
	flag := policy.Action{Kind: policy.Flag}
	move := policy.Action{Kind: policy.Move, Mailbox: "Archive"}
	tests := []struct {
		name    string
		setup   setup
		wantErr bool
		// left are the subjects (message numbers) still in INBOX, moved
		// those in Archive, seen those with \Seen, hidden those with
		// $POP3Deleted.
		left, moved, seen, hidden []int
	}{
		{"honor expunge", setup{capsFull, policy.Policy{Delete: policy.Honor, Action: expunge, MarkSeen: true}, false},
			false, []int{2, 3, 4}, nil, []int{2}, nil},
		{"honor expunge foreign", setup{capsFull, policy.Policy{Delete: policy.Honor, Action: expunge, MarkSeen: true}, true},
			false, []int{2, 3, 4, 5}, nil, []int{2}, nil},
		{"leave", setup{capsFull, policy.Policy{Delete: policy.Leave, Action: expunge, MarkSeen: true}, false},
			false, []int{1, 2, 3, 4}, nil, []int{2}, nil},
		{"on-download", setup{capsFull, policy.Policy{Delete: policy.OnDownload, Action: expunge}, false},
			false, []int{3, 4}, nil, nil, nil},
		{"no UIDPLUS, no foreign", setup{capsRev1, policy.Policy{Delete: policy.Honor, Action: expunge}, false},
			false, []int{2, 3, 4}, nil, nil, nil},
		// A refused update leaves everything as it was, \Seen included.
		{"no UIDPLUS, foreign", setup{capsRev1, policy.Policy{Delete: policy.Honor, Action: expunge, MarkSeen: true}, true},
			true, []int{1, 2, 3, 4, 5}, nil, nil, nil},
		{"flag", setup{capsFull, policy.Policy{Delete: policy.Honor, Action: flag}, false},
			false, []int{1, 2, 3, 4}, nil, []int{1}, []int{1}},
		{"move", setup{capsFull, policy.Policy{Delete: policy.OnDownload, Action: move, MarkSeen: true}, false},
			false, []int{3, 4}, []int{1, 2}, []int{2}, nil},
		{"move without MOVE", setup{capsRev1, policy.Policy{Delete: policy.Honor, Action: move}, false},
			false, []int{2, 3, 4}, []int{1}, nil, nil},
		// Refused before the COPY: no copy that each retry would add again.
		{"move without MOVE, foreign", setup{capsRev1, policy.Policy{Delete: policy.Honor, Action: move, MarkSeen: true}, true},
			true, []int{1, 2, 3, 4, 5}, nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			s := startMem(t, tt.setup.caps)
			for i := 1; i <= 4; i++ {
				s.append(t, "INBOX", testMessage(subject(i), 1))
			}
			if tt.setup.foreign {
				s.append(t, "INBOX", testMessage(subject(5), 1), imap.FlagDeleted)
			}
			m := login(t, newBackend(t, s.url(), func(o *Options) { o.Policy = tt.setup.policy }))
			// Message 1 deleted, 2 retrieved in full.
			b, err := m.Retrieve(context.Background(), 2)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, b)
			err = m.Update(context.Background(), pop3server.Marks{Deleted: []int{1}, Retrieved: []int{2}})
			if tt.wantErr {
				wantCode(t, err, pop3server.ErrUpdateFailed)
			} else if err != nil {
				t.Fatalf("Update: %v", err)
			}
			m.Close()

			inbox := inspect(t, s.addr, "INBOX")
			if got := subjects(inbox); !slices.Equal(got, tt.left) {
				t.Errorf("INBOX holds %v, want %v", got, tt.left)
			}
			if tt.setup.foreign {
				for _, st := range inbox {
					if (subjectOf(st) == 5) != st.has(imap.FlagDeleted) {
						t.Errorf("message %d: \\Deleted is %v", subjectOf(st), st.has(imap.FlagDeleted))
					}
				}
			}
			var archive []stored
			if tt.moved != nil {
				archive = inspect(t, s.addr, "Archive")
			}
			if got := subjects(archive); !slices.Equal(got, tt.moved) {
				t.Errorf("Archive holds %v, want %v", got, tt.moved)
			}
			all := append(inbox, archive...)
			if got := subjectsWith(all, imap.FlagSeen); !slices.Equal(got, tt.seen) {
				t.Errorf("\\Seen on %v, want %v", got, tt.seen)
			}
			if got := subjectsWith(all, imap.Flag(policy.DeletedKeyword)); !slices.Equal(got, tt.hidden) {
				t.Errorf("$POP3Deleted on %v, want %v", got, tt.hidden)
			}
			if tt.hidden != nil {
				// The next session does not see the flagged message.
				m2 := login(t, newBackend(t, s.url()))
				if got, want := len(m2.Messages()), len(tt.left)-len(tt.hidden); got != want {
					t.Errorf("next session lists %d messages, want %d", got, want)
				}
			}
		})
	}
}

func subject(i int) string { return "msg" + string(rune('0'+i)) }

func subjectOf(s stored) int {
	i := bytes.Index(s.Body, []byte("Subject: msg"))
	if i < 0 {
		return 0
	}
	return int(s.Body[i+len("Subject: msg")] - '0')
}

func subjects(l []stored) []int {
	var out []int
	for _, s := range l {
		out = append(out, subjectOf(s))
	}
	slices.Sort(out)
	return out
}

func subjectsWith(l []stored, flag imap.Flag) []int {
	var out []stored
	for _, s := range l {
		if s.has(flag) {
			out = append(out, s)
		}
	}
	return subjects(out)
}

// recorder is a Metrics that remembers what it saw.
type recorder struct {
	mu       sync.Mutex
	commands map[string]int
	applied  map[string]int
}

func (r *recorder) ObserveCommand(name string, _ time.Duration, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commands[name]++
}

func (r *recorder) UpdateApplied(action string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied[action] += n
}

func TestResolverAndMetrics(t *testing.T) {
	checkGoroutines(t)
	s := startMem(t, capsFull)
	if err := s.user.Create("Other", nil); err != nil {
		t.Fatal(err)
	}
	s.append(t, "INBOX", testMessage("inbox", 1))
	s.append(t, "Other", testMessage("other1", 1))
	s.append(t, "Other", testMessage("other2", 1))

	mbox, up := "Other", "imap+insecure://"+s.addr
	flag := policy.Action{Kind: policy.Flag}
	rec := &recorder{commands: map[string]int{}, applied: map[string]int{}}
	b := newBackend(t, nil, func(o *Options) {
		o.Resolver = &policy.Resolver{
			Default: policy.Settings{Upstream: "imap+insecure://127.0.0.1:1", Mailbox: "INBOX", Policy: policy.Default},
			Users:   map[string]policy.Override{testUser: {Upstream: &up, Mailbox: &mbox, Action: &flag}},
		}
		o.Metrics = rec
	})
	m := login(t, b)
	if len(m.Messages()) != 2 {
		t.Fatalf("listed %d messages of Other, want 2", len(m.Messages()))
	}
	body, err := m.Retrieve(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, body)
	if err := m.Update(context.Background(), pop3server.Marks{Deleted: []int{2}, Retrieved: []int{1}}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	other := inspect(t, s.addr, "Other")
	if len(other) != 2 || !other[0].has(imap.FlagSeen) || !other[1].has(imap.Flag(policy.DeletedKeyword)) {
		t.Errorf("Other after update: %+v", other)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, name := range []string{"connect", "login", "select", "list", "fetch", "update", "logout"} {
		if rec.commands[name] == 0 {
			t.Errorf("no %q observed: %v", name, rec.commands)
		}
	}
	if rec.applied["seen"] != 1 || rec.applied["flag"] != 1 {
		t.Errorf("applied %v", rec.applied)
	}
}
