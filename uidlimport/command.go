package uidlimport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/uidlmap"
	"github.com/popbridge/popbridge/upstream"
)

// Flags are uidl import's own flags. Every other argument is a bridge flag
// (--upstream, --upstream-ca, --mailbox, --config, --store, --data-dir...),
// so the import sees each user's mailbox and store exactly as the bridge
// will.
type Flags struct {
	From        string
	FromCA      string
	Mailboxes   string
	DryRun      bool
	JSON        bool
	Concurrency int
}

// Usage is the command's help.
const Usage = `usage: popbridge uidl import --from URL --mailboxes FILE [--dry-run] [--json] [--concurrency N] [bridge flags]

Copies the UIDLs of an old POP3 server into popbridge's UIDL map, so that POP3
clients that leave mail on the server download nothing again (docs/migration.md).

  --from URL          the old server: pop3s://host[:995], pop3://host[:110] (STLS),
                      pop3+insecure://host[:110] (no TLS; loopback only)
  --from-ca FILE      extra CA bundle for the old server
  --mailboxes FILE    one "user password" line per mailbox (# comments allowed)
  --dry-run           match and report, store nothing
  --json              print the report as JSON on stdout
  --concurrency N     mailboxes imported at once (default 4)

Bridge flags (--upstream, --upstream-ca, --mailbox, --config, --store, --data-dir)
name the IMAP side and the store as the bridge sees them. A second run skips the
mailboxes it imported before; passwords are never printed.
`

// ParseFlags takes uidl import's flags out of args and returns the other
// arguments, in order, for the bridge's configuration loader.
func ParseFlags(args []string) (Flags, []string, error) {
	f := Flags{Concurrency: 4}
	concurrency := ""
	rest, err := config.TakeFlags(args,
		map[string]*string{"from": &f.From, "from-ca": &f.FromCA, "mailboxes": &f.Mailboxes, "concurrency": &concurrency},
		map[string]*bool{"dry-run": &f.DryRun, "json": &f.JSON})
	if err != nil {
		return f, nil, err
	}
	if concurrency != "" {
		if f.Concurrency, err = strconv.Atoi(concurrency); err != nil {
			return f, nil, fmt.Errorf("--concurrency %q: want a number", concurrency)
		}
	}
	switch {
	case f.From == "":
		return f, nil, errors.New("--from is required")
	case f.Mailboxes == "":
		return f, nil, errors.New("--mailboxes is required")
	case f.Concurrency < 1 || f.Concurrency > 256:
		return f, nil, fmt.Errorf("--concurrency %d: want 1..256", f.Concurrency)
	}
	return f, rest, nil
}

// Setup is what Main needs besides the flags, built by the caller from
// the bridge configuration.
type Setup struct {
	// IMAP is a backend configured as the bridge's, without a UIDL store.
	IMAP *upstream.Backend
	// Store is the UIDL map (--store, or the default SQLite file).
	Store uidlmap.Store
}

// Main runs the import and prints the report: a line per mailbox (or
// JSON with --json) on stdout, a progress bar on stderr when it is a
// terminal. It returns the exit status: 0 when every mailbox was imported
// or skipped, 1 when one failed, 2 for bad input.
func Main(ctx context.Context, f Flags, s Setup, stdout, stderr io.Writer) int {
	from, err := ParseServer(f.From)
	if err != nil {
		fmt.Fprintf(stderr, "popbridge uidl import: %v\n", err)
		return 2
	}
	if f.FromCA != "" {
		pem, err := os.ReadFile(f.FromCA)
		if err != nil {
			fmt.Fprintf(stderr, "popbridge uidl import: --from-ca: %v\n", err)
			return 2
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "popbridge uidl import: --from-ca %s: no PEM certificate\n", f.FromCA)
			return 2
		}
		from.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	file, err := os.Open(f.Mailboxes)
	if err != nil {
		fmt.Fprintf(stderr, "popbridge uidl import: --mailboxes: %v\n", err)
		return 2
	}
	accounts, err := ParseAccounts(file, f.Mailboxes)
	file.Close()
	if err != nil {
		fmt.Fprintf(stderr, "popbridge uidl import: %v\n", err)
		return 2
	}

	opts := Options{From: from, IMAP: s.IMAP, Store: s.Store, DryRun: f.DryRun, Concurrency: f.Concurrency}
	var bar *progressbar.ProgressBar
	if fd, ok := stderr.(interface{ Fd() uintptr }); ok && term.IsTerminal(int(fd.Fd())) {
		bar = progressbar.NewOptions(len(accounts),
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("uidl import"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish(),
		)
	}
	opts.Progress = func(r Report) {
		if bar != nil {
			_ = bar.Add(1)
		}
		if !f.JSON {
			if bar != nil {
				_ = bar.Clear()
			}
			fmt.Fprintln(stdout, r.line())
		}
	}
	reports, err := Run(ctx, opts, accounts)
	if bar != nil {
		_ = bar.Finish()
	}
	sum := summarise(reports)
	if f.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			DryRun    bool     `json:"dry_run"`
			Mailboxes []Report `json:"mailboxes"`
			Total     Report   `json:"total"`
		}{f.DryRun, reports, sum})
	} else {
		fmt.Fprintln(stdout, sum.line())
	}
	if err != nil {
		fmt.Fprintf(stderr, "popbridge uidl import: %v\n", err)
		return 1
	}
	if sum.Status == StatusFailed {
		return 1
	}
	return 0
}

// summarise adds the reports up; its Status is failed when one failed.
func summarise(reports []Report) Report {
	t := Report{User: "total", Status: "ok"}
	for _, r := range reports {
		t.POP3 += r.POP3
		t.IMAP += r.IMAP
		t.Matched += r.Matched
		t.Unmatched += r.Unmatched
		t.Ambiguous += r.Ambiguous
		if r.Status == StatusFailed || r.Status == "" {
			t.Status = StatusFailed
		}
	}
	return t
}

// line is the report as one line of text.
func (r Report) line() string {
	s := fmt.Sprintf("%s: %s", r.User, r.Status)
	if r.Mailbox != "" && r.User != "total" {
		s += " mailbox=" + r.Mailbox
	}
	if r.Status != StatusSkipped {
		s += fmt.Sprintf(" pop3=%d imap=%d matched=%d unmatched=%d ambiguous=%d", r.POP3, r.IMAP, r.Matched, r.Unmatched, r.Ambiguous)
	}
	if r.Replaced > 0 {
		s += fmt.Sprintf(" replaced=%d", r.Replaced)
	}
	if r.Error != "" {
		s += " error=" + fmt.Sprintf("%q", r.Error)
	}
	return s
}
