package oauth

import (
	"context"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Store is what this package needs from the state store (package store):
// one row per enrolled mailbox, device credentials, and a lock. It is
// declared here, with the store's method names, so the package depends
// on the behaviour only.
type Store interface {
	GetMailbox(ctx context.Context, mailbox string) (Mailbox, error)
	ListMailboxes(ctx context.Context) ([]Mailbox, error)
	// PutMailbox writes m if the stored version is m.Version (0: create)
	// and returns it with its new version; else ErrConflict.
	PutMailbox(ctx context.Context, m Mailbox) (Mailbox, error)
	DeleteMailbox(ctx context.Context, mailbox string) error
	PutDeviceCredential(ctx context.Context, c DeviceCredential) error
	DeviceCredentials(ctx context.Context, mailbox string) ([]DeviceCredential, error)
	DeleteDeviceCredential(ctx context.Context, mailbox, device string) error
	// Lock takes a lock shared by every process on this store, or returns
	// ErrLocked at once when another holder has it.
	Lock(ctx context.Context, key string) (release func(), err error)
}

// Errors a Store returns (possibly wrapped): the state store's own.
var (
	ErrNotFound = store.ErrNotFound
	ErrConflict = store.ErrConflict
	ErrLocked   = store.ErrLocked
)

// Mailbox is one enrolled mailbox.
type Mailbox struct {
	Mailbox  string // the login name, as the admin enrolled it
	Provider string // the provider's name in the config file
	Mode     string // ModeUser or ModeApp
	// SealedGrant is the sealed JSON of a Grant (ModeUser); empty in
	// ModeApp, where the mailbox is only allow-listed.
	SealedGrant []byte
	// NeedsReenroll is set when the grant is no longer accepted; logins
	// then fail with [SYS/PERM] until the admin enrolls again.
	NeedsReenroll bool
	// LastError says why, without secrets: an OAuth error code or the
	// upstream's refusal status.
	LastError string
	Version   int64
	UpdatedAt time.Time
}

// DeviceCredential is one named device password of a mailbox (Hash is an
// Argon2id PHC string).
type DeviceCredential = store.DeviceCredential

// Auth modes (the auth: key of the config file).
const (
	ModePassthrough = "passthrough"
	ModeUser        = "oauth2-user"
	ModeApp         = "oauth2-app"
)
