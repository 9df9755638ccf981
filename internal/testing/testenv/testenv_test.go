package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func TestLookTool(t *testing.T) {
	path := RequireTool(t, "sh")
	if !filepath.IsAbs(path) {
		t.Errorf("RequireTool(sh) = %q, want an absolute path", path)
	}
	if _, err := LookTool("popbridge-no-such-tool"); err == nil {
		t.Error("LookTool found a tool that does not exist")
	}
}

func TestUnprivilegedCommand(t *testing.T) {
	uid, _, name, ok := UnprivilegedUser()
	if !ok {
		t.Fatal("UnprivilegedUser: not found")
	}
	if uid == 0 {
		t.Fatalf("UnprivilegedUser = root (%s)", name)
	}
	dir := WritableTempDir(t)
	file := filepath.Join(dir, "f")
	out, err := CommandAsUnprivileged(context.Background(), "sh", "-c", `id -u; echo hi >"$0"`, file).CombinedOutput()
	if err != nil {
		t.Fatalf("as %s: %v\n%s", name, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(uid) {
		t.Errorf("id -u = %s, want %d", got, uid)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "hi\n" {
		t.Errorf("file written as %s: %q, %v", name, b, err)
	}
}

func testMessage(i int) []byte {
	return fmt.Appendf(nil, "From: a@example.org\r\nTo: b@example.org\r\nSubject: test %d\r\n"+
		"Message-ID: <%d@example.org>\r\n\r\nbody %d\r\n.\r\n..dot line\r\nno final newline", i, i, i)
}

func TestDovecot(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, DovecotOptions{
		Users: []User{{"alice", "alice-pw"}, {"bob@example.org", "bob pw"}},
		POP3:  true,
	})
	if d.POP3Addr == "" || d.IMAPAddr == "" || d.IMAPSAddr == "" {
		t.Fatalf("addresses: %+v", d)
	}

	// A session that keeps INBOX selected while others change it.
	c := d.Client(t, "alice")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	var uids []imap.UID
	for i := range 3 {
		uids = append(uids, d.Append(t, "alice", "INBOX", testMessage(i)))
	}
	if !slices.IsSorted(uids) || uids[0] == 0 {
		t.Fatalf("UIDs %v", uids)
	}
	d.SetFlags(t, "alice", "INBOX", uids[1], imap.FlagSeen, "$POP3Deleted")

	msgs := d.Messages(t, "alice", "INBOX")
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	for i, m := range msgs {
		want := testMessage(i)
		if m.UID != uids[i] || !bytes.Equal(m.Body, want) || m.Size != int64(len(want)) {
			t.Errorf("message %d: UID %d size %d body %q; want UID %d size %d body %q",
				i, m.UID, m.Size, m.Body, uids[i], len(want), want)
		}
	}
	if !slices.Contains(msgs[1].Flags, imap.FlagSeen) || !slices.Contains(msgs[1].Flags, "$POP3Deleted") {
		t.Errorf("flags of message 1: %v", msgs[1].Flags)
	}
	if slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("Messages set \\Seen: %v", msgs[0].Flags)
	}

	v := d.UIDValidity(t, "alice", "INBOX")
	if v == 0 || d.UIDValidity(t, "alice", "INBOX") != v {
		t.Errorf("UIDVALIDITY %d unstable or zero", v)
	}

	d.Expunge(t, "alice", "INBOX", uids[0])
	if got := d.Messages(t, "alice", "INBOX"); len(got) != 2 || got[0].UID != uids[1] {
		t.Errorf("after expunge: %+v", got)
	}
	// The selected session sees the other client's expunge.
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 2 {
		t.Errorf("selected session sees %d messages, want 2", n)
	}

	// Another mailbox, created on demand, and another user.
	if uid := d.Append(t, "bob@example.org", "Archive/2024", testMessage(7), imap.FlagFlagged); uid == 0 {
		t.Error("no UID")
	}
	if got := d.Messages(t, "bob@example.org", "Archive/2024"); len(got) != 1 || !slices.Contains(got[0].Flags, imap.FlagFlagged) {
		t.Errorf("bob's Archive/2024: %+v", got)
	}
	if got := d.Messages(t, "bob@example.org", "INBOX"); len(got) != 0 {
		t.Errorf("bob's INBOX: %+v", got)
	}

	t.Run("AddUser", func(t *testing.T) {
		if err := d.AddUser(User{"carol", "carol-pw"}); err != nil {
			t.Fatal(err)
		}
		d.Append(t, "carol", "INBOX", testMessage(1))
	})
	t.Run("WrongPassword", func(t *testing.T) {
		cl, err := imapclient.DialInsecure(d.IMAPAddr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Login("alice", "wrong").Wait(); err == nil {
			t.Error("login with a wrong password succeeded")
		}
	})
	t.Run("TLS", func(t *testing.T) {
		cfg, err := d.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		for name, dial := range map[string]func() (*imapclient.Client, error){
			"imaps": func() (*imapclient.Client, error) {
				return imapclient.DialTLS(d.IMAPSAddr, &imapclient.Options{TLSConfig: cfg})
			},
			"starttls": func() (*imapclient.Client, error) {
				return imapclient.DialStartTLS(d.IMAPAddr, &imapclient.Options{TLSConfig: cfg})
			},
		} {
			cl, err := dial()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := cl.Login("alice", "alice-pw").Wait(); err != nil {
				t.Errorf("%s login: %v", name, err)
			}
			_ = cl.Close()
		}
	})
	t.Run("POP3", func(t *testing.T) {
		lines := pop3Dialog(t, d.POP3Addr, "USER alice", "PASS alice-pw", "STAT", "UIDL 1", "QUIT")
		// Dovecot's default pop3_uidl_format %08Xu%08Xv, whose X is
		// lower-case hex in Dovecot 2.3.
		want := fmt.Sprintf("+OK 1 %08x%08x", uint32(uids[1]), v)
		if !strings.HasPrefix(lines[3], "+OK 2 ") || lines[4] != want {
			t.Errorf("POP3 dialog %q, want STAT +OK 2 and %q", lines, want)
		}
	})
	t.Run("OriginatingIP", func(t *testing.T) {
		// login_trusted_networks lets a proxy pass the client's address.
		imapDialog(t, d.IMAPAddr, `a ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "4242")`,
			"b LOGIN alice alice-pw", "c LOGOUT")
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(d.Log(), "rip=192.0.2.7") {
			if time.Now().After(deadline) {
				t.Fatalf("no rip=192.0.2.7 in the log:\n%s", d.logTail(10))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// pop3Dialog sends each command after reading one reply line and returns
// the reply lines, greeting first.
func pop3Dialog(t *testing.T, addr string, cmds ...string) []string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	var lines []string
	for i := 0; ; i++ {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", lines, err)
		}
		lines = append(lines, strings.TrimRight(line, "\r\n"))
		if i == len(cmds) {
			return lines
		}
		fmt.Fprintf(conn, "%s\r\n", cmds[i])
	}
}

// imapDialog sends the tagged commands one by one, waiting for each tagged
// reply.
func imapDialog(t *testing.T, addr string, cmds ...string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range cmds {
		fmt.Fprintf(conn, "%s\r\n", cmd)
		tag, _, _ := strings.Cut(cmd, " ")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			if strings.HasPrefix(line, tag+" ") {
				if !strings.HasPrefix(line, tag+" OK") {
					t.Fatalf("%s: %s", cmd, line)
				}
				break
			}
		}
	}
}

// TestDovecotConcurrentSessions holds 250 IMAP sessions of one user open at
// once, as popbridge's connection pool and the benchmarks do.
func TestDovecotConcurrentSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	t.Parallel()
	d := StartDovecot(t, DovecotOptions{Users: []User{{"alice", "pw"}}})
	const n = 250
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		clients []*imapclient.Client
		errs    []error
	)
	for range n {
		wg.Go(func() {
			c, err := d.Login("alice")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			clients = append(clients, c)
		})
	}
	wg.Wait()
	for _, c := range clients {
		if err := c.Noop().Wait(); err != nil {
			errs = append(errs, err)
		}
		_ = c.Close()
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d sessions failed, first: %v", len(errs), n, errs[0])
	}
}

func TestDovecotStopRemovesDir(t *testing.T) {
	RequireTool(t, "dovecot")
	t.Parallel()
	d, err := StartDovecotProcess(DovecotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", d.Dir, err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := net.DialTimeout("tcp", d.IMAPAddr, time.Second); err == nil {
		t.Errorf("%s still answers after Stop", d.IMAPAddr)
	}
}

// TestFreePortsOutsideEphemeralRange: Dovecot's ports are picked where no
// outgoing connection can take them before Dovecot binds them.
func TestFreePortsOutsideEphemeralRange(t *testing.T) {
	low, high := portRange()
	ports, err := freePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p < low || p > high || seen[p] {
			t.Fatalf("port %d: want distinct ports in %d-%d", p, low, high)
		}
		seen[p] = true
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var start, end int
		if _, err := fmt.Sscan(string(b), &start, &end); err == nil && high >= start && low <= end {
			t.Fatalf("range %d-%d overlaps the ephemeral range %d-%d", low, high, start, end)
		}
	}
}

// TestForeignGreeting: a port taken by another server before Dovecot bound
// it shows as that server's greeting, which a start must not accept as
// its own Dovecot (the CI failure: a test logged in to a stranger).
func TestForeignGreeting(t *testing.T) {
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
			c.Write([]byte("* OK [CAPABILITY IMAP4rev1] popbridge-test-dovecot-someoneelse\r\n"))
			c.Close()
		}
	}()
	deadline := time.Now().Add(startTimeout)
	err = greets(ln.Addr().String(), "* OK", "popbridge-test-dovecot-ours", deadline)
	if !errors.Is(err, errForeignGreeting) || !portTrouble(err, "") {
		t.Fatalf("greets: %v, want a foreign greeting, which a start retries", err)
	}
	if err := greets(ln.Addr().String(), "* OK", "popbridge-test-dovecot-someoneelse", deadline); err != nil {
		t.Fatalf("greets with the right greeting: %v", err)
	}
	if !portTrouble(errors.New("exited"), "master: Fatal: Failed to start listeners") {
		t.Fatal("a bind failure in the log is not retried")
	}
}

// TestRefusedAddr: connections are refused, and no server can take the
// port while the test runs.
func TestRefusedAddr(t *testing.T) {
	addr := RefusedAddr(t)
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s: connected, want refused", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v, want connection refused", addr, err)
		}
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("a server could listen on %s", addr)
	}
}
