// Command popbench measures popbridge against Dovecot's own POP3 server
// and Dovecot's POP3 over imapc, on one upstream Dovecot it starts and
// seeds itself, and prints the medians, their ratios and the verdicts on
// the targets of issue 5 as Markdown. See bench/README.md.
//
//	go run ./bench/cmd/popbench            # the full benchmark
//	go run ./bench/cmd/popbench -quick     # every scenario, small, once
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/popbridge/popbridge/bench"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	os.Exit(run())
}

func run() int {
	var (
		quick     = flag.Bool("quick", false, "small sizes, one round: proves it works, measures nothing")
		reps      = flag.Int("reps", 0, "rounds per scenario (default 3, 1 with -quick)")
		pollDur   = flag.Duration("poll-duration", 0, "length of each poll measurement (default 10s)")
		idle      = flag.Int("idle", 0, "idle sessions held (default 2000)")
		scenarios = flag.String("scenarios", "", "comma-separated scenario names to run (default all; -list shows them)")
		list      = flag.Bool("list", false, "list the scenario names and exit")
		jsonOut   = flag.String("json", "", "also write the whole report, every round included, as JSON to this file")
		workDir   = flag.String("workdir", "", "keep popbridge's binary and log here (default a temporary directory)")
		binary    = flag.String("popbridge", "", "popbridge binary to measure (default: go build ./cmd/popbridge)")
		perSess   = flag.Bool("process-per-session", false, "Dovecot's default of one imap/pop3 process per session, instead of 32 sessions per process")
		bridgeArg listFlag
	)
	flag.Var(&bridgeArg, "bridge-arg", "extra popbridge argument (repeatable), e.g. -bridge-arg=--cache-entries=0")
	flag.Parse()

	cfg := bench.FullConfig()
	if *quick {
		cfg = bench.QuickConfig()
	}
	if *reps > 0 {
		cfg.Reps = *reps
	}
	if *pollDur > 0 {
		cfg.PollDuration = *pollDur
	}
	if *idle > 0 {
		cfg.IdleSessions = *idle
	}
	if *list {
		fmt.Println(strings.Join(bench.ScenarioNames(cfg), "\n"))
		return 0
	}
	if *scenarios != "" {
		cfg.Scenarios = strings.Split(*scenarios, ",")
	}
	cfg.WorkDir = *workDir
	cfg.BridgeBinary = *binary
	cfg.BridgeArgs = bridgeArg
	cfg.ProcessPerSession = *perSess
	cfg.Log = os.Stderr
	if cfg.BridgeBinary == "" {
		root, err := moduleRoot()
		if err != nil {
			fmt.Fprintf(os.Stderr, "popbench: %v\n", err)
			return 2
		}
		cfg.ModuleRoot = root
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	if rep != nil {
		rep.Quick = *quick
		fmt.Print(rep.Markdown())
		if *jsonOut != "" {
			b, _ := json.MarshalIndent(rep, "", "  ")
			if werr := os.WriteFile(*jsonOut, b, 0o644); werr != nil {
				fmt.Fprintf(os.Stderr, "popbench: %v\n", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "popbench: %v\n", err)
		return 1
	}
	if failed := rep.Failed(); len(failed) > 0 {
		fmt.Fprintf(os.Stderr, "popbench: errors:\n  %s\n", strings.Join(failed, "\n  "))
		return 1
	}
	return 0
}

// moduleRoot finds the directory of go.mod from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run inside the popbridge module or pass -popbridge")
		}
		dir = parent
	}
}
