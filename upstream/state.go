package upstream

import (
	"context"
	"time"

	"github.com/popbridge/popbridge/store"
)

var _ State = store.Store(nil)

// State is the part of the durable store the sessions use for device
// views, the deletion journal, quarantine and restores (docs/policy.md);
// store.Store implements it. Times are UTC.
type State interface {
	TouchDevice(ctx context.Context, key, device string, at time.Time) error
	Devices(ctx context.Context, key string) ([]Device, error)
	MarkDone(ctx context.Context, key, device string, uidValidity uint32, uids []uint32, at time.Time) error
	Done(ctx context.Context, key string, uidValidity uint32) ([]DoneRecord, error)
	ForgetDone(ctx context.Context, key string, uidValidity uint32, uids []uint32) error

	AppendJournal(ctx context.Context, entries []JournalEntry) ([]int64, error)
	SetJournalOutcome(ctx context.Context, ids []int64, outcome string) error
	Journal(ctx context.Context, q JournalQuery) ([]JournalEntry, error)
	PruneJournal(ctx context.Context, before time.Time) (int64, error)

	QueueRestore(ctx context.Context, r Restore) (int64, error)
	PendingRestores(ctx context.Context, user string) ([]Restore, error)
	FinishRestore(ctx context.Context, id int64, outcome string) error
}

// The store's record types.
type (
	Device       = store.Device
	DoneRecord   = store.DoneRecord
	JournalEntry = store.JournalEntry
	JournalQuery = store.JournalQuery
	Restore      = store.Restore
)
