package bridge

import (
	"context"
	"errors"

	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/store"
)

// sessionLocker is the --lock-session lock for several replicas: with a
// PostgreSQL store the lock is a PostgreSQL advisory lock, so a second
// session on any replica gets [IN-USE], and PostgreSQL frees the lock when
// the holder's database connection ends — a killed replica leaves none
// (docs/operations.md, "Several replicas"). With SQLite or no store,
// pop3server's own per-process table is enough and nil is returned.
func (b *Bridge) sessionLocker() pop3server.SessionLocker {
	if !b.cfg.LockSession || !b.cfg.StoreExplicit() || !store.Shared(b.cfg.Store) {
		return nil
	}
	return storeLocker{b.sharedStore()}
}

// storeLocker adapts the store's locks to pop3server's.
type storeLocker struct{ st store.Store }

// lockPrefix keeps session locks apart from any other lock in the store.
const lockPrefix = "pop3-session:"

func (l storeLocker) TryLock(ctx context.Context, key string) (func(), error) {
	release, err := l.st.Lock(ctx, lockPrefix+key)
	if errors.Is(err, store.ErrLocked) {
		return nil, pop3server.ErrInUse
	}
	return release, err
}
