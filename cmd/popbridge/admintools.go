package main

// The admins' subcommands (docs/policy.md): "popbridge journal", "popbridge
// restore" and "popbridge policy explain". Each takes its own flags plus
// every flag of the bridge (--config, --store, ...), so it sees exactly the
// configuration the running bridge sees.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/store"
)

// adminCommand runs args as an admin subcommand when args[0] names one.
func adminCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	var cmd func(args []string, getenv func(string) string, stdout io.Writer) error
	switch {
	case args[0] == "journal":
		cmd, args = runJournal, args[1:]
	case args[0] == "restore":
		cmd, args = runRestore, args[1:]
	case args[0] == "policy" && len(args) > 1 && args[1] == "explain":
		cmd, args = runExplain, args[2:]
	default:
		return 0, false
	}
	err := cmd(args, getenv, stdout)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, adminUsage)
		return 0, true
	}
	name := "error"
	var ce cmdError
	if errors.As(err, &ce) {
		name = ce.cmd
	}
	fmt.Fprintf(stderr, "popbridge %s: %s\n", name, oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		return 2, true
	}
	return 1, true
}

const adminUsage = `Usage:
  popbridge journal --user USER [--since 24h|2026-12-01T00:00:00Z] [--json] [bridge flags]
  popbridge restore --user USER [--since T | --message-id ID] [bridge flags]
  popbridge policy explain LOGIN [bridge flags]

The bridge flags (--config, --store, ...) are the ones "popbridge --help" lists.
`

// cmdError names the subcommand in the one-line error.
type cmdError struct {
	cmd string
	err error
}

func (e cmdError) Error() string { return e.err.Error() }
func (e cmdError) Unwrap() error { return e.err }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// ownFlags is config.TakeFlags with its bad input as a usage error.
func ownFlags(args []string, values map[string]*string, bools map[string]*bool) ([]string, error) {
	rest, err := config.TakeFlags(args, values, bools)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return nil, usageError{err}
	}
	return rest, err
}

// loadConfig loads the bridge configuration for a subcommand, without the
// checks only serving needs (config.LoadTool).
func loadConfig(args []string, getenv func(string) string) (*config.Config, error) {
	cfg, err := config.LoadTool(args, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	return cfg, nil
}

// parseSince accepts a duration back from now ("24h") or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %q: want a positive duration", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration (24h) or a time (2026-12-01 or 2026-12-01T08:00:00Z)", s)
}

func runExplain(args []string, getenv func(string) string, stdout io.Writer) error {
	fail := func(err error) error { return cmdError{"policy explain", err} }
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return fail(usageError{errors.New("want a login name: popbridge policy explain alice@example.com[#device] [flags]")})
	}
	login := args[0]
	cfg, err := loadConfig(args[1:], getenv)
	if err != nil {
		return fail(err)
	}
	user, device, lines := cfg.Explain(login)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "login\t%s\n", login)
	fmt.Fprintf(tw, "upstream user\t%s\n", user)
	if device != "" {
		fmt.Fprintf(tw, "device\t%s\n", device)
	}
	fmt.Fprintf(tw, "\nSETTING\tVALUE\tLEVEL\tSET BY\n")
	for _, l := range lines {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.Key, l.Value, l.Level, l.Where)
	}
	fmt.Fprintf(tw, "\nstore\t%s\n", stateSummary(cfg, device, cfg.Resolver().Resolve(user).Policy))
	return tw.Flush()
}

// stateSummary says what the state store does for a login with policy p
// (docs/policy.md): journal and device views, or why not.
func stateSummary(cfg *config.Config, device string, p policy.Policy) string {
	if cfg.Store == "none" {
		return "none: no journal, no device views (leave lists a deleted message again)"
	}
	explicit := cfg.StoreExplicit()
	journal, views := "off", "off"
	if explicit || p.DryRun || p.Action.Kind == policy.Quarantine {
		journal = "on"
	}
	if explicit || device != "" {
		views = "on"
	}
	where := "default, opened at first use"
	if explicit {
		where = cfg.Where("store")
	}
	// The URL may carry a PostgreSQL password.
	return fmt.Sprintf("%s (%s): journal %s, device views %s", store.Redact(cfg.Store), where, journal, views)
}
