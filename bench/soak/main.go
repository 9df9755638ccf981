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

	"github.com/popbridge/popbridge/internal/faultnet"
	"github.com/popbridge/popbridge/internal/testenv"
	"github.com/popbridge/popbridge/reliability/soak"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		duration = flag.Duration("duration", time.Minute, "how long clients start new sessions")
		clients  = flag.Int("clients", 1000, "concurrent POP3 clients")
		users    = flag.Int("users", 200, "mailboxes")
		messages = flag.Int("messages", 30, "messages in each mailbox at the start")
		think    = flag.Duration("think", 100*time.Millisecond, "longest pause between a client's sessions")
		churn    = flag.Duration("churn", 20*time.Millisecond, "pace of the IMAP appender/expunger")
		binary   = flag.String("binary", "", "run this popbridge binary instead of popbridge in-process")
		faults   = flag.Bool("faults", false, "cut, reset, stall and refuse the upstream leg at random (clients may then see [SYS/TEMP])")
		every    = flag.Duration("faults-every", 700*time.Millisecond, "interval between injected faults")
		seed     = flag.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the clients' choices")
	)
	flag.Parse()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}

	var tusers []testenv.User
	var susers []soak.User
	for i := 1; i <= *users; i++ {
		u := testenv.User{Name: fmt.Sprintf("soak%04d", i), Password: fmt.Sprintf("pw-%d", i)}
		tusers = append(tusers, u)
		susers = append(susers, soak.User{Name: u.Name, Password: u.Password})
	}
	logf("starting Dovecot")
	d, err := testenv.StartDovecotProcess(testenv.DovecotOptions{
		Users: tusers, MaxSessions: *clients + 64,
		// One fork and exec per login would bound the session rate.
		ExtraConfig: "service imap {\n  service_count = 256\n  process_min_avail = 8\n}",
	})
	if err != nil {
		logf("%v", err)
		return 2
	}
	defer d.Stop()

	upstreamAddr := d.IMAPAddr
	var relay *faultnet.Relay
	if *faults {
		if relay, err = faultnet.Listen(d.IMAPAddr); err != nil {
			logf("%v", err)
			return 2
		}
		defer relay.Close()
		upstreamAddr = relay.Addr()
	}

	var target popbridge
	if *binary != "" {
		target, err = startBinary(*binary, upstreamAddr, *clients)
	} else {
		target, err = startInProcess(upstreamAddr, *clients)
	}
	if err != nil {
		logf("%v", err)
		return 2
	}
	defer target.close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	base, err := target.sample()
	if err != nil {
		logf("%v", err)
		return 2
	}
	logf("popbridge on %s: %d goroutines, heap %d KiB at rest", target.addr(), base.Goroutines, base.HeapBytes>>10)
	chaosDone := make(chan int, 1)
	chaosCtx, stopChaos := context.WithCancel(ctx)
	if relay != nil {
		go func() { chaosDone <- soak.Chaos(chaosCtx, relay, *every) }()
	} else {
		chaosDone <- 0
	}
	report, err := soak.Run(ctx, soak.Config{
		POP3Addr: target.addr(), IMAPAddr: d.IMAPAddr, Users: susers,
		Clients: *clients, Duration: *duration, InitialMessages: *messages,
		ChurnEvery: *churn, ChurnAppendPercent: 85, Churners: 8, ThinkTime: *think,
		// Few enough deleting sessions that the appenders keep up and
		// the mailboxes do not run dry in a long run.
		Mix: soak.Mix{soak.Poll: 25, soak.Retr: 22, soak.Top: 15, soak.Dele: 4, soak.Rset: 5,
			soak.DropMidRetr: 10, soak.DropAfterDele: 10, soak.DropBeforeLogin: 5},
		OpTimeout:    2 * time.Minute,
		TolerateTemp: *faults,
		Seed:         *seed,
		Sample: func() soak.Sample {
			s, _ := target.sample()
			return s
		},
		SampleEvery: 10 * time.Second,
		Logf:        logf,
	})
	stopChaos()
	injected := <-chaosDone
	if err != nil {
		logf("%v", err)
		return 2
	}

	// At rest again: every session over, goroutines back to the baseline.
	var after soak.Sample
	settled := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if after, err = target.sample(); err == nil && after.Sessions == 0 && after.Goroutines <= base.Goroutines+2 {
			settled = true
			break
		}
	}
	leaked := relay != nil && !relay.WaitIdle(30*time.Second)
	fmt.Printf("go run ./bench/soak -duration %v -clients %d -users %d -messages %d -think %v -churn %v -seed %d",
		*duration, *clients, *users, *messages, *think, *churn, *seed)
	if *faults {
		fmt.Printf(" -faults -faults-every %v", *every)
	}
	if *binary != "" {
		fmt.Printf(" -binary %s", *binary)
	}
	fmt.Printf("\n%d CPUs, %s, Dovecot %s", runtime.NumCPU(), runtime.Version(), d.Version)
	if *faults {
		fmt.Printf(", %d faults injected", injected)
	}
	fmt.Printf("\n%s", report)
	fmt.Printf("popbridge at rest: %d goroutines, heap %d KiB before; %d goroutines, heap %d KiB after, %d sessions open\n",
		base.Goroutines, base.HeapBytes>>10, after.Goroutines, after.HeapBytes>>10, after.Sessions)
	if !settled {
		fmt.Println("FAILED: popbridge did not return to its baseline")
	}
	if leaked {
		fmt.Printf("FAILED: %d upstream connections still open\n", relay.Active())
	}
	if !report.OK() || !settled || leaked {
		return 1
	}
	return 0
}
