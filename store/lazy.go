package store

import (
	"context"
	"errors"
	"sync"
	"time"
)

// lazyRetry is how long a failed open is answered from memory before the
// next use tries again: a database that is down is not dialled by every
// login at once.
const lazyRetry = time.Second

// errClosed is the error of a LazyStore used after Close.
var errClosed = errors.New("store closed")

// LazyStore is a Store that opens its URL at first use, so that a bridge
// using no stateful feature creates no file and opens no connection. A
// failed open is retried at a later use (at most once per second), so a
// database that was down at the first use is picked up once it is back.
// Open errors match ErrUnavailable (ErrDisabled and ErrSchemaTooNew stay
// what they are).
type LazyStore struct {
	wrapper
	url, dataDir string

	mu       sync.Mutex
	s        Store
	closed   bool
	failedAt time.Time
	failErr  error
}

// Lazy returns a LazyStore for Open(ctx, url, dataDir); o, when not nil,
// is told of every operation (including a failed open, as the operation
// that needed it).
func Lazy(url, dataDir string, o Observer) *LazyStore {
	l := &LazyStore{url: url, dataDir: dataDir}
	l.wrapper = wrapper{get: l.open, close: l.closeStore, observer: o}
	return l
}

// Open opens the store now if it is not open yet; for a configuration
// that needs the store from the start, so that a store that cannot be
// opened is a startup error rather than a failure at the first session.
func (l *LazyStore) Open(ctx context.Context) error {
	_, err := l.open(ctx)
	return err
}

// Opened reports whether the store has been opened.
func (l *LazyStore) Opened() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s != nil
}

// URL returns the store's URL with any password redacted.
func (l *LazyStore) URL() string { return Redact(l.url) }

func (l *LazyStore) open(ctx context.Context) (Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.s != nil:
		return l.s, nil
	case l.closed:
		return nil, wrap("open", errClosed)
	case l.failErr != nil && time.Since(l.failedAt) < lazyRetry:
		return nil, l.failErr
	}
	s, err := Open(ctx, l.url, l.dataDir)
	if err != nil {
		l.failedAt, l.failErr = time.Now(), wrap("", err)
		return nil, l.failErr
	}
	l.s, l.failErr = s, nil
	return s, nil
}

func (l *LazyStore) closeStore() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.s == nil {
		return nil
	}
	err := l.s.Close()
	l.s = nil
	return err
}
