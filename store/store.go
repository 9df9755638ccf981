// Package store is popbridge's durable state behind one interface: OAuth2
// grants and device passwords, the UIDL continuity map, the device ledger,
// the deletion journal, queued restores and session locks.
//
// Two engines implement it and pass one conformance suite (store/storetest):
//
//   - SQLite (modernc.org/sqlite, pure Go, so CGO_ENABLED=0 builds keep
//     working): one file in WAL mode for a single node, or an in-memory
//     database for the demo and fast tests. Locks are per process.
//   - PostgreSQL (jackc/pgx/v5) for several replicas sharing state. Locks are
//     PostgreSQL advisory locks, so they hold across replicas and are freed
//     by the server when a replica dies.
//
// The schema is versioned and embedded (migrations/, applied with
// pressly/goose at open); migrations only ever add. A database whose schema
// is newer than this binary knows is refused at open (ErrSchemaTooNew)
// rather than written to.
//
// The store knows nothing of IMAP or POP3: keys, device names and outcomes
// are chosen by its callers. All times are stored with microsecond
// precision and returned in UTC. Any error other than the sentinel errors
// below means the store could not do the work: it matches ErrUnavailable,
// and a POP3 session answers it with -ERR [SYS/TEMP] (docs/operations.md).
package store

import (
	"context"
	"errors"
	"time"
)

// Store is the state shared by popbridge's stateful features. Its methods
// are safe for concurrent use. Every method that writes is atomic: it
// applies completely or not at all.
type Store interface {
	// Ping checks that the store answers (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store's connections and files. Locks still held
	// are released.
	Close() error

	// GetMailbox returns the OAuth2 row of mailbox, or ErrNotFound.
	GetMailbox(ctx context.Context, mailbox string) (Mailbox, error)
	// ListMailboxes returns every mailbox row, ordered by name.
	ListMailboxes(ctx context.Context) ([]Mailbox, error)
	// PutMailbox writes m if the stored version is still m.Version (0: the
	// row must not exist yet) and returns the row as stored, with the next
	// Version and UpdatedAt set. A concurrent writer that won gives
	// ErrConflict: re-read and decide again. This compare-and-swap is what
	// makes a token refresh single-flight across replicas.
	PutMailbox(ctx context.Context, m Mailbox) (Mailbox, error)
	// DeleteMailbox removes the mailbox row and its device credentials;
	// ErrNotFound when there is none.
	DeleteMailbox(ctx context.Context, mailbox string) error

	// PutDeviceCredential creates or replaces the credential of
	// (c.Mailbox, c.Device).
	PutDeviceCredential(ctx context.Context, c DeviceCredential) error
	// DeviceCredentials returns the credentials of mailbox, ordered by
	// device name; none is not an error.
	DeviceCredentials(ctx context.Context, mailbox string) ([]DeviceCredential, error)
	// DeleteDeviceCredential revokes one device; ErrNotFound when it has no
	// credential.
	DeleteDeviceCredential(ctx context.Context, mailbox, device string) error

	// UIDLMap returns every remembered UIDL of key (the caller's name for a
	// user's maildrop), ordered by UIDValidity then UID.
	UIDLMap(ctx context.Context, key string) ([]UIDLRecord, error)
	// PutUIDLs creates or replaces records by (key, UIDL): a UIDL is unique
	// per key, and putting it again moves it to the record's UIDValidity
	// and UID (a rematch after a mailbox rebuild).
	PutUIDLs(ctx context.Context, key string, recs []UIDLRecord) error
	// UIDLsFor returns the records of key that name one of uids under
	// uidValidity, or whose UIDL is one of uidls, in no particular order:
	// what giving UIDLs to new mail needs, without reading the whole map
	// of a large mailbox (docs/migration.md).
	UIDLsFor(ctx context.Context, key string, uidValidity uint32, uids []uint32, uidls []string) ([]UIDLRecord, error)

	// SessionState: device ledger, deletion journal, restores.
	SessionState

	// Lock takes the session lock named key without waiting: ErrLocked
	// when it is held, by this process or (PostgreSQL) by any replica.
	// release frees it and may be called more than once. A PostgreSQL lock
	// is also freed by the server when this process's lock connection
	// ends, so a killed replica leaves no lock behind.
	Lock(ctx context.Context, key string) (release func(), err error)
}

// SessionState is the part of the store a POP3 session uses for device
// views, the deletion journal, quarantine and restores (docs/policy.md);
// the upstream package asks for just this.
type SessionState interface {
	// TouchDevice records that device of key was seen at at (later times
	// only move LastSeen forward).
	TouchDevice(ctx context.Context, key, device string, at time.Time) error
	// Devices returns the devices of key, ordered by name.
	Devices(ctx context.Context, key string) ([]Device, error)
	// MarkDone records that device has deleted or downloaded uids of
	// uidValidity. Marking twice keeps the first time.
	MarkDone(ctx context.Context, key, device string, uidValidity uint32, uids []uint32, at time.Time) error
	// Done returns every device's marks for uidValidity of key, ordered by
	// UID then device.
	Done(ctx context.Context, key string, uidValidity uint32) ([]DoneRecord, error)
	// ForgetDone removes every device's marks of uids of uidValidity: the
	// messages left the mailbox, so the ledger need not hold them.
	ForgetDone(ctx context.Context, key string, uidValidity uint32, uids []uint32) error

	// AppendJournal writes entries (all or none) and returns their IDs in
	// order. An entry with no Outcome is stored as OutcomePending. This is
	// called before a change is applied upstream: an error means nothing
	// may be applied.
	AppendJournal(ctx context.Context, entries []JournalEntry) ([]int64, error)
	// SetJournalOutcome records what the upstream answered for ids.
	SetJournalOutcome(ctx context.Context, ids []int64, outcome string) error
	// Journal returns the entries matching q, oldest first.
	Journal(ctx context.Context, q JournalQuery) ([]JournalEntry, error)
	// PruneJournal deletes entries older than before and returns how many.
	PruneJournal(ctx context.Context, before time.Time) (int64, error)

	// QueueRestore stores a restore to apply at the user's next login and
	// returns its ID. Its Outcome is OutcomePending.
	QueueRestore(ctx context.Context, r Restore) (int64, error)
	// PendingRestores returns the restores of user still pending, oldest
	// first.
	PendingRestores(ctx context.Context, user string) ([]Restore, error)
	// FinishRestore records the outcome of a restore; ErrNotFound when
	// there is no such restore.
	FinishRestore(ctx context.Context, id int64, outcome string) error
}

// Errors the callers act on. Errors from the engine (a file that cannot be
// written, a database that is down) match ErrUnavailable instead.
var (
	// ErrNotFound: the row asked for does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: PutMailbox lost a compare-and-swap race.
	ErrConflict = errors.New("store: version conflict")
	// ErrLocked: Lock found the key held.
	ErrLocked = errors.New("store: locked")
	// ErrUnavailable is matched by every error of the engine itself: the
	// store could not be reached or could not do the work. Sessions answer
	// it with -ERR [SYS/TEMP] and apply no change that needed it.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrDisabled is returned by Open for the URL "none": the admin chose
	// no state. A feature that needs the store refuses to start with an
	// error naming the --store flag.
	ErrDisabled = errors.New("store: disabled (--store none)")
	// ErrSchemaTooNew: the database was migrated by a newer popbridge.
	// Nothing is written to it; run the newer binary or restore a backup.
	ErrSchemaTooNew = errors.New("store: database schema is newer than this popbridge")
)

// Outcomes the store itself sets; callers use their own words too (e.g.
// "applied", "failed", "dry-run").
const (
	// OutcomePending is a journal entry written before its change was
	// applied, or a restore not yet done.
	OutcomePending = "pending"
)

// Mailbox is one OAuth2-enrolled mailbox (oauth/).
type Mailbox struct {
	// Mailbox is the mailbox's login name, e.g. alice@example.com.
	Mailbox string
	// Provider is the name of the provider in the config file.
	Provider string
	// State is the grant's state as oauth/ names it (e.g. active,
	// reenroll); the store does not interpret it.
	State string
	// SealedGrant is the grant, sealed by oauth/; opaque to the store.
	SealedGrant []byte
	// Version counts writes: PutMailbox compares it and returns the next.
	Version int64
	// UpdatedAt is set by PutMailbox.
	UpdatedAt time.Time
}

// DeviceCredential is one named device's password for a mailbox.
type DeviceCredential struct {
	Mailbox string
	Device  string
	// Hash is the password's PHC string (Argon2id); never the password.
	Hash      string
	CreatedAt time.Time
}

// UIDLRecord is one UIDL shown for a message and the fingerprint that
// finds the message again after its UIDValidity changed (docs/policy.md).
type UIDLRecord struct {
	UIDValidity uint32
	UID         uint32
	UIDL        string
	Size        int64
	// MessageID and Date are the header values as the caller normalized
	// them; empty when the message has none.
	MessageID string
	Date      string
	// HeaderHash is the caller's hash of the header (e.g. hex SHA-256).
	HeaderHash string
}

// Device is one device of a shared mailbox and when it was last seen.
type Device struct {
	Name     string
	LastSeen time.Time
}

// DoneRecord says that Device has deleted or downloaded UID.
type DoneRecord struct {
	Device      string
	UIDValidity uint32
	UID         uint32
	At          time.Time
}

// JournalEntry is one change to the upstream mailbox, written before it is
// applied (docs/policy.md).
type JournalEntry struct {
	// ID is assigned by AppendJournal.
	ID         int64
	Time       time.Time
	User       string
	Device     string
	ClientAddr string
	SessionID  string
	// Mailbox is the IMAP mailbox the message was in.
	Mailbox     string
	UIDValidity uint32
	UID         uint32
	MessageID   string
	Date        string
	Size        int64
	Policy      string
	Action      string
	// Outcome is OutcomePending until SetJournalOutcome.
	Outcome string
	// Detail is free text for the admin: the destination of a move, the
	// upstream's refusal.
	Detail string
}

// JournalQuery selects journal entries; zero fields do not filter.
type JournalQuery struct {
	User      string
	Device    string
	MessageID string
	// Since and Until bound Time: Since <= Time < Until.
	Since, Until time.Time
	// Limit caps the number of entries (the newest are dropped).
	Limit int
}

// Restore is a restore from quarantine queued until the user's next login.
// It selects the user's quarantined messages by Since, by MessageID, or by
// the journal entry that quarantined them (zero fields do not filter).
type Restore struct {
	// ID is assigned by QueueRestore.
	ID          int64
	User        string
	Since       time.Time
	MessageID   string
	JournalID   int64
	RequestedAt time.Time
	// Outcome is OutcomePending until FinishRestore.
	Outcome    string
	FinishedAt time.Time
}
