package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/uidlmap"
	"github.com/popbridge/popbridge/upstream"
)

// OpenStore opens the configured state store: the one path the bridge and
// every subcommand use, so they all find the same file or database.
// --demo without --store gets an in-memory store.
func OpenStore(ctx context.Context, cfg *config.Config) (store.Store, error) {
	st, err := store.Open(ctx, storeURL(cfg), cfg.DataDir)
	if errors.Is(err, store.ErrDisabled) {
		return nil, fmt.Errorf("%s: none, but this needs the state store", cfg.Where("store"))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Where("store"), err)
	}
	return st, nil
}

// storeURL is cfg's store URL; --demo without --store gets an in-memory
// store.
func storeURL(cfg *config.Config) string {
	if cfg.Demo && !cfg.StoreExplicit() {
		return "sqlite::memory:"
	}
	return cfg.Store
}

// sharedStore is the bridge's state store, shared by every feature that
// needs one (docs/operations.md). It opens at its first use, so a bridge
// whose features need no state writes no file; with an explicit --store
// (or --demo) it is opened at start, so a bad store fails the start.
func (b *Bridge) sharedStore() *store.LazyStore {
	b.storeMu.Lock()
	defer b.storeMu.Unlock()
	if b.store == nil {
		b.store = store.Lazy(storeURL(&b.cfg), b.cfg.DataDir, b.metrics.WatchStore())
		st := b.store
		b.closers = append(b.closers, func() { st.Close() })
	}
	return b.store
}

// stateOptions sets the backend's stateful options: the store (opened now
// when --store was given, or for --demo; else at first use; none with
// --store none), devices, journal retention and quarantine.
func (b *Bridge) stateOptions(o *upstream.Options) error {
	cfg := &b.cfg
	o.DeviceSeparator = cfg.DeviceSeparator
	o.DeviceExpiry = cfg.DeviceExpiry
	o.JournalRetention = cfg.JournalRetention
	o.QuarantineTTL = time.Duration(cfg.QuarantineDays) * 24 * time.Hour
	o.QuarantineMailbox = cfg.QuarantineMailbox
	if cfg.Store == "none" {
		return nil
	}
	st := b.sharedStore()
	o.State = st
	if cfg.StoreExplicit() || cfg.Demo {
		if err := st.Open(context.Background()); err != nil {
			// A configuration problem: one line, exit status 2.
			return &ConfigError{fmt.Errorf("%s: %w", cfg.Where("store"), err)}
		}
		o.Passive = true
		if cfg.StoreExplicit() {
			// UIDL continuity is passive too (docs/migration.md).
			o.UIDLs = uidlmap.OnStore(st)
		}
	}
	return nil
}
