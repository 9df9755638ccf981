// Command popbridge is an IMAP-to-POP3 bridge: it serves POP3 and turns
// each session into IMAP operations on an upstream server.
//
// This file is the process around the bridge: configuration, logging,
// signals and exit status; package bridge assembles everything else.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/bridge"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/demo"
	"github.com/popbridge/popbridge/internal/fdlimit"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil))
}

// usageError is a command-line problem of a subcommand: one line on
// stderr, exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run is main with its dependencies passed in, so tests can drive it. When
// ready is not nil it receives the bound addresses once listening.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- bridge.Addrs) int {
	if len(args) > 0 && args[0] == "oauth" {
		return oauthCommand(args[1:], getenv, stdout, stderr)
	}
	if code, ok := uidlCommand(args, getenv, stdout, stderr); ok {
		return code
	}
	if code, ok := adminCommand(args, getenv, stdout, stderr); ok {
		return code
	}
	cfg, err := config.Load(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, config.Usage())
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "popbridge: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	for _, w := range cfg.Warnings() {
		log.Warn().Msg(w)
	}
	fdlimit.RaiseAndLog(log, cfg.MaxSessions)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	b, err := bridge.New(cfg, bridge.Options{Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "popbridge: %v\n", err)
		var ce *bridge.ConfigError
		if errors.As(err, &ce) {
			return 2
		}
		return 1
	}
	defer b.Close()
	addrs := b.Addrs()
	if cfg.Demo {
		printDemo(stdout, addrs)
	}
	log.Info().Str("listen", addrs.POP3).Str("listen_tls", addrs.POP3S).Str("admin", addrs.Admin).
		Stringer("upstream", b.Upstream()).Msg("popbridge started")
	if ready != nil {
		ready <- addrs
	}
	reload := func() {
		if cfg.ConfigFile == "" {
			return
		}
		if err := b.Reload(func() (*config.Config, error) { return config.Load(args, getenv) }); err != nil {
			log.Error().Str("error", oneLine(err.Error())).Msg("configuration reload failed; keeping the running configuration")
			return
		}
		log.Info().Str("config", cfg.ConfigFile).Msg("configuration reloaded: policies and overrides apply to new sessions")
	}
	if err := waitForSignal(ctx, b, cfg.TLSCert != "", reload, b.Start(), log); err != nil {
		log.Error().Err(err).Msg("listener failed")
		return 1
	}

	log.Info().Dur("drain_timeout", cfg.DrainTimeout).Msg("draining")
	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if err := b.Shutdown(dctx); err != nil {
		log.Warn().Err(err).Msg("drain timeout: remaining sessions closed")
	}
	log.Info().Msg("popbridge stopped")
	return 0
}

// waitForSignal serves SIGHUP (configuration and certificate reload) until
// SIGTERM or SIGINT (ctx done, nil) or a listener failure (its error).
func waitForSignal(ctx context.Context, b *bridge.Bridge, tls bool, reload func(), serveErr <-chan error, log zerolog.Logger) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			reload()
			if err := b.ReloadCerts(); err != nil {
				log.Error().Err(err).Msg("TLS certificate reload failed; keeping the old one")
			} else if tls {
				log.Info().Msg("TLS certificate reloaded")
			}
		case err := <-serveErr:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

func printDemo(stdout io.Writer, addrs bridge.Addrs) {
	fmt.Fprintf(stdout, "popbridge demo: user %q, password %q, in front of an in-memory IMAP server at %s\n",
		demo.Username, demo.Password, addrs.Demo)
	if addrs.POP3 != "" {
		fmt.Fprintf(stdout, "try:  curl pop3://%s:%s@%s/1\n", demo.Username, demo.Password, addrs.POP3)
		fmt.Fprintf(stdout, "list: curl pop3://%s:%s@%s/\n", demo.Username, demo.Password, addrs.POP3)
	}
}

// newLogger is the process log on stderr, as --log-format and --log-level say.
func newLogger(cfg *config.Config, stderr io.Writer) zerolog.Logger {
	var w io.Writer = stderr
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(cfg.LogLevel).With().Timestamp().Logger()
}
