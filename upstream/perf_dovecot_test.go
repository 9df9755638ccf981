package upstream

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/uidlmap"
)

// These benchmarks profile the hot paths of popbridge's users (docs/design.md) against a real
// Dovecot, with popbridge in this process:
//
//	go test ./upstream -run '^$' -bench DovecotPoll -cpuprofile cpu.out
//	go test ./upstream -run '^$' -bench DovecotIdle -benchtime 1x
//
// They report, never assert: the test suite has no timed assertions.

// perfDovecotConfig lets one Dovecot process serve many sessions, as a
// tuned production Dovecot (and bench/) does: logins then measure the
// bridge, not Dovecot's fork.
const perfDovecotConfig = `
service imap {
  client_limit = 32
  service_count = 0
}
`

// seedMaildir writes n messages of about size octets (CRLF) into user's
// INBOX, named as Dovecot's delivery names them (S= and W= sizes), so
// that Dovecot lists them without reading a file, and selects it once so
// that Dovecot assigns the UIDs and builds its index.
func seedMaildir(tb testing.TB, d *testenv.Dovecot, user string, n, size int) {
	tb.Helper()
	home := filepath.Join(d.Dir, "home", user)
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(home, "Maildir", sub), 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range n {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: a@example.com\r\nTo: %s@example.com\r\nSubject: message %d\r\n\r\n", user, i+1)
		for b.Len() < size {
			b.WriteString("the quick brown fox jumps over the lazy dog 0123456789\r\n")
		}
		name := fmt.Sprintf("%d.M%06dP1.perf,S=%d,W=%d:2,S", 1_000_000_000+i, i, b.Len(), b.Len())
		if err := os.WriteFile(filepath.Join(home, "Maildir", "cur", name), b.Bytes(), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	if err := testenv.ChownUnprivileged(home); err != nil {
		tb.Fatal(err)
	}
	// Dovecot rescans a maildir whose directory changed within the last
	// second or so at every SELECT (90 ms for 50,000 files): measure the
	// mailbox as it is once delivery has settled.
	time.Sleep(2 * time.Second)
	c, err := d.Login(user)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || int(sel.NumMessages) != n {
		tb.Fatalf("seeded %d messages, SELECT: %v, %v", n, sel, err)
	}
	_ = c.Logout().Wait()
}

// perfBridge serves POP3 in this process for Dovecot, with or without
// the listing cache.
func perfBridge(tb testing.TB, d *testenv.Dovecot, cached bool, mod ...func(*Options)) string {
	tb.Helper()
	addr, _ := perfBridgeBackend(tb, d, cached, mod...)
	return addr
}

// perfBridgeBackend is perfBridge, also returning the Backend. Sessions
// release their upstream client after the default ReleaseAfter.
func perfBridgeBackend(tb testing.TB, d *testenv.Dovecot, cached bool, mod ...func(*Options)) (string, *Backend) {
	tb.Helper()
	opts := Options{URL: &URL{Scheme: SchemeInsecure, Host: d.IMAPAddr}, Policy: policy.Default}
	for _, f := range mod {
		f(&opts)
	}
	if os.Getenv("POPBRIDGE_PERF_DEBUG") != "" {
		opts.Logger = zerolog.New(os.Stderr).Level(zerolog.DebugLevel)
	}
	if cached {
		l, err := cache.NewListings(1000)
		if err != nil {
			tb.Fatal(err)
		}
		opts.Cache = l
	}
	b, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	srv := pop3server.NewServer(b, pop3server.Options{
		PlaintextAuth: pop3server.PlaintextAlways,
		Limits: pop3server.Limits{
			MaxConnsPerIP:  -1,
			MaxUserIPConns: 100000,
			MaxSessions:    100000,
		},
		Logger: zerolog.Nop(),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), b
}

// popSession is a minimal POP3 client for the benchmarks.
type popSession struct {
	c net.Conn
	r *bufio.Reader
}

func dialPop(tb testing.TB, addr string) *popSession {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	p := &popSession{c: c, r: bufio.NewReaderSize(c, 512)}
	p.status(tb)
	return p
}

func (p *popSession) status(tb testing.TB) string {
	tb.Helper()
	line, err := p.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "+OK") {
		tb.Fatalf("POP3: %q, %v", line, err)
	}
	return line
}

func (p *popSession) cmd(tb testing.TB, cmd string) string {
	tb.Helper()
	if _, err := fmt.Fprintf(p.c, "%s\r\n", cmd); err != nil {
		tb.Fatal(err)
	}
	return p.status(tb)
}

// multi sends cmd and returns the number of lines up to the dot.
func (p *popSession) multi(tb testing.TB, cmd string) int {
	tb.Helper()
	p.cmd(tb, cmd)
	for n := 0; ; n++ {
		line, err := p.r.ReadSlice('\n')
		if err != nil {
			tb.Fatal(err)
		}
		if string(line) == ".\r\n" {
			return n
		}
	}
}

func (p *popSession) login(tb testing.TB, user string) {
	tb.Helper()
	p.cmd(tb, "USER "+user)
	p.cmd(tb, "PASS "+user+"-pw")
}

// poll is what a device does every minute: log in, STAT, UIDL, QUIT.
func poll(tb testing.TB, addr, user string, want int) {
	tb.Helper()
	p := dialPop(tb, addr)
	defer p.c.Close()
	p.login(tb, user)
	if st := p.cmd(tb, "STAT"); !strings.HasPrefix(st, "+OK "+strconv.Itoa(want)+" ") {
		tb.Fatalf("STAT: %q, want %d messages", st, want)
	}
	if n := p.multi(tb, "UIDL"); n != want {
		tb.Fatalf("UIDL listed %d, want %d", n, want)
	}
	p.cmd(tb, "QUIT")
}

func BenchmarkDovecotPoll(b *testing.B) {
	const n = 50_000
	d := testenv.StartDovecot(b, testenv.DovecotOptions{ExtraConfig: perfDovecotConfig})
	user := perfUser(b, d)
	seedMaildir(b, d, user, n, 2<<10)
	for _, cached := range []bool{true, false} {
		name := "cache"
		if !cached {
			name = "nocache"
		}
		b.Run(fmt.Sprintf("50k/%s", name), func(b *testing.B) {
			addr := perfBridge(b, d, cached)
			poll(b, addr, user, n) // warm Dovecot's index and our cache
			for b.Loop() {
				poll(b, addr, user, n)
			}
		})
	}
	// With the UIDL map (docs/migration.md): the first poll records every
	// message with its fingerprint (reported as first-poll-s); the steady
	// state must cost what "50k/cache" costs.
	b.Run("50k/cache+uidlmap", func(b *testing.B) {
		addr := perfBridge(b, d, true, func(o *Options) { o.UIDLs = &memUIDLs{} })
		start := time.Now()
		poll(b, addr, user, n)
		first := time.Since(start)
		for b.Loop() {
			poll(b, addr, user, n)
		}
		// After the loop: b.Loop's timer reset drops earlier metrics.
		b.ReportMetric(first.Seconds(), "first-poll-s")
	})
}

// BenchmarkDovecotPollNewMail is a poll that finds one new message in a
// 50,000-message mailbox, with the listing cache, without and with the
// UIDL map on a SQLite store (docs/migration.md): the map costs one read
// of the mailbox's records, a header fetch of the new message and a
// write. The append itself is not timed.
func BenchmarkDovecotPollNewMail(b *testing.B) {
	const n = 50_000
	d := testenv.StartDovecot(b, testenv.DovecotOptions{ExtraConfig: perfDovecotConfig})
	user := perfUser(b, d)
	seedMaildir(b, d, user, n, 2<<10)
	total := n
	for _, withMap := range []bool{false, true} {
		name := "cache"
		var mod []func(*Options)
		if withMap {
			name = "cache+uidlmap-sqlite"
			st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(b.TempDir(), "state.db"), "")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			mod = append(mod, func(o *Options) { o.UIDLs = uidlmap.OnStore(st) })
		}
		b.Run("50k/"+name, func(b *testing.B) {
			addr := perfBridge(b, d, true, mod...)
			poll(b, addr, user, total) // the first poll records everything
			for b.Loop() {
				b.StopTimer()
				d.Append(b, user, "INBOX", []byte(fmt.Sprintf("Message-ID: <new%d@example.org>\r\nSubject: new\r\n\r\nnew\r\n", total)))
				total++
				b.StartTimer()
				poll(b, addr, user, total)
			}
		})
	}
}

// BenchmarkDovecotIdle holds sessions logged in and idle (after STAT) and
// reports popbridge's memory per session: heap and stacks from
// runtime.MemStats after a GC, and the growth of this process's VmRSS.
// The test's own client connections are counted too (a net.Conn and a
// 512-octet reader each), so the figures are an upper bound.
func BenchmarkDovecotIdle(b *testing.B) {
	sessions := 500
	if os.Getenv("POPBRIDGE_IDLE_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 256
	}
	if s := os.Getenv("POPBRIDGE_IDLE_SESSIONS"); s != "" {
		sessions, _ = strconv.Atoi(s)
	}
	d := testenv.StartDovecot(b, testenv.DovecotOptions{ExtraConfig: perfDovecotConfig, MaxSessions: sessions + 100})
	user := perfUser(b, d)
	seedMaildir(b, d, user, 3, 2<<10)
	addr, be := perfBridgeBackend(b, d, true)
	poll(b, addr, user, 3)
	for b.Loop() {
		before, rssBefore := memNow(b)
		released, _ := be.IdleReleases()
		held := make([]*popSession, 0, sessions)
		for range sessions {
			p := dialPop(b, addr)
			p.login(b, user)
			p.cmd(b, "STAT")
			held = append(held, p)
		}
		// Every session idle: its upstream client released (release.go).
		waitFor(b, func() bool { r, _ := be.IdleReleases(); return r >= released+uint64(sessions) })
		after, rssAfter := memNow(b)
		if f := os.Getenv("POPBRIDGE_IDLE_HEAPPROFILE"); f != "" {
			// What the held sessions keep (go test's -memprofile is
			// written after they are gone).
			writeHeapProfile(b, f)
		}
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(sessions), "heap-B/session")
		b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/float64(sessions), "stack-B/session")
		b.ReportMetric(float64(rssAfter-rssBefore)/float64(sessions), "rss-B/session")
		for _, p := range held {
			p.cmd(b, "QUIT")
			p.c.Close()
		}
	}
}

// memNow returns the memory statistics after a GC and VmRSS in octets.
func memNow(tb testing.TB) (runtime.MemStats, int64) {
	tb.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	var rss int64
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb << 10
		}
	}
	return ms, rss
}

func perfUser(tb testing.TB, d *testenv.Dovecot) string {
	tb.Helper()
	if err := d.AddUser(testenv.User{Name: "perf", Password: "perf-pw"}); err != nil {
		tb.Fatal(err)
	}
	return "perf"
}

func writeHeapProfile(tb testing.TB, name string) {
	tb.Helper()
	f, err := os.Create(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		tb.Fatal(err)
	}
}
