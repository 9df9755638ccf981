package bridge

import (
	"context"
	"errors"

	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/store"
)

// sessionLocker is --lock-session's lock service: the state store's locks
// when a store is configured explicitly (PostgreSQL advisory locks, so one
// session per user across every replica sharing the database, freed by
// the database when a replica dies; SQLite's are per process), and nil
// otherwise, which leaves pop3server's per-process table.
func (b *Bridge) sessionLocker() pop3server.SessionLocker {
	if !b.cfg.LockSession || b.cfg.Store == "none" || !b.cfg.StoreExplicit() {
		return nil
	}
	return storeLocker{b.sharedStore()}
}

// storeLocker adapts store.Store.Lock to pop3server.SessionLocker.
type storeLocker struct{ s store.Store }

func (l storeLocker) TryLock(ctx context.Context, key string) (func(), error) {
	release, err := l.s.Lock(ctx, "session:"+key)
	if errors.Is(err, store.ErrLocked) {
		return nil, pop3server.ErrInUse
	}
	return release, err
}
