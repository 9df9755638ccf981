package reliability

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/testing/faultnet"
	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/reliability/soak"
)

// soakSettings are the short soak's, unless POPBRIDGE_SOAK (a duration)
// asks for the long one: POPBRIDGE_SOAK=5m runs 1000 clients for five
// minutes (POPBRIDGE_SOAK_CLIENTS and POPBRIDGE_SOAK_USERS change those).
func soakSettings(t *testing.T) (d time.Duration, clients, users int) {
	d, clients, users = 40*time.Second, 200, 40
	if v := os.Getenv("POPBRIDGE_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("POPBRIDGE_SOAK=%q: %v", v, err)
		}
		clients, users = 1000, 200
	}
	atoi := func(name string, def int) int {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				t.Fatalf("%s=%q: want a positive number", name, v)
			}
			return n
		}
		return def
	}
	return d, atoi("POPBRIDGE_SOAK_CLIENTS", clients), atoi("POPBRIDGE_SOAK_USERS", users)
}

// dovecotReuse lets an imap process serve many connections one after the
// other: forking and exec'ing one per login is what bounds the soak's
// session rate on a small box, not popbridge.
const dovecotReuse = `service imap {
  service_count = 256
  process_min_avail = 8
}`

// soakEnv is Dovecot with users, and popbridge in front of it with
// production deadlines, optionally through a relay on the upstream leg.
type soakEnv struct {
	dovecot *testenv.Dovecot
	users   []soak.User
	b       *bridge
	relay   *faultnet.Relay
}

func startSoakEnv(t *testing.T, clients, users int, viaRelay bool) *soakEnv {
	t.Helper()
	var tusers []testenv.User
	var susers []soak.User
	for i := 1; i <= users; i++ {
		u := testenv.User{Name: fmt.Sprintf("soak%03d", i), Password: fmt.Sprintf("pw-%d", i)}
		tusers = append(tusers, u)
		susers = append(susers, soak.User{Name: u.Name, Password: u.Password})
	}
	// Room for the sessions popbridge is still logging out of while
	// their clients have moved on, which pile up on a loaded machine.
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: tusers, MaxSessions: 2*clients + 64, ExtraConfig: dovecotReuse})
	e := &soakEnv{dovecot: d, users: susers}
	up := d.IMAPAddr
	if viaRelay {
		r, err := faultnet.Listen(d.IMAPAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		e.relay, up = r, r.Addr()
	}
	e.b = startBridge(t, bridgeOptions{
		upstream: "imap+insecure://" + up,
		warnLogs: true,
		// Production deadlines and limits: the soak is about correctness,
		// not the fault tests' short deadlines, and a loaded 2-core box
		// with -race is slow. A 500 ms write deadline cut transfers to
		// soak clients that were merely starved of CPU: "transfer closed
		// before the dot but the message is still there".
		dial: 10 * time.Second, login: 30 * time.Second, command: 60 * time.Second,
		config: func(c *config.Config) {
			def := config.Default()
			c.WriteTimeout, c.IdleTimeout, c.PreLoginTimeout = def.WriteTimeout, def.IdleTimeout, def.PreLoginTimeout
			c.MaxSessions, c.MaxPreLoginConns = def.MaxSessions, def.MaxPreLoginConns
			// Sessions release their upstream client whenever their
			// client pauses at all (docs/design.md, idle sessions), so
			// the audit covers resumes amid expunges and faults.
			c.ReleaseAfter = time.Millisecond
			c.AdminListen = "127.0.0.1:0"
		},
	})
	return e
}

// metric is the value of an unlabelled counter on the bridge's /metrics.
func (e *soakEnv) metric(t *testing.T, name string) float64 {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+e.b.b.Addrs().Admin+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true // no idle connection left for the goroutine check
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

func (e *soakEnv) config(d time.Duration, clients int) soak.Config {
	return soak.Config{
		POP3Addr:        e.b.addr,
		IMAPAddr:        e.dovecot.IMAPAddr,
		Users:           e.users,
		Clients:         clients,
		Duration:        d,
		InitialMessages: 30,
		ChurnEvery:      20 * time.Millisecond,
		// More appends than expunges, and fewer deleting sessions than
		// DefaultMix, keep the mailboxes from running dry.
		ChurnAppendPercent: 80,
		Churners:           4,
		Mix: soak.Mix{soak.Poll: 25, soak.Retr: 22, soak.Top: 15, soak.Dele: 8, soak.Rset: 5,
			soak.DropMidRetr: 10, soak.DropAfterDele: 10, soak.DropBeforeLogin: 5},
		ThinkTime: 100 * time.Millisecond,
		OpTimeout: 90 * time.Second,
		Seed:      uint64(time.Now().UnixNano()),
		Sample: func() soak.Sample {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return soak.Sample{Goroutines: runtime.NumGoroutine(), HeapBytes: ms.HeapAlloc, Sessions: e.b.b.ActiveSessions()}
		},
	}
}

// TestSoak runs mixed POP3 sessions from many clients against popbridge in
// front of Dovecot while an IMAP client appends and expunges, then audits:
// every appended message is still there or was removed by the IMAP client
// or by a POP3 session that sent QUIT with DELE; every octet downloaded
// matched; no client saw an unexpected error; popbridge's goroutines are
// back to the baseline and its heap after GC did not grow.
func TestSoak(t *testing.T) {
	testenv.RequireTool(t, "dovecot")
	d, clients, users := soakSettings(t)
	e := startSoakEnv(t, clients, users, false)
	q := startQuiet(t)
	heap0 := heapAfterGC()

	cfg := e.config(d, clients)
	cfg.Logf = t.Logf
	r, err := soak.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("soak report:\n%s", r)
	if !r.OK() {
		t.Error("soak found errors (see the report)")
	}
	// Make sure the run exercised what it claims to.
	for name, n := range map[string]int64{
		"sessions": r.Sessions, "verified RETRs": r.Retrieved, "verified TOPs": r.Tops,
		"deletions by QUIT": int64(r.Audit.DeletedPOP3), "IMAP appends": int64(r.Appends), "IMAP expunges": int64(r.Expunges),
	} {
		if n == 0 {
			t.Errorf("the soak did no %s", name)
		}
	}
	released, resumed := e.metric(t, "popbridge_upstream_released_total"), e.metric(t, "popbridge_upstream_resumed_total")
	t.Logf("upstream clients released while idle: %v, resumed: %v", released, resumed)
	if resumed == 0 {
		t.Error("no session resumed a released upstream client")
	}
	q.check(e.b, nil, slack)
	heap1 := heapAfterGC()
	t.Logf("live heap after GC: %d KiB before, %d KiB after", heap0>>10, heap1>>10)
	if growth := int64(heap1) - int64(heap0); growth > 8<<20 {
		t.Errorf("live heap grew by %d KiB over the soak", growth>>10)
	}
}

// TestSoakWithUpstreamFaults is the soak with the upstream leg cut, reset,
// stalled, refused and restarted while it runs (soak.Chaos): clients may
// see -ERR [SYS/TEMP] and closed connections, but the audit is as strict as
// ever, and no upstream connection may be left open.
func TestSoakWithUpstreamFaults(t *testing.T) {
	testenv.RequireTool(t, "dovecot")
	d, clients, users := soakSettings(t)
	d, clients = d/2, clients/2
	e := startSoakEnv(t, clients, users, true)
	q := startQuiet(t)

	ctx, cancel := context.WithCancel(context.Background())
	chaosDone := make(chan int)
	go func() { chaosDone <- soak.Chaos(ctx, e.relay, 1200*time.Millisecond) }()
	cfg := e.config(d, clients)
	cfg.InitialMessages = 15
	cfg.TolerateTemp = true
	cfg.Logf = t.Logf
	r, err := soak.Run(context.Background(), cfg)
	cancel()
	faults := <-chaosDone
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d faults injected; soak report:\n%s", faults, r)
	if !r.OK() {
		t.Error("soak under faults found errors (see the report)")
	}
	if r.Temporary == 0 {
		t.Error("no client noticed the faults: were they injected?")
	}
	q.check(e.b, e.relay, slack)
}
