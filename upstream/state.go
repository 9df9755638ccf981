package upstream

import "github.com/popbridge/popbridge/store"

// State is the part of the durable store the sessions use for device
// views, the deletion journal, quarantine and restores (docs/policy.md).
// Times are UTC.
type State = store.SessionState

// The store's record types.
type (
	Device       = store.Device
	DoneRecord   = store.DoneRecord
	JournalEntry = store.JournalEntry
	JournalQuery = store.JournalQuery
	Restore      = store.Restore
)
