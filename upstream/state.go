package upstream

import (
	"context"
	"time"
)

// State is the part of the durable store (store.Store) the sessions use
// for device views, the deletion journal, quarantine and restores
// (docs/policy.md). Times are UTC.
type State interface {
	TouchDevice(ctx context.Context, key, device string, at time.Time) error
	Devices(ctx context.Context, key string) ([]Device, error)
	MarkDone(ctx context.Context, key, device string, uidValidity uint32, uids []uint32, at time.Time) error
	Done(ctx context.Context, key string, uidValidity uint32) ([]DoneRecord, error)

	AppendJournal(ctx context.Context, entries []JournalEntry) ([]int64, error)
	SetJournalOutcome(ctx context.Context, ids []int64, outcome string) error
	Journal(ctx context.Context, q JournalQuery) ([]JournalEntry, error)
	PruneJournal(ctx context.Context, before time.Time) (int64, error)

	QueueRestore(ctx context.Context, r Restore) (int64, error)
	PendingRestores(ctx context.Context, user string) ([]Restore, error)
	FinishRestore(ctx context.Context, id int64, outcome string) error
}

// The store's record types (see the store package).
type (
	// Device is one device of a shared mailbox and when it was last seen.
	Device struct {
		Name     string
		LastSeen time.Time
	}
	// DoneRecord says that Device has deleted or downloaded UID.
	DoneRecord struct {
		Device      string
		UIDValidity uint32
		UID         uint32
		At          time.Time
	}
	// JournalEntry is one change to the upstream mailbox, written before
	// it is applied.
	JournalEntry struct {
		ID          int64
		Time        time.Time
		User        string
		Device      string
		ClientAddr  string
		SessionID   string
		Mailbox     string
		UIDValidity uint32
		UID         uint32
		MessageID   string
		Date        string
		Size        int64
		Policy      string
		Action      string
		Outcome     string
		Detail      string
	}
	// JournalQuery selects journal entries; zero fields do not filter.
	JournalQuery struct {
		User         string
		Device       string
		MessageID    string
		Since, Until time.Time
		Limit        int
	}
	// Restore is a restore from quarantine queued until the user's next
	// login.
	Restore struct {
		ID          int64
		User        string
		Since       time.Time
		MessageID   string
		JournalID   int64
		RequestedAt time.Time
		Outcome     string
		FinishedAt  time.Time
	}
)
