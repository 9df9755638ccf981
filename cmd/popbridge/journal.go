package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/popbridge/popbridge/bridge"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/upstream"
)

// journalRow is one journal entry as "popbridge journal --json" prints it.
type journalRow struct {
	ID          int64  `json:"id"`
	Time        string `json:"time"`
	User        string `json:"user"`
	Device      string `json:"device"`
	ClientAddr  string `json:"client_addr"`
	SessionID   string `json:"session_id"`
	Mailbox     string `json:"mailbox"`
	UIDValidity uint32 `json:"uidvalidity"`
	UID         uint32 `json:"uid"`
	MessageID   string `json:"message_id"`
	Date        string `json:"date"`
	Size        int64  `json:"size"`
	Policy      string `json:"policy"`
	Action      string `json:"action"`
	Outcome     string `json:"outcome"`
	Detail      string `json:"detail,omitempty"`
}

func runJournal(args []string, getenv func(string) string, stdout io.Writer) error {
	fail := func(err error) error { return cmdError{"journal", err} }
	var user, since, device, messageID string
	var asJSON bool
	rest, err := ownFlags(args, map[string]*string{"user": &user, "since": &since, "device": &device, "message-id": &messageID},
		map[string]*bool{"json": &asJSON})
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	_, st, from, err := userCommand(ctx, user, since, rest, getenv)
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	rows, err := st.Journal(ctx, upstream.JournalQuery{
		User: policy.NormalizeName(user), Device: strings.ToLower(device), MessageID: strings.Trim(messageID, "<>"), Since: from,
	})
	if err != nil {
		return fail(fmt.Errorf("reading the journal: %w", err))
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			if err := enc.Encode(journalRow{
				ID: r.ID, Time: r.Time.UTC().Format(time.RFC3339), User: r.User, Device: r.Device, ClientAddr: r.ClientAddr,
				SessionID: r.SessionID, Mailbox: r.Mailbox, UIDValidity: r.UIDValidity, UID: r.UID, MessageID: r.MessageID,
				Date: r.Date, Size: r.Size, Policy: r.Policy, Action: r.Action, Outcome: r.Outcome, Detail: r.Detail,
			}); err != nil {
				return fail(err)
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tDEVICE\tCLIENT\tMAILBOX\tUID\tMESSAGE-ID\tSIZE\tPOLICY\tACTION\tOUTCOME\tDETAIL")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%d\t%s\t%s\t%s\t%s\n", r.ID, r.Time.UTC().Format(time.RFC3339),
			orDash(r.Device), orDash(r.ClientAddr), r.Mailbox, r.UIDValidity, r.UID, orDash(r.MessageID), r.Size,
			r.Policy, r.Action, r.Outcome, r.Detail)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runRestore(args []string, getenv func(string) string, stdout io.Writer) error {
	fail := func(err error) error { return cmdError{"restore", err} }
	var user, since, messageID string
	rest, err := ownFlags(args, map[string]*string{"user": &user, "since": &since, "message-id": &messageID}, nil)
	if err != nil {
		return fail(err)
	}
	if since != "" && messageID != "" {
		return fail(usageError{errors.New("give --since or --message-id, not both")})
	}
	ctx := context.Background()
	cfg, st, from, err := userCommand(ctx, user, since, rest, getenv)
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	b, closeBackend, err := bridge.RestoreBackend(cfg, st)
	if err != nil {
		return fail(usageError{err})
	}
	defer closeBackend()
	f := upstream.RestoreFilter{Since: from, MessageID: messageID}
	user, _ = policy.SplitDevice(user, cfg.DeviceSeparator)
	if cfg.UpstreamMasterUser == "" {
		// OAuth2 application mode opens the mailbox itself; anyone else's
		// restore waits for the user's next login.
		n, err := b.RestoreApp(ctx, user, f)
		if err == nil {
			fmt.Fprintf(stdout, "restored %d messages of %s\n", n, user)
			return nil
		}
		if !errors.Is(err, upstream.ErrNoAppAccess) {
			return fail(err)
		}
		id, n, err := b.QueueRestore(ctx, user, f)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "restore %d queued for %s: %d quarantined messages match now; they return at the user's next login\n", id, user, n)
		return nil
	}
	pw, err := readSecretFile(cfg.UpstreamMasterPasswordFile)
	if err != nil {
		return fail(usageError{fmt.Errorf("%s: %w", cfg.Where("upstream-master-password-file"), err)})
	}
	n, err := b.RestoreNow(ctx, user, user+"*"+cfg.UpstreamMasterUser, pw, f)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "restored %d messages of %s\n", n, user)
	return nil
}

// readSecretFile reads a password file: its first line, without the line
// end. The password is never printed.
func readSecretFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("not set (the master user needs a password file)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return "", errors.New("empty password file")
	}
	return line, nil
}

// userCommand is what journal and restore share: --user is required, the
// configuration loads from the other flags, --since parses, and the store
// opens (the caller closes it).
func userCommand(ctx context.Context, user, since string, rest []string, getenv func(string) string) (*config.Config, store.Store, time.Time, error) {
	if user == "" {
		return nil, nil, time.Time{}, usageError{errors.New("--user: required")}
	}
	cfg, err := loadConfig(rest, getenv)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	from, err := parseSince(since, time.Now().UTC())
	if err != nil {
		return nil, nil, time.Time{}, usageError{err}
	}
	if cfg.Store == "none" {
		return nil, nil, time.Time{}, usageError{fmt.Errorf("%s: none, but the journal lives in the state store", cfg.Where("store"))}
	}
	st, err := bridge.OpenStore(ctx, cfg)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	return cfg, st, from, nil
}
