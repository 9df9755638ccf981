package uidlimport_test

// End-to-end tests of UIDL continuity (docs/migration.md) against real
// Dovecots and a real leave-on-server POP3 client (mpop, which keeps the
// UIDLs it has seen and downloads only new ones): a mailbox index rebuilt
// under the client, the user moved to a second Dovecot, and a migration
// from Dovecot's own POP3 server with another UIDL format. The bridge runs
// in this process (pop3server + upstream) with the UIDL map.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/uidlimport"
	"github.com/popbridge/popbridge/uidlmap"
	"github.com/popbridge/popbridge/upstream"
)

// testStore is the UIDL map on a real SQLite state store in a file, so
// that it can be closed (a store that went down) and opened again.
type testStore struct {
	uidlmap.Store
	s    store.Store
	path string
}

func newStore(t *testing.T) *testStore {
	t.Helper()
	st := &testStore{path: filepath.Join(t.TempDir(), "state.db")}
	st.open(t)
	t.Cleanup(func() { st.s.Close() })
	return st
}

func (st *testStore) open(t *testing.T) {
	t.Helper()
	s, err := store.Open(context.Background(), "sqlite:"+st.path, "")
	if err != nil {
		t.Fatal(err)
	}
	st.s, st.Store = s, uidlmap.OnStore(s)
}

// len counts the UIDLs remembered for the test user's INBOX.
func (st *testStore) len(t *testing.T) int {
	t.Helper()
	recs, err := st.UIDLMap(context.Background(), uidlmap.Key(testUser, "INBOX"))
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

// mail is one message of a test corpus: its name (for reports) and bytes.
type mail struct {
	name string
	data []byte
}

// corpus is n messages as a mailbox of a real user has them: most with a
// Message-ID, three without (a scanner's), three generated ones whose
// header fields and sizes are all the same (only the body differs), and
// two identical copies of one message (a mail delivered twice).
func corpus(n int) []mail {
	var out []mail
	date := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	for i := range 3 {
		out = append(out, mail{fmt.Sprintf("gen%d", i), []byte(fmt.Sprintf("Subject: cron\r\n\r\nrun %d ok\r\n", i))})
	}
	for i := range n - 8 {
		out = append(out, mail{fmt.Sprintf("m%d", i), message(
			fmt.Sprintf("<m%d@example.org>", i), date.Add(time.Duration(i)*time.Minute), fmt.Sprintf("Report %d", i))})
	}
	for i := range 3 {
		out = append(out, mail{fmt.Sprintf("scan%d", i), message("", date.Add(time.Duration(i)*time.Second), "Scanned document")})
	}
	dup := message("<dup@example.org>", date, "Delivered twice")
	out = append(out, mail{"dup-a", dup}, mail{"dup-b", dup})
	return out
}

func message(id string, date time.Time, subject string) []byte {
	var b bytes.Buffer
	b.WriteString("Return-Path: <sender@example.org>\r\n")
	b.WriteString("Received: from mx.example.org by imap.example.org; " + date.Format(time.RFC1123Z) + "\r\n")
	if id != "" {
		b.WriteString("Message-ID: " + id + "\r\n")
	}
	fmt.Fprintf(&b, "Date: %s\r\nFrom: sender@example.org\r\nTo: user@example.org\r\nSubject: %s\r\n\r\n", date.Format(time.RFC1123Z), subject)
	fmt.Fprintf(&b, "Body of %s.\r\n", subject)
	return b.Bytes()
}

// seed writes msgs as files into user's Maildir/cur, as a delivery agent
// would (with the S= size Dovecot reads instead of the file), fast
// enough for a thousand messages.
func seed(t *testing.T, d *testenv.Dovecot, user string, msgs []mail) {
	t.Helper()
	maildir := filepath.Join(d.Dir, "home", user, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(maildir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range msgs {
		name := fmt.Sprintf("%d.M%sP1.test,S=%d:2,", time.Now().UnixNano(), m.name, len(m.data))
		if err := os.WriteFile(filepath.Join(maildir, "cur", name), m.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := testenv.ChownUnprivileged(filepath.Join(d.Dir, "home", user)); err != nil {
		t.Fatal(err)
	}
}

// expungeFile removes the maildir file of the message called name.
func expungeFile(t *testing.T, d *testenv.Dovecot, user, name string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(d.Dir, "home", user, "Maildir", "cur", "*.M"+name+"P1.*"))
	if len(files) != 1 {
		t.Fatalf("message %s: files %v", name, files)
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
}

// serve runs a POP3 server for b on a loopback port, in this process.
func serve(t *testing.T, b *upstream.Backend) string {
	t.Helper()
	srv := pop3server.NewServer(b, pop3server.Options{
		PlaintextAuth: pop3server.PlaintextAlways,
		Limits:        pop3server.Limits{MaxConnsPerIP: -1, MaxSessions: 100}, Logger: zerolog.Nop(),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// backend is the bridge's upstream for d, remembering UIDLs in st (nil:
// derived UIDLs, as without a store).
func backend(t *testing.T, d *testenv.Dovecot, st uidlmap.Store, mod ...func(*upstream.Options)) *upstream.Backend {
	t.Helper()
	opts := upstream.Options{URL: &upstream.URL{Scheme: upstream.SchemeInsecure, Host: d.IMAPAddr}}
	if st != nil {
		opts.UIDLs = st
	}
	for _, f := range mod {
		f(&opts)
	}
	b, err := upstream.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mpop is a leave-on-server mpop account: it keeps every message on the
// server and remembers the UIDLs it has downloaded in its uidls file.
type mpop struct {
	bin, home, conf, maildir string
	user, pass               string
}

func newMpop(t *testing.T, user, pass string) *mpop {
	t.Helper()
	bin := testenv.RequireTool(t, "mpop")
	home := t.TempDir()
	m := &mpop{bin: bin, home: home, conf: filepath.Join(home, "mpoprc"), maildir: filepath.Join(home, "Maildir")}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(m.maildir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	m.user, m.pass = user, pass
	return m
}

// run points the account at the POP3 server addr and fetches; it returns
// the subjects of what it downloaded. mpop keys its uidls file by host and
// user, not port, so pointing it at another port of 127.0.0.1 is what a
// DNS change to a new server is to a real client.
func (m *mpop) run(t *testing.T, addr string) []string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(`defaults
tls off
auth user
keep on
only_new on
received_header off

account default
host %s
port %s
user %s
passwordeval echo '%s'
uidls_file %s
delivery maildir %s
`, host, port, m.user, m.pass, filepath.Join(m.home, "uidls"), m.maildir)
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	before := m.delivered(t)
	cmd := exec.Command(m.bin, "--file="+m.conf, "--quiet")
	cmd.Env = append(os.Environ(), "HOME="+m.home)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mpop: %v\n%s", err, out)
	}
	var got []string
	for f, subject := range m.delivered(t) {
		if _, old := before[f]; !old {
			got = append(got, subject)
		}
	}
	slices.Sort(got)
	return got
}

// delivered maps each delivered file to its Subject.
func (m *mpop) delivered(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(m.maildir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(m.maildir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			_, rest, _ := strings.Cut(string(data), "Subject: ")
			subject, _, _ := strings.Cut(rest, "\n")
			out[sub+"/"+e.Name()] = strings.TrimSpace(subject)
		}
	}
	return out
}

func subjectsOf(msgs []mail, names ...string) []string {
	var out []string
	for _, n := range names {
		for _, m := range msgs {
			if m.name == n {
				_, rest, _ := strings.Cut(string(m.data), "Subject: ")
				subject, _, _ := strings.Cut(rest, "\r\n")
				out = append(out, subject)
			}
		}
	}
	slices.Sort(out)
	return out
}

const testUser, testPass = "alice", "alice-pw"

// TestDovecotRebuildAndMove is the incident docs/migration.md is about: a
// leave-on-server client has downloaded a 1,000-message mailbox; the
// mailbox's index is rebuilt (new UIDVALIDITY, new UIDs) while one message
// is expunged and one arrives; then the user is moved to another Dovecot
// with the same messages. Each time the client downloads only the new
// message and the two identical copies (whose UIDLs cannot be told apart:
// a duplicate download, never a merged or hidden message).
func TestDovecotRebuildAndMove(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: testUser, Password: testPass}}})
	msgs := corpus(1000)
	seed(t, d, testUser, msgs)
	st := newStore(t)
	addr := serve(t, backend(t, d, st))
	plain := serve(t, backend(t, d, nil))
	client := newMpop(t, testUser, testPass)

	if got := client.run(t, addr); len(got) != len(msgs) {
		t.Fatalf("first run downloaded %d messages, want %d", len(got), len(msgs))
	}
	if got := client.run(t, addr); len(got) != 0 {
		t.Fatalf("second run downloaded %v, want nothing", got)
	}
	// With an empty store the UIDLs were exactly the derived ones: the
	// same client finds nothing new on a bridge without a store.
	if got := client.run(t, plain); len(got) != 0 {
		t.Fatalf("bridge without a store: downloaded %d, want nothing", len(got))
	}
	if st.len(t) != len(msgs) {
		t.Fatalf("store has %d UIDLs, want %d", st.len(t), len(msgs))
	}

	// The index is rebuilt; around it m7 is expunged and "late" arrives.
	late := mail{"late", message("<late@example.org>", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "Arrived late")}
	expungeFile(t, d, testUser, "m7")
	d.RebuildIndex(t, testUser)
	seed(t, d, testUser, []mail{late})
	want := subjectsOf(append(msgs, late), "late", "dup-a", "dup-b")
	if got := client.run(t, addr); !slices.Equal(got, want) {
		t.Fatalf("after the rebuild downloaded %d: %v, want %v", len(got), head(got), want)
	}
	if got := client.run(t, addr); len(got) != 0 {
		t.Fatalf("run after the rebuild downloaded %v, want nothing", head(got))
	}

	// The user moves to a second Dovecot with the same messages (copied
	// as files: it numbers them afresh under its own UIDVALIDITY). The
	// same store serves it: the map's key has no server in it.
	d2 := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: testUser, Password: testPass}}})
	var now []mail
	for _, m := range append(msgs, late) {
		if m.name != "m7" {
			now = append(now, m)
		}
	}
	seed(t, d2, testUser, now)
	addr2 := serve(t, backend(t, d2, st))
	want = subjectsOf(now, "dup-a", "dup-b")
	if got := client.run(t, addr2); !slices.Equal(got, want) {
		t.Fatalf("after the move downloaded %d: %v, want %v", len(got), head(got), want)
	}
	if got := client.run(t, addr2); len(got) != 0 {
		t.Fatalf("run after the move downloaded %v, want nothing", head(got))
	}
	// Nothing lost: the client holds every message of the mailbox.
	have := map[string]bool{}
	for _, s := range client.delivered(t) {
		have[s] = true
	}
	for _, m := range now {
		if s := subjectsOf([]mail{m}, m.name); !have[s[0]] {
			t.Errorf("message %s (%q) never delivered", m.name, s[0])
		}
	}
}

// head is the start of a long list, for messages.
func head(s []string) []string {
	if len(s) > 5 {
		return append(slices.Clone(s[:5]), fmt.Sprintf("... %d more", len(s)-5))
	}
	return s
}

// TestDovecotMigration migrates a user from Dovecot's own POP3 server,
// whose pop3_uidl_format (%g, the maildir file's GUID) popbridge cannot
// derive, as docs/migration.md describes: a leave-on-server client syncs
// with the old server, `uidl import` copies its UIDLs (a dry run first,
// which stores nothing; a second run, which skips the finished mailbox),
// and the client, pointed at popbridge, downloads only the two identical
// copies (ambiguous: never imported). Then the store goes down: a login
// that would need it answers -ERR [SYS/TEMP].
func TestDovecotMigration(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{
		POP3:        true,
		Users:       []testenv.User{{Name: testUser, Password: testPass}},
		ExtraConfig: "pop3_uidl_format = %g",
	})
	msgs := corpus(100)
	seed(t, d, testUser, msgs)
	client := newMpop(t, testUser, testPass)
	if got := client.run(t, d.POP3Addr); len(got) != len(msgs) {
		t.Fatalf("sync with the old server downloaded %d, want %d", len(got), len(msgs))
	}

	// The old server's UIDLs are not popbridge's derived ones.
	old := pop3client.Dial(t, d.POP3Addr, pop3client.Options{})
	old.Expect("+OK*")
	old.Send("USER " + testUser)
	old.Expect("+OK*")
	old.Send("PASS " + testPass)
	old.Expect("+OK*")
	old.Send("UIDL 1")
	line := old.MustLine("+OK 1 ")
	old.Close()
	derived, err := upstream.FormatUIDL(upstream.DefaultUIDLFormat, 1, d.UIDValidity(t, testUser, "INBOX"))
	if err != nil || strings.TrimPrefix(line, "+OK 1 ") == derived {
		t.Fatalf("old server's UIDL %q is the derived %q (%v): the test would prove nothing", line, derived, err)
	}

	st := newStore(t)
	// STLS, required, verified against Dovecot's certificate.
	from, err := uidlimport.ParseServer("pop3://" + d.POP3Addr)
	if err != nil {
		t.Fatal(err)
	}
	if from.TLS, err = d.TLSConfig(); err != nil {
		t.Fatal(err)
	}
	accounts := []uidlimport.Account{{User: testUser, Password: testPass, Line: 1}}
	opts := uidlimport.Options{From: from, IMAP: backend(t, d, nil), Store: st, DryRun: true}
	reports, err := uidlimport.Run(context.Background(), opts, accounts)
	if err != nil {
		t.Fatal(err)
	}
	want := uidlimport.Report{User: testUser, Mailbox: "INBOX", Status: uidlimport.StatusDryRun, POP3: 100, IMAP: 100, Matched: 98, Ambiguous: 2}
	if reports[0] != want || st.len(t) != 0 {
		t.Fatalf("dry run: %+v (store %d UIDLs), want %+v and nothing stored", reports[0], st.len(t), want)
	}

	// Without Dovecot's CA the certificate is refused: nothing read.
	untrusted := *from
	untrusted.TLS = nil
	bad := opts
	bad.From = &untrusted
	reports, _ = uidlimport.Run(context.Background(), bad, accounts)
	if reports[0].Status != uidlimport.StatusFailed || !strings.Contains(reports[0].Error, "certificate") {
		t.Fatalf("unverified old server: %+v, want a certificate failure", reports[0])
	}

	// A test login through popbridge with the store before the import
	// (the admin checking the setup) records today's derived UIDLs; the
	// import replaces those of the messages it matches.
	tried, err := backend(t, d, st).Login(context.Background(), pop3server.ConnInfo{SessionID: "try"}, testUser, testPass)
	if err != nil {
		t.Fatal(err)
	}
	tried.Close()
	if st.len(t) != 100 {
		t.Fatalf("the test login recorded %d UIDLs, want 100", st.len(t))
	}

	opts.DryRun = false
	reports, _ = uidlimport.Run(context.Background(), opts, accounts)
	want.Status, want.Replaced = uidlimport.StatusImported, 98
	// 100 of the test login (98 of them parked), 98 imported, the marker.
	if reports[0] != want || st.len(t) != 199 {
		t.Fatalf("import: %+v (store %d UIDLs), want %+v", reports[0], st.len(t), want)
	}
	reports, _ = uidlimport.Run(context.Background(), opts, accounts)
	if reports[0].Status != uidlimport.StatusSkipped {
		t.Fatalf("second run: %+v, want the mailbox skipped", reports[0])
	}

	// More mailboxes than the concurrency, one with a wrong password:
	// every report in file order, the bad one failed without the
	// password, the finished one skipped.
	var more []uidlimport.Account
	for i := range 4 {
		u := testenv.User{Name: fmt.Sprintf("user%d", i), Password: fmt.Sprintf("secret-%d", i)}
		if err := d.AddUser(u); err != nil {
			t.Fatal(err)
		}
		seed(t, d, u.Name, corpus(10))
		more = append(more, uidlimport.Account{User: u.Name, Password: u.Password})
	}
	more[2].Password = "wrong-password"
	opts.Concurrency = 2
	reports, err = uidlimport.Run(context.Background(), opts, append(accounts, more...))
	if err != nil || len(reports) != 5 {
		t.Fatalf("%d reports, %v", len(reports), err)
	}
	for i, r := range reports {
		want := uidlimport.StatusImported
		switch i {
		case 0:
			want = uidlimport.StatusSkipped
		case 3:
			want = uidlimport.StatusFailed
		}
		if r.Status != want || (i > 0 && r.User != more[i-1].User) {
			t.Errorf("report %d: %+v, want %s", i, r, want)
		}
		if want == uidlimport.StatusImported && r.Matched != 8 {
			t.Errorf("report %d: %+v, want 8 matched", i, r)
		}
		if strings.Contains(r.Error, "wrong-password") || (want == uidlimport.StatusFailed && r.Error == "") {
			t.Errorf("report %d error %q", i, r.Error)
		}
	}

	addr := serve(t, backend(t, d, st))
	if got, want := client.run(t, addr), subjectsOf(msgs, "dup-a", "dup-b"); !slices.Equal(got, want) {
		t.Fatalf("through popbridge after the import downloaded %d: %v, want only %v", len(got), head(got), want)
	}
	if got := client.run(t, addr); len(got) != 0 {
		t.Fatalf("second run through popbridge downloaded %v", head(got))
	}

	// New mail needs the store; while it is down (closed) the login
	// fails [SYS/TEMP] instead of showing UIDLs that might differ.
	if err := st.s.Close(); err != nil {
		t.Fatal(err)
	}
	seed(t, d, testUser, []mail{{"new", message("<new@example.org>", time.Now(), "New mail")}})
	c := pop3client.Dial(t, addr, pop3client.Options{})
	c.Expect("+OK*")
	c.Send("USER " + testUser)
	c.Expect("+OK*")
	c.Send("PASS " + testPass)
	c.Expect("-ERR [SYS/TEMP]*")
	c.Close()
	st.open(t)
	addr = serve(t, backend(t, d, st))
	if got := client.run(t, addr); !slices.Equal(got, []string{"New mail"}) {
		t.Fatalf("with the store back downloaded %v, want the new mail", head(got))
	}
}
