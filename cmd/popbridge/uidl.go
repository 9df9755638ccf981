package main

// "popbridge uidl import" (docs/migration.md): the old POP3 server's UIDLs
// into the UIDL map. The work is in uidlimport; this is the wiring: the
// bridge's configuration (--upstream, --config, --store ...) gives the
// IMAP side and the store exactly as the bridge will see them.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/popbridge/popbridge/bridge"
	"github.com/popbridge/popbridge/uidlimport"
	"github.com/popbridge/popbridge/uidlmap"
)

// uidlCommand runs "popbridge uidl import" when args name it.
func uidlCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) (code int, ok bool) {
	if len(args) == 0 || args[0] != "uidl" {
		return 0, false
	}
	fail := func(code int, err error) (int, bool) {
		fmt.Fprintf(stderr, "popbridge uidl import: %s\n", oneLine(err.Error()))
		return code, true
	}
	if len(args) < 2 || args[1] != "import" {
		return fail(2, errors.New("unknown command: want \"popbridge uidl import\""))
	}
	for _, a := range args[2:] {
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprint(stdout, uidlimport.Usage)
			return 0, true
		}
	}
	f, rest, err := uidlimport.ParseFlags(args[2:])
	if err != nil {
		return fail(2, err)
	}
	cfg, err := loadConfig(rest, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, uidlimport.Usage)
		return 0, true
	}
	if err != nil {
		return fail(2, err)
	}
	// No State: the import's logins must not touch device ledgers or the
	// journal; Fingerprint stores nothing either.
	imap, closeIMAP, err := bridge.ToolBackend(cfg, nil)
	if err != nil {
		return fail(2, err)
	}
	defer closeIMAP()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if cfg.Store == "none" {
		return fail(2, fmt.Errorf("%s: none, but uidl import keeps UIDLs in the state store", cfg.Where("store")))
	}
	st, err := bridge.OpenStore(ctx, cfg)
	if err != nil {
		return fail(1, err)
	}
	defer st.Close()
	return uidlimport.Main(ctx, f, uidlimport.Setup{IMAP: imap, Store: uidlmap.OnStore(st)}, stdout, stderr), true
}
