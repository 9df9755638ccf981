package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/reliability/soak"
)

// dovecotReuse lets an imap process serve many sessions one after the
// other, so that forking one per login does not bound the test's rate.
const dovecotReuse = `service imap {
  service_count = 256
  process_min_avail = 8
}`

// loadSettings are CI's: 200 clients for a minute, unless
// POPBRIDGE_CLUSTER (a duration) and POPBRIDGE_CLUSTER_CLIENTS ask for more.
func loadSettings(t *testing.T) (time.Duration, int) {
	d, clients := time.Minute, 200
	if v := os.Getenv("POPBRIDGE_CLUSTER"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("POPBRIDGE_CLUSTER=%q: %v", v, err)
		}
	}
	if v := os.Getenv("POPBRIDGE_CLUSTER_CLIENTS"); v != "" {
		if _, err := fmt.Sscan(v, &clients); err != nil || clients <= 0 {
			t.Fatalf("POPBRIDGE_CLUSTER_CLIENTS=%q: want a positive number", v)
		}
	}
	return d, clients
}

// event is something done to the cluster during the load.
type event struct {
	name       string
	start, end time.Time // end: the cluster is whole again
}

// sessionLog collects soak's per-session results.
type sessionLog struct {
	mu  sync.Mutex
	all []soak.SessionResult
}

func (l *sessionLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

func (l *sessionLog) add(r soak.SessionResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, r)
}

// TestClusterLoad runs three replicas on one PostgreSQL store behind
// HAProxy (PROXY v2, health checks on /readyz) under a load of POP3 clients
// doing mixed sessions (polls, RETR, TOP, DELE+QUIT, RSET, dropped
// connections) while an IMAP client appends and expunges. During the load
// one replica is killed with SIGKILL and restarted, another is drained
// with SIGTERM and restarted, and PostgreSQL is restarted. Clients may see
// -ERR [SYS/TEMP] and closed connections then; the audit at the end is
// exact: every appended message is there or was removed by the IMAP client
// or by a session whose QUIT was answered +OK, every downloaded octet
// matched, no other error was seen.
func TestClusterLoad(t *testing.T) {
	testenv.RequireTool(t, "dovecot")
	testenv.RequireTool(t, "haproxy")
	duration, clients := loadSettings(t)
	var tusers []testenv.User
	var susers []soak.User
	for i := 1; i <= 40; i++ {
		u := testenv.User{Name: fmt.Sprintf("cl%03d", i), Password: fmt.Sprintf("pw-%d", i)}
		tusers = append(tusers, u)
		susers = append(susers, soak.User{Name: u.Name, Password: u.Password})
	}
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: tusers, MaxSessions: clients + 64, ExtraConfig: dovecotReuse})
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	// Without -race: three race-built replicas would need more CPU than a
	// 2-core CI machine has; the other suites run the bridge under -race.
	bin := bridgeproc.PlainBinary(t)
	args := clusterArgs(d, url, "--proxy-protocol", "127.0.0.1/32",
		// Every client of this test comes from 127.0.0.1.
		"--max-conns-per-ip", "1000", "--max-userip-conns", "1000")
	var replicas []*replica
	for i := 1; i <= 3; i++ {
		replicas = append(replicas, startReplica(t, fmt.Sprintf("pb%d", i), bin, args...))
	}
	h := startHAProxy(t, replicas)
	for _, r := range replicas {
		waitFor(t, "HAProxy to see "+r.name+" up", 2*time.Minute, func() bool { return h.serverUp(r.name) })
	}

	var log sessionLog
	cfg := soak.Config{
		POP3Addr: h.Front, IMAPAddr: d.IMAPAddr, Users: susers,
		Clients: clients, Duration: duration,
		InitialMessages: 20, ChurnEvery: 20 * time.Millisecond, ChurnAppendPercent: 80, Churners: 2,
		Mix: soak.Mix{soak.Poll: 25, soak.Retr: 22, soak.Top: 15, soak.Dele: 10, soak.Rset: 5,
			soak.DropMidRetr: 8, soak.DropAfterDele: 10, soak.DropBeforeLogin: 5},
		ThinkTime:    100 * time.Millisecond,
		OpTimeout:    2 * time.Minute,
		TolerateTemp: true, // killed replicas and a restarted database
		Seed:         uint64(time.Now().UnixNano()),
		OnSession:    log.add,
		Logf:         t.Logf,
	}
	type result struct {
		r   *soak.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := soak.Run(context.Background(), cfg)
		done <- result{r, err}
	}()
	// Seeding comes first; the load has begun once sessions end.
	waitFor(t, "the first sessions", 5*time.Minute, func() bool { return log.count() > 0 })
	t0 := time.Now()

	// The events, a fifth of the run apart; each ends when the cluster is
	// whole again (the replica back in HAProxy, the database answering).
	var events []event
	at := func(frac int) { time.Sleep(time.Until(t0.Add(duration * time.Duration(frac) / 5))) }
	at(1)
	events = append(events, restart(t, h, replicas[0], "SIGKILL pb1", syscall.SIGKILL))
	at(2)
	events = append(events, restart(t, h, replicas[1], "SIGTERM pb2 (drain)", syscall.SIGTERM))
	at(3)
	ev := event{name: "restart PostgreSQL", start: time.Now()}
	pg.Restart(t)
	ev.end = time.Now()
	events = append(events, ev)

	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	r := res.r
	t.Logf("soak report:\n%s", r)
	t.Logf("by phase (sessions by start time):\n%s", phaseReport(t0, events, log.all))
	if !r.OK() {
		t.Error("the cluster load found errors (see the report)")
	}
	if r.Audit.DeletedPOP3 == 0 || r.Retrieved == 0 {
		t.Errorf("the load did no deletions by QUIT (%d) or verified RETRs (%d)", r.Audit.DeletedPOP3, r.Retrieved)
	}
	last := events[len(events)-1].end
	if !slices.ContainsFunc(log.all, func(s soak.SessionResult) bool { return s.Start.After(last) && s.Outcome == "ok" }) {
		t.Error("no session succeeded after the last event: the cluster did not recover")
	}
	if n := advisoryLocks(t, url); n != 0 {
		t.Errorf("%d advisory locks left in PostgreSQL after the load", n)
	}
}

// restart stops r with sig, starts it again and points HAProxy at it.
func restart(t *testing.T, h *haproxy, r *replica, name string, sig syscall.Signal) event {
	t.Helper()
	ev := event{name: name, start: time.Now()}
	r.b.Signal(sig)
	select {
	case <-r.b.Done():
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s: still running", name)
	}
	// Until HAProxy's checks notice, it still counts the replica up:
	// "up again" below means something only once it was seen down.
	waitFor(t, "HAProxy to see "+r.name+" down", 2*time.Minute, func() bool { return h.serverDown(r.name) })
	r.start(t)
	h.repoint(t, r)
	waitFor(t, "HAProxy to see "+r.name+" up again", 2*time.Minute, func() bool { return h.serverUp(r.name) })
	ev.end = time.Now()
	return ev
}

// phaseReport groups the sessions by when they started: before the first
// event, during each event, between events, after the last: count,
// outcomes and session time percentiles.
func phaseReport(t0 time.Time, events []event, all []soak.SessionResult) string {
	type phase struct {
		name     string
		from, to time.Time
	}
	var phases []phase
	prev := t0
	for i, ev := range events {
		before := "before " + ev.name
		if i > 0 {
			before = "after " + events[i-1].name
		}
		phases = append(phases, phase{before, prev, ev.start}, phase{"during " + ev.name, ev.start, ev.end})
		prev = ev.end
	}
	phases = append(phases, phase{"after " + events[len(events)-1].name, prev, time.Now()})
	var b strings.Builder
	for _, p := range phases {
		var durs []time.Duration
		outcomes := map[string]int{}
		for _, s := range all {
			if !s.Start.Before(p.from) && s.Start.Before(p.to) {
				durs = append(durs, s.Duration)
				outcomes[s.Outcome]++
			}
		}
		fmt.Fprintf(&b, "  %-32s %5.1fs  sessions %5d", p.name, p.to.Sub(p.from).Seconds(), len(durs))
		if len(durs) > 0 {
			sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
			fmt.Fprintf(&b, "  p50 %v p99 %v max %v", durs[len(durs)/2].Round(time.Millisecond),
				durs[len(durs)*99/100].Round(time.Millisecond), durs[len(durs)-1].Round(time.Millisecond))
		}
		keys := make([]string, 0, len(outcomes))
		for k := range outcomes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s %d", k, outcomes[k])
		}
		b.WriteByte('\n')
	}
	return b.String()
}
