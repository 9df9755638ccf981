package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/upstream"
)

// OpenStore opens the configured state store: the one path the bridge and
// every subcommand use, so they all find the same file or database.
// --demo without --store gets an in-memory store.
func OpenStore(ctx context.Context, cfg *config.Config) (store.Store, error) {
	url := cfg.Store
	if cfg.Demo && !cfg.StoreExplicit() {
		url = "sqlite::memory:"
	}
	st, err := store.Open(ctx, url, cfg.DataDir)
	if errors.Is(err, store.ErrDisabled) {
		return nil, fmt.Errorf("%s: none, but this needs the state store", cfg.Where("store"))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Where("store"), err)
	}
	return st, nil
}

// lazyState is upstream.State on the bridge's shared store, opened at
// the first use: without an explicit --store no file is written until a
// feature that needs state (a device login, quarantine, a dry run) is
// used.
type lazyState struct {
	open func(context.Context) (store.Store, error)
}

func (l *lazyState) get(ctx context.Context) (store.Store, error) { return l.open(ctx) }

var _ upstream.State = (*lazyState)(nil)

func (l *lazyState) TouchDevice(ctx context.Context, key, device string, at time.Time) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.TouchDevice(ctx, key, device, at)
}

func (l *lazyState) Devices(ctx context.Context, key string) ([]store.Device, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.Devices(ctx, key)
}

func (l *lazyState) MarkDone(ctx context.Context, key, device string, uidValidity uint32, uids []uint32, at time.Time) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.MarkDone(ctx, key, device, uidValidity, uids, at)
}

func (l *lazyState) Done(ctx context.Context, key string, uidValidity uint32) ([]store.DoneRecord, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.Done(ctx, key, uidValidity)
}

func (l *lazyState) AppendJournal(ctx context.Context, entries []store.JournalEntry) ([]int64, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.AppendJournal(ctx, entries)
}

func (l *lazyState) SetJournalOutcome(ctx context.Context, ids []int64, outcome string) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.SetJournalOutcome(ctx, ids, outcome)
}

func (l *lazyState) Journal(ctx context.Context, q store.JournalQuery) ([]store.JournalEntry, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.Journal(ctx, q)
}

func (l *lazyState) PruneJournal(ctx context.Context, before time.Time) (int64, error) {
	st, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	return st.PruneJournal(ctx, before)
}

func (l *lazyState) QueueRestore(ctx context.Context, r store.Restore) (int64, error) {
	st, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	return st.QueueRestore(ctx, r)
}

func (l *lazyState) PendingRestores(ctx context.Context, user string) ([]store.Restore, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.PendingRestores(ctx, user)
}

func (l *lazyState) FinishRestore(ctx context.Context, id int64, outcome string) error {
	st, err := l.get(ctx)
	if err != nil {
		return err
	}
	return st.FinishRestore(ctx, id, outcome)
}

// sharedStore is the bridge's store, opened at its first use and then
// shared by every feature (docs/operations.md): a bridge whose features
// need no state writes no file. A failed open is retried at the next use.
func (b *Bridge) sharedStore(ctx context.Context) (store.Store, error) {
	b.storeMu.Lock()
	defer b.storeMu.Unlock()
	if b.store == nil {
		st, err := OpenStore(ctx, &b.cfg)
		if err != nil {
			return nil, err
		}
		b.store = st
		b.closers = append(b.closers, func() { st.Close() })
	}
	return b.store, nil
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
	if cfg.StoreExplicit() || cfg.Demo {
		st, err := b.sharedStore(context.Background())
		if err != nil {
			return err
		}
		o.State, o.Passive = st, true
		return nil
	}
	o.State = &lazyState{open: b.sharedStore}
	return nil
}
