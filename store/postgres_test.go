package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/store/storetest"
)

// lockChildEnv makes the test binary a process that holds a session lock
// until it is killed (see TestMain).
const lockChildEnv = "POPBRIDGE_STORE_TEST_LOCK"

func openPostgres(t *testing.T, url string) store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), url, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformancePostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		url := pg.NewDatabase(t)
		s := openPostgres(t, url)
		t.Cleanup(func() { _ = s.Close() })
		return s, func() store.Store { return openPostgres(t, url) }
	})
}

// TestPostgresRestart: the server restarts under an open store; the store
// works again afterwards without being reopened, and kept its data.
func TestPostgresRestart(t *testing.T) {
	pg := testenv.StartPostgres(t)
	s := openPostgres(t, pg.NewDatabase(t))
	defer s.Close()
	ids, err := s.AppendJournal(t.Context(), []store.JournalEntry{{User: "alice", UID: 1}})
	if err != nil {
		t.Fatal(err)
	}
	release, err := s.Lock(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}

	pg.Kill() // immediate: connections die without a goodbye
	if err := s.Ping(t.Context()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("ping with the server down: %v, want ErrUnavailable", err)
	}
	_, err = s.AppendJournal(t.Context(), []store.JournalEntry{{User: "alice", UID: 2}})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("journal with the server down: %v, want ErrUnavailable", err)
	}
	pg.Start(t)

	// Connections the pool held died with the server: the pool replaces
	// them. Wait for the condition, not for a duration.
	waitPing(t, s, "store still down after the server came back")
	// Every connection of the pool must be usable again: as many
	// operations as the pool has connections, at once.
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			_, err := s.AppendJournal(t.Context(), []store.JournalEntry{{User: "bob", UID: uint32(i)}})
			errs <- err
		}()
	}
	failures := 0
	for range 16 {
		if err := <-errs; err != nil {
			failures++
			t.Logf("first use after the restart: %v", err)
		}
	}
	// A connection that died while idle is found out by its first use at
	// the latest; none may fail twice.
	for i := range 16 {
		if _, err := s.AppendJournal(t.Context(), []store.JournalEntry{{User: "bob", UID: uint32(100 + i)}}); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
	}
	all, err := s.Journal(t.Context(), store.JournalQuery{User: "alice"})
	if err != nil || len(all) != 1 || all[0].ID != ids[0] {
		t.Fatalf("journal kept across the restart: %+v, %v", all, err)
	}
	bob, err := s.Journal(t.Context(), store.JournalQuery{User: "bob"})
	if err != nil || len(bob) != 16+16-failures {
		t.Fatalf("bob: %d entries (%v), want %d", len(bob), err, 32-failures)
	}

	// The lock died with its connection; its release is harmless, and the
	// key can be locked again (on a new lock connection).
	release()
	rel, err := s.Lock(t.Context(), "alice")
	if err != nil {
		t.Fatalf("lock after the restart: %v", err)
	}
	rel()
}

// TestPostgresLockFreedByKill: a lock held by another process is refused
// here, and free as soon as that process is killed with SIGKILL (its
// connection ends, PostgreSQL frees its advisory locks).
func TestPostgresLockFreedByKill(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	s := openPostgres(t, url)
	defer s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+url)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("lock holder said %q, %v", line, err)
	}
	if _, err := s.Lock(t.Context(), "alice@example.com"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("lock held by another process: %v, want ErrLocked", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// PostgreSQL sees the connection close when the kernel closes the dead
	// process's socket; its backend then exits and frees the lock.
	deadline := time.Now().Add(30 * time.Second)
	for {
		release, err := s.Lock(t.Context(), "alice@example.com")
		if err == nil {
			release()
			break
		}
		if !errors.Is(err, store.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("lock after its holder was killed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockHolder is the process of TestPostgresLockFreedByKill: it takes the
// lock, says so, and waits to be killed.
func lockHolder(url string) error {
	s, err := store.Open(context.Background(), url, "")
	if err != nil {
		return err
	}
	if _, err := s.Lock(context.Background(), "alice@example.com"); err != nil {
		return err
	}
	fmt.Println("locked")
	select {}
}

// TestPostgresLazyDownAtFirstUse: a lazily opened store whose database is
// down at its first use answers ErrUnavailable, and works once the
// database is back, without being recreated.
func TestPostgresLazyDownAtFirstUse(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	pg.Kill()
	l := store.Lazy(url+"&connect_timeout=5", "", nil)
	defer l.Close()
	if err := l.Ping(t.Context()); !errors.Is(err, store.ErrUnavailable) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("database down: %v, want one line matching ErrUnavailable", err)
	}
	pg.Start(t)
	waitPing(t, l, "still down after the database came back")
	if _, err := l.PutMailbox(t.Context(), store.Mailbox{Mailbox: "a@x"}); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresReplicasMigrateTogether: replicas starting at once on an
// empty database take turns migrating it; every one opens.
func TestPostgresReplicasMigrateTogether(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	const n = 4
	errs := make(chan error, n)
	for range n {
		go func() {
			s, err := store.Open(t.Context(), url, "")
			if err == nil {
				_, err = s.PutMailbox(t.Context(), store.Mailbox{Mailbox: "a@x"})
				if errors.Is(err, store.ErrConflict) {
					err = nil // another replica created it first
				}
				s.Close()
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
