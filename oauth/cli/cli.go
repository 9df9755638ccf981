// Package cli is `popbridge oauth`: the admin's commands to create the
// secret key, enroll mailboxes and their devices, list them and revoke
// them (docs/oauth2.md). cmd/popbridge dispatches to Run.
package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/oauth"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/store"
)

// Env is what Run needs from its process.
type Env struct {
	Getenv         func(string) string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// OpenStore opens the state store of cfg (bridge.OpenStore), the one
	// the bridge itself opens.
	OpenStore func(ctx context.Context, cfg *config.Config) (store.Store, error)
}

// usageError is bad input: one line on stderr and exit status 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

const usage = `Usage:
  popbridge oauth keygen  --secret-key-file FILE
  popbridge oauth enroll  --mailbox M [--provider NAME] --device D (--password-stdin | --generate) [--flow auto|device|code]
  popbridge oauth devices [--mailbox M]
  popbridge oauth revoke  --mailbox M [--device D]

Every command also takes the bridge's flags and variables (--config, --secret-key-file, --store,
--data-dir, ...; POPBRIDGE_*), so it sees the configuration of the bridge it prepares.
See docs/oauth2.md.
`

// Run runs `popbridge oauth ARGS` and returns the exit status.
func Run(args []string, env Env) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := run(ctx, args, env)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(env.Stdout, usage)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "popbridge oauth: %s\n", oneLine(err.Error()))
		return 2
	default:
		fmt.Fprintf(env.Stderr, "popbridge oauth: %s\n", oneLine(err.Error()))
		return 1
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func run(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return usagef("a command is required: keygen, enroll, devices or revoke (popbridge oauth --help)")
	}
	cmd, args := args[0], args[1:]
	var mailbox, provider, device string
	flow := "auto"
	var passwordStdin, generate bool
	values := map[string]*string{}
	bools := map[string]*bool{}
	switch cmd {
	case "-h", "--help", "help":
		return flag.ErrHelp
	case "keygen":
	case "devices":
		values["mailbox"] = &mailbox
	case "enroll":
		values = map[string]*string{"mailbox": &mailbox, "provider": &provider, "device": &device, "flow": &flow}
		bools = map[string]*bool{"password-stdin": &passwordStdin, "generate": &generate}
	case "revoke":
		values = map[string]*string{"mailbox": &mailbox, "device": &device}
	default:
		return usagef("unknown command %q (want keygen, enroll, devices or revoke)", cmd)
	}
	rest, err := config.TakeFlags(args, values, bools)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	// Everything else is a flag of the bridge (--config, --store,
	// --secret-key-file...): the command sees the bridge's configuration.
	cfg, err := config.LoadTool(rest, env.Getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{fmt.Errorf("%s: %w", cmd, err)}
	}
	if cmd == "keygen" {
		return keygen(cfg, env)
	}

	mailbox = policy.NormalizeName(mailbox)
	switch {
	case (cmd == "enroll" || cmd == "revoke") && mailbox == "":
		return usagef("%s: --mailbox is required", cmd)
	case mailbox != "" && !validName(mailbox):
		return usagef("%s: --mailbox %q: want a login name without spaces or control characters", cmd, mailbox)
	case cmd == "enroll" && device == "":
		return usagef("enroll: --device NAME is required (the device that will log in, e.g. scanner)")
	case device != "" && !deviceRE.MatchString(device):
		return usagef("%s: --device %q: want 1 to 64 letters, digits, '.', '_' or '-'", cmd, device)
	case cmd == "enroll" && passwordStdin == generate:
		return usagef("enroll: give exactly one of --password-stdin and --generate")
	case cmd == "enroll" && !slices.Contains([]string{"auto", "device", "code"}, flow):
		return usagef("enroll: --flow %q: want auto, device or code", flow)
	}

	if cfg.SecretKeyFile == "" {
		return usagef("--secret-key-file is required (create one with: popbridge oauth keygen --secret-key-file FILE)")
	}
	key, err := oauth.LoadKeyFile(cfg.SecretKeyFile)
	if err != nil {
		return usageError{err}
	}
	if cfg.Store == "none" {
		return usagef("%s: none, but OAuth2 grants and device passwords live in the state store", cfg.Where("store"))
	}
	state, err := env.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer state.Close()
	st := oauth.FromStore(state)
	providers, err := oauth.ProvidersFromConfig(cfg)
	if err != nil {
		return usageError{err}
	}
	m := oauth.NewManager(oauth.ManagerOptions{Store: st, Key: key, Providers: providers})
	t := &tool{cfg: cfg, m: m, st: st, env: env}
	switch cmd {
	case "enroll":
		return t.enroll(ctx, mailbox, provider, device, flow, passwordStdin)
	case "devices":
		return t.devices(ctx, mailbox)
	default:
		return t.revoke(ctx, mailbox, device)
	}
}

var deviceRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func validName(s string) bool {
	return len(s) <= 255 && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

func keygen(cfg *config.Config, env Env) error {
	if cfg.SecretKeyFile == "" {
		return usagef("keygen: --secret-key-file FILE is required")
	}
	if err := oauth.GenerateKeyFile(cfg.SecretKeyFile); err != nil {
		return usageError{err}
	}
	fmt.Fprintf(env.Stdout, "Wrote a new secret key to %s (mode 0600).\n"+
		"Back it up apart from the store: grants sealed with it open with no other key.\n", cfg.SecretKeyFile)
	return nil
}

type tool struct {
	cfg *config.Config
	m   *oauth.Manager
	st  oauth.Store
	env Env
}

func (t *tool) enroll(ctx context.Context, mailbox, providerName, device, flow string, passwordStdin bool) error {
	s := t.cfg.Resolver().Resolve(mailbox)
	mode := s.Auth
	if mode != oauth.ModeUser && mode != oauth.ModeApp {
		return usagef("enroll: %s resolves to auth passthrough in the config file; set auth: oauth2-user (or oauth2-app) for its domain or user first", mailbox)
	}
	if providerName == "" {
		providerName = s.Provider
	}
	p := t.m.Provider(providerName)
	if p == nil {
		return usagef("enroll: provider %q is not in the config file's providers:", providerName)
	}
	// The password is read (or made) before the sign-in, which may take
	// minutes and must not end in a prompt.
	var password string
	if passwordStdin {
		var err error
		if password, err = readPassword(t.env.Stdin); err != nil {
			return usageError{err}
		}
	} else {
		var err error
		if password, err = oauth.GeneratePassword(); err != nil {
			return err
		}
	}

	out := t.env.Stdout
	if mode == oauth.ModeUser {
		var (
			tok *oauth2.Token
			err error
		)
		switch {
		case flow == "device" || (flow == "auto" && p.HasDeviceFlow()):
			if !p.HasDeviceFlow() {
				return usagef("enroll: provider %q has no device-auth-url; use --flow code", p.Name)
			}
			tok, err = t.m.DeviceFlow(ctx, p, mailbox, out)
		default:
			tok, err = t.m.CodeFlow(ctx, p, mailbox, out)
		}
		if err != nil {
			return fmt.Errorf("enroll %s: %w", mailbox, err)
		}
		if err := t.m.SaveGrant(ctx, mailbox, p.Name, tok); err != nil {
			return fmt.Errorf("enroll %s: %w", mailbox, err)
		}
	} else if err := t.m.AllowApp(ctx, mailbox, p.Name); err != nil {
		return fmt.Errorf("enroll %s: %w", mailbox, err)
	}
	if err := t.m.SetDevicePassword(ctx, mailbox, device, password, oauth.DefaultHashParams); err != nil {
		return fmt.Errorf("enroll %s: device %s: %w", mailbox, device, err)
	}
	if mode == oauth.ModeUser {
		fmt.Fprintf(out, "\nEnrolled %s (provider %s): popbridge now holds its grant, sealed.\n", mailbox, p.Name)
	} else {
		fmt.Fprintf(out, "\nAllow-listed %s for the application grant of provider %s.\n", mailbox, p.Name)
	}
	if passwordStdin {
		fmt.Fprintf(out, "Device %q logs in to popbridge as %s with the password given.\n", device, mailbox)
	} else {
		fmt.Fprintf(out, "Device %q logs in to popbridge as %s with the password\n\n    %s\n\n"+
			"It is shown only now; popbridge keeps only a hash of it.\n", device, mailbox, password)
	}
	return nil
}

// readPassword reads one line: the device password.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("--password-stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	switch {
	case pw == "":
		return "", errors.New("--password-stdin: no password on standard input")
	case len(pw) > 200:
		return "", errors.New("--password-stdin: longer than 200 octets (POP3 clients cannot send it)")
	case strings.ContainsFunc(pw, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return "", errors.New("--password-stdin: the password has control characters, which POP3 cannot carry")
	}
	return pw, nil
}

func (t *tool) devices(ctx context.Context, only string) error {
	var boxes []oauth.Mailbox
	if only != "" {
		m, err := t.st.GetMailbox(ctx, only)
		if errors.Is(err, oauth.ErrNotFound) {
			return fmt.Errorf("%s is not enrolled", only)
		}
		if err != nil {
			return err
		}
		boxes = []oauth.Mailbox{m}
	} else {
		var err error
		if boxes, err = t.st.ListMailboxes(ctx); err != nil {
			return err
		}
	}
	slices.SortFunc(boxes, func(a, b oauth.Mailbox) int { return strings.Compare(a.Mailbox, b.Mailbox) })
	tw := tabwriter.NewWriter(t.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tMODE\tPROVIDER\tSTATE\tDEVICE\tADDED")
	for _, b := range boxes {
		state := "ok"
		switch {
		case b.NeedsReenroll:
			state = "needs re-enrollment (" + b.LastError + ")"
		case b.Mode == oauth.ModeUser:
			exp, err := t.m.AccessExpiry(ctx, b.Mailbox)
			switch {
			case err != nil:
				state = "grant does not open (" + oneLine(err.Error()) + ")"
			case time.Now().Before(exp):
				state = "ok, access token until " + exp.Local().Format(time.DateTime)
			default:
				state = "ok, access token expired (refreshed at the next login)"
			}
		}
		creds, err := t.st.DeviceCredentials(ctx, b.Mailbox)
		if err != nil {
			return err
		}
		slices.SortFunc(creds, func(a, b oauth.DeviceCredential) int { return strings.Compare(a.Device, b.Device) })
		if len(creds) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t(none)\t\n", b.Mailbox, b.Mode, b.Provider, state)
		}
		for _, c := range creds {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Mailbox, b.Mode, b.Provider, state, c.Device, c.CreatedAt.Local().Format(time.DateTime))
		}
	}
	if len(boxes) == 0 {
		fmt.Fprintln(t.env.Stdout, "No mailbox is enrolled (popbridge oauth enroll).")
		return nil
	}
	return tw.Flush()
}

func (t *tool) revoke(ctx context.Context, mailbox, device string) error {
	if device != "" {
		if err := t.st.DeleteDeviceCredential(ctx, mailbox, device); errors.Is(err, oauth.ErrNotFound) {
			return fmt.Errorf("%s has no device %q (popbridge oauth devices --mailbox %s)", mailbox, device, mailbox)
		} else if err != nil {
			return err
		}
		fmt.Fprintf(t.env.Stdout, "Revoked device %q of %s; its password no longer logs in.\n", device, mailbox)
		return nil
	}
	creds, err := t.st.DeviceCredentials(ctx, mailbox)
	if err != nil {
		return err
	}
	for _, c := range creds {
		if err := t.st.DeleteDeviceCredential(ctx, mailbox, c.Device); err != nil && !errors.Is(err, oauth.ErrNotFound) {
			return err
		}
	}
	if err := t.st.DeleteMailbox(ctx, mailbox); errors.Is(err, oauth.ErrNotFound) {
		return fmt.Errorf("%s is not enrolled", mailbox)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(t.env.Stdout, "Revoked %s: its grant and its %d device password(s) are deleted from the store.\n"+
		"To end the grant at the provider too, remove popbridge's access in the account's or tenant's settings.\n", mailbox, len(creds))
	return nil
}
