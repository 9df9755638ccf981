package store

import (
	"context"
	"errors"
	"time"
)

// Observer is told of every store operation: its name (e.g. "put_mailbox"),
// how long it took, and its error (nil on success). The assembly turns it
// into Prometheus metrics (latency histogram, errors by ErrorKind); the
// store itself knows no metrics library. It must be safe for concurrent
// use and quick.
type Observer interface {
	ObserveStore(op string, took time.Duration, err error)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(op string, took time.Duration, err error)

// ObserveStore calls f.
func (f ObserverFunc) ObserveStore(op string, took time.Duration, err error) { f(op, took, err) }

// ErrorKind names err for a metric label: "" for nil; "not_found",
// "conflict" and "locked" for the answers callers expect; "disabled",
// "schema_too_new" and "unavailable" for a store that could not do the work.
func ErrorKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrLocked):
		return "locked"
	case errors.Is(err, ErrDisabled):
		return "disabled"
	case errors.Is(err, ErrSchemaTooNew):
		return "schema_too_new"
	}
	return "unavailable"
}

// wrapper is a Store that finds its engine with get at each call and
// reports each call to observer (when not nil); LazyStore is one.
type wrapper struct {
	get      func(ctx context.Context) (Store, error)
	close    func() error
	observer Observer
}

// do runs fn on the engine and reports it as op.
func (w *wrapper) do(ctx context.Context, op string, fn func(Store) error) error {
	start := time.Now()
	s, err := w.get(ctx)
	if err == nil {
		err = fn(s)
	}
	if w.observer != nil {
		w.observer.ObserveStore(op, time.Since(start), err)
	}
	return err
}

func (w *wrapper) Close() error { return w.close() }

func (w *wrapper) Ping(ctx context.Context) error {
	return w.do(ctx, "ping", func(s Store) error { return s.Ping(ctx) })
}

func (w *wrapper) GetMailbox(ctx context.Context, mailbox string) (m Mailbox, err error) {
	err = w.do(ctx, "get_mailbox", func(s Store) (err error) { m, err = s.GetMailbox(ctx, mailbox); return })
	return m, err
}

func (w *wrapper) ListMailboxes(ctx context.Context) (ms []Mailbox, err error) {
	err = w.do(ctx, "list_mailboxes", func(s Store) (err error) { ms, err = s.ListMailboxes(ctx); return })
	return ms, err
}

func (w *wrapper) PutMailbox(ctx context.Context, m Mailbox) (out Mailbox, err error) {
	err = w.do(ctx, "put_mailbox", func(s Store) (err error) { out, err = s.PutMailbox(ctx, m); return })
	return out, err
}

func (w *wrapper) DeleteMailbox(ctx context.Context, mailbox string) error {
	return w.do(ctx, "delete_mailbox", func(s Store) error { return s.DeleteMailbox(ctx, mailbox) })
}

func (w *wrapper) PutDeviceCredential(ctx context.Context, c DeviceCredential) error {
	return w.do(ctx, "put_device_credential", func(s Store) error { return s.PutDeviceCredential(ctx, c) })
}

func (w *wrapper) DeviceCredentials(ctx context.Context, mailbox string) (cs []DeviceCredential, err error) {
	err = w.do(ctx, "device_credentials", func(s Store) (err error) { cs, err = s.DeviceCredentials(ctx, mailbox); return })
	return cs, err
}

func (w *wrapper) DeleteDeviceCredential(ctx context.Context, mailbox, device string) error {
	return w.do(ctx, "delete_device_credential", func(s Store) error { return s.DeleteDeviceCredential(ctx, mailbox, device) })
}

func (w *wrapper) UIDLMap(ctx context.Context, key string) (recs []UIDLRecord, err error) {
	err = w.do(ctx, "uidl_map", func(s Store) (err error) { recs, err = s.UIDLMap(ctx, key); return })
	return recs, err
}

func (w *wrapper) PutUIDLs(ctx context.Context, key string, recs []UIDLRecord) error {
	return w.do(ctx, "put_uidls", func(s Store) error { return s.PutUIDLs(ctx, key, recs) })
}

func (w *wrapper) UIDLsFor(ctx context.Context, key string, uidValidity uint32, uids []uint32, uidls []string) (recs []UIDLRecord, err error) {
	err = w.do(ctx, "uidls_for", func(s Store) (err error) { recs, err = s.UIDLsFor(ctx, key, uidValidity, uids, uidls); return })
	return recs, err
}

func (w *wrapper) TouchDevice(ctx context.Context, key, device string, at time.Time) error {
	return w.do(ctx, "touch_device", func(s Store) error { return s.TouchDevice(ctx, key, device, at) })
}

func (w *wrapper) Devices(ctx context.Context, key string) (ds []Device, err error) {
	err = w.do(ctx, "devices", func(s Store) (err error) { ds, err = s.Devices(ctx, key); return })
	return ds, err
}

func (w *wrapper) MarkDone(ctx context.Context, key, device string, uidValidity uint32, uids []uint32, at time.Time) error {
	return w.do(ctx, "mark_done", func(s Store) error { return s.MarkDone(ctx, key, device, uidValidity, uids, at) })
}

func (w *wrapper) Done(ctx context.Context, key string, uidValidity uint32) (ds []DoneRecord, err error) {
	err = w.do(ctx, "done", func(s Store) (err error) { ds, err = s.Done(ctx, key, uidValidity); return })
	return ds, err
}

func (w *wrapper) ForgetDone(ctx context.Context, key string, uidValidity uint32, uids []uint32) error {
	return w.do(ctx, "forget_done", func(s Store) error { return s.ForgetDone(ctx, key, uidValidity, uids) })
}

func (w *wrapper) AppendJournal(ctx context.Context, entries []JournalEntry) (ids []int64, err error) {
	err = w.do(ctx, "append_journal", func(s Store) (err error) { ids, err = s.AppendJournal(ctx, entries); return })
	return ids, err
}

func (w *wrapper) SetJournalOutcome(ctx context.Context, ids []int64, outcome string) error {
	return w.do(ctx, "set_journal_outcome", func(s Store) error { return s.SetJournalOutcome(ctx, ids, outcome) })
}

func (w *wrapper) Journal(ctx context.Context, q JournalQuery) (es []JournalEntry, err error) {
	err = w.do(ctx, "journal", func(s Store) (err error) { es, err = s.Journal(ctx, q); return })
	return es, err
}

func (w *wrapper) PruneJournal(ctx context.Context, before time.Time) (n int64, err error) {
	err = w.do(ctx, "prune_journal", func(s Store) (err error) { n, err = s.PruneJournal(ctx, before); return })
	return n, err
}

func (w *wrapper) QueueRestore(ctx context.Context, r Restore) (id int64, err error) {
	err = w.do(ctx, "queue_restore", func(s Store) (err error) { id, err = s.QueueRestore(ctx, r); return })
	return id, err
}

func (w *wrapper) PendingRestores(ctx context.Context, user string) (rs []Restore, err error) {
	err = w.do(ctx, "pending_restores", func(s Store) (err error) { rs, err = s.PendingRestores(ctx, user); return })
	return rs, err
}

func (w *wrapper) FinishRestore(ctx context.Context, id int64, outcome string) error {
	return w.do(ctx, "finish_restore", func(s Store) error { return s.FinishRestore(ctx, id, outcome) })
}

func (w *wrapper) Lock(ctx context.Context, key string) (release func(), err error) {
	err = w.do(ctx, "lock", func(s Store) (err error) { release, err = s.Lock(ctx, key); return })
	return release, err
}
