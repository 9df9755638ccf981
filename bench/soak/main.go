// Command soak is popbridge's load and soak test: it starts a Dovecot on
// loopback ports with -users accounts, puts popbridge in front of it (built
// in-process, or the binary given with -binary), and runs -clients POP3
// clients doing mixed sessions for -duration while an IMAP client appends
// and expunges; then it audits every mailbox and prints the report
// (reliability/soak). The exit status is 0 when nothing was lost,
// corrupted or wrongly deleted, no client saw an unexpected error, and
// popbridge's goroutines returned to their baseline; 1 otherwise.
//
//	go run ./bench/soak -duration 5m -clients 1000
//	go run ./bench/soak -duration 2m -clients 500 -faults
//	go build -o /tmp/popbridge ./cmd/popbridge && go run ./bench/soak -binary /tmp/popbridge
//
// It needs Dovecot (./scripts/test.sh installs it) and, for 1000 clients,
// a file descriptor limit of a few thousand (ulimit -n).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/popbridge/popbridge/internal/testing/faultnet"
	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/reliability/soak"
)

func main() {
	os.Exit(run())
}

// options are the command line.
type options struct {
	duration, think, churn, every time.Duration
	clients, users, messages      int
	binary                        string
	faults                        bool
	seed                          uint64
}

func parseFlags() options {
	var o options
	flag.DurationVar(&o.duration, "duration", time.Minute, "how long clients start new sessions")
	flag.IntVar(&o.clients, "clients", 1000, "concurrent POP3 clients")
	flag.IntVar(&o.users, "users", 200, "mailboxes")
	flag.IntVar(&o.messages, "messages", 30, "messages in each mailbox at the start")
	flag.DurationVar(&o.think, "think", 100*time.Millisecond, "longest pause between a client's sessions")
	flag.DurationVar(&o.churn, "churn", 20*time.Millisecond, "pace of the IMAP appender/expunger")
	flag.StringVar(&o.binary, "binary", "", "run this popbridge binary instead of popbridge in-process")
	flag.BoolVar(&o.faults, "faults", false, "cut, reset, stall and refuse the upstream leg at random (clients may then see [SYS/TEMP])")
	flag.DurationVar(&o.every, "faults-every", 700*time.Millisecond, "interval between injected faults")
	flag.Uint64Var(&o.seed, "seed", uint64(time.Now().UnixNano()), "seed of the clients' choices")
	flag.Parse()
	return o
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// env is what the soak runs against: Dovecot, the optional fault relay in
// front of it, and popbridge.
type env struct {
	dovecot *testenv.Dovecot
	relay   *faultnet.Relay // nil without -faults
	target  popbridge
	users   []soak.User
}

// start brings up Dovecot with the soak's users, the relay with -faults,
// and popbridge; close stops what started.
func start(o options) (*env, error) {
	e := &env{}
	var tusers []testenv.User
	for i := 1; i <= o.users; i++ {
		u := testenv.User{Name: fmt.Sprintf("soak%04d", i), Password: fmt.Sprintf("pw-%d", i)}
		tusers = append(tusers, u)
		e.users = append(e.users, soak.User{Name: u.Name, Password: u.Password})
	}
	logf("starting Dovecot")
	d, err := testenv.StartDovecotProcess(testenv.DovecotOptions{
		Users: tusers, MaxSessions: o.clients + 64,
		// One fork and exec per login would bound the session rate.
		ExtraConfig: "service imap {\n  service_count = 256\n  process_min_avail = 8\n}",
	})
	if err != nil {
		return nil, err
	}
	e.dovecot = d
	upstreamAddr := d.IMAPAddr
	if o.faults {
		if e.relay, err = faultnet.Listen(d.IMAPAddr); err != nil {
			e.close()
			return nil, err
		}
		upstreamAddr = e.relay.Addr()
	}
	if o.binary != "" {
		e.target, err = startBinary(o.binary, upstreamAddr, o.clients)
	} else {
		e.target, err = startInProcess(upstreamAddr, o.clients)
	}
	if err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.target != nil {
		e.target.close()
	}
	if e.relay != nil {
		e.relay.Close()
	}
	e.dovecot.Stop()
}

func run() int {
	o := parseFlags()
	e, err := start(o)
	if err != nil {
		logf("%v", err)
		return 2
	}
	defer e.close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	base, err := e.target.sample()
	if err != nil {
		logf("%v", err)
		return 2
	}
	logf("popbridge on %s: %d goroutines, heap %d KiB at rest", e.target.addr(), base.Goroutines, base.HeapBytes>>10)
	report, injected, err := e.soak(ctx, o)
	if err != nil {
		logf("%v", err)
		return 2
	}
	after, settled := e.settle(base)
	leaked := e.relay != nil && !e.relay.WaitIdle(30*time.Second)
	printReport(o, e, report, injected, base, after)
	if !settled {
		fmt.Println("FAILED: popbridge did not return to its baseline")
	}
	if leaked {
		fmt.Printf("FAILED: %d upstream connections still open\n", e.relay.Active())
	}
	if !report.OK() || !settled || leaked {
		return 1
	}
	return 0
}

// soak runs the clients (and, with -faults, the chaos on the relay) and
// returns the report and how many faults were injected.
func (e *env) soak(ctx context.Context, o options) (*soak.Report, int, error) {
	chaosDone := make(chan int, 1)
	chaosCtx, stopChaos := context.WithCancel(ctx)
	if e.relay != nil {
		go func() { chaosDone <- soak.Chaos(chaosCtx, e.relay, o.every) }()
	} else {
		chaosDone <- 0
	}
	report, err := soak.Run(ctx, soak.Config{
		POP3Addr: e.target.addr(), IMAPAddr: e.dovecot.IMAPAddr, Users: e.users,
		Clients: o.clients, Duration: o.duration, InitialMessages: o.messages,
		ChurnEvery: o.churn, ChurnAppendPercent: 85, Churners: 8, ThinkTime: o.think,
		// Few enough deleting sessions that the appenders keep up and
		// the mailboxes do not run dry in a long run.
		Mix: soak.Mix{soak.Poll: 25, soak.Retr: 22, soak.Top: 15, soak.Dele: 4, soak.Rset: 5,
			soak.DropMidRetr: 10, soak.DropAfterDele: 10, soak.DropBeforeLogin: 5},
		OpTimeout:    2 * time.Minute,
		TolerateTemp: o.faults,
		Seed:         o.seed,
		Sample: func() soak.Sample {
			s, _ := e.target.sample()
			return s
		},
		SampleEvery: 10 * time.Second,
		Logf:        logf,
	})
	stopChaos()
	return report, <-chaosDone, err
}

// settle waits until popbridge is at rest again: every session over and
// the goroutines back to the baseline.
func (e *env) settle(base soak.Sample) (soak.Sample, bool) {
	var after soak.Sample
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if after, err = e.target.sample(); err == nil && after.Sessions == 0 && after.Goroutines <= base.Goroutines+2 {
			return after, true
		}
	}
	return after, false
}

func printReport(o options, e *env, report *soak.Report, injected int, base, after soak.Sample) {
	fmt.Printf("go run ./bench/soak -duration %v -clients %d -users %d -messages %d -think %v -churn %v -seed %d",
		o.duration, o.clients, o.users, o.messages, o.think, o.churn, o.seed)
	if o.faults {
		fmt.Printf(" -faults -faults-every %v", o.every)
	}
	if o.binary != "" {
		fmt.Printf(" -binary %s", o.binary)
	}
	fmt.Printf("\n%d CPUs, %s, Dovecot %s", runtime.NumCPU(), runtime.Version(), e.dovecot.Version)
	if o.faults {
		fmt.Printf(", %d faults injected", injected)
	}
	fmt.Printf("\n%s", report)
	fmt.Printf("popbridge at rest: %d goroutines, heap %d KiB before; %d goroutines, heap %d KiB after, %d sessions open\n",
		base.Goroutines, base.HeapBytes>>10, after.Goroutines, after.HeapBytes>>10, after.Sessions)
}
