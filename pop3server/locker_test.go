package pop3server

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// sharedLocker is one lock table used by two servers, as a database-backed
// Locker is shared by replicas.
type sharedLocker struct {
	mu    sync.Mutex
	held  map[string]bool
	fail  error
	calls []string
}

func (l *sharedLocker) TryLock(_ context.Context, key string) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, key)
	if l.fail != nil {
		return nil, l.fail
	}
	if l.held[key] {
		return nil, ErrInUse
	}
	l.held[key] = true
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.held, key)
	}, nil
}

func (l *sharedLocker) isHeld(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held[key]
}

// TestLockerSharedByTwoServers: with a shared Locker, a session on one
// server makes a login on the other answer [IN-USE], and the lock is
// released when the holder's connection ends, however it ends.
func TestLockerSharedByTwoServers(t *testing.T) {
	locker := &sharedLocker{held: map[string]bool{}}
	b1, b2 := newFake(), newFake()
	_, addr1 := startServer(t, b1, Options{LockSession: true, Locker: locker})
	_, addr2 := startServer(t, b2, Options{LockSession: true, Locker: locker})

	c1 := dial(t, addr1)
	loginAlice(c1)
	if !locker.isHeld("alice") {
		t.Fatalf("lock keys %v: want alice held (keys ignore case)", locker.calls)
	}
	c2 := dial(t, addr2)
	c2.Send("USER alice")
	c2.Expect("+OK")
	c2.Send("PASS secret")
	c2.Expect("-ERR [IN-USE] maildrop already in use")

	c1.Conn().Close() // dropped, no QUIT
	waitFor(t, func() bool { return !locker.isHeld("alice") })
	c3 := dial(t, addr2)
	loginAlice(c3)
}

// TestLockerFailureIsTemporary: a lock service that fails (the database is
// down) gives [SYS/TEMP], never a session without its lock, and never
// leaks its error text to the client.
func TestLockerFailureIsTemporary(t *testing.T) {
	locker := &sharedLocker{held: map[string]bool{}, fail: errors.New("dial tcp 127.0.0.1:5432: connection refused")}
	b := newFake()
	_, addr := startServer(t, b, Options{LockSession: true, Locker: locker})
	c := dial(t, addr)
	c.Send("USER alice")
	c.Expect("+OK")
	c.Send("PASS secret")
	c.Expect("-ERR [SYS/TEMP] temporary failure, try again later")
	waitFor(t, func() bool { _, closes := b.snapshot(); return closes == 1 })
	c.Send("STAT")
	c.Expect("-ERR*")
}
