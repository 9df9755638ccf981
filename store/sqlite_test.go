package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/store/storetest"
)

// childEnv makes the test binary a second writer process (see TestMain).
const childEnv = "POPBRIDGE_STORE_TEST_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		if err := writer(context.Background(), "sqlite:"+path, os.Getenv(childEnv+"_NAME")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if url := os.Getenv(lockChildEnv); url != "" {
		fmt.Fprintln(os.Stderr, lockHolder(url))
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func openSQLiteFile(t *testing.T) (store.Store, func() store.Store) {
	dir := t.TempDir()
	open := func() store.Store {
		s, err := store.Open(t.Context(), "sqlite:state.db", dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	t.Cleanup(func() { _ = s.Close() })
	return s, open
}

func TestConformanceSQLiteMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		s, err := store.Open(t.Context(), "sqlite::memory:", "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s, nil
	})
}

func TestConformanceSQLiteFile(t *testing.T) {
	storetest.Run(t, openSQLiteFile)
}

// writerRounds is how many journal appends and counter increments each
// writer process makes.
const writerRounds = 100

// writer is one of the processes of TestSQLiteTwoProcesses: it appends
// journal entries and increments a counter in a mailbox row by
// compare-and-swap, retrying on conflict.
func writer(ctx context.Context, url, name string) error {
	s, err := store.Open(ctx, url, "")
	if err != nil {
		return err
	}
	defer s.Close()
	for i := range writerRounds {
		if _, err := s.AppendJournal(ctx, []store.JournalEntry{{User: name, UID: uint32(i), Time: time.Now()}}); err != nil {
			return fmt.Errorf("%s: append: %w", name, err)
		}
		for {
			m, err := s.GetMailbox(ctx, "counter")
			if errors.Is(err, store.ErrNotFound) {
				m, err = store.Mailbox{Mailbox: "counter"}, nil // the first writer creates it
			}
			if err != nil {
				return fmt.Errorf("%s: get: %w", name, err)
			}
			n := 0
			fmt.Sscan(string(m.SealedGrant), &n)
			m.SealedGrant = fmt.Append(nil, n+1)
			if _, err = s.PutMailbox(ctx, m); err == nil {
				break
			}
			if !errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("%s: put: %w", name, err)
			}
		}
	}
	return nil
}

// TestSQLiteTwoProcesses: two other processes and this one write to one
// SQLite file at once (WAL, busy timeout): no write is lost, no increment
// of the compare-and-swap counter either.
func TestSQLiteTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "shared.db")
	// The children race to create and migrate the file too.
	var children []*exec.Cmd
	for i := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+path, fmt.Sprintf("%s_NAME=child%d", childEnv, i))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, cmd)
	}
	s, err := store.Open(t.Context(), "sqlite:"+path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := writer(t.Context(), "sqlite:"+path, "parent"); err != nil {
		t.Fatal(err)
	}
	for _, c := range children {
		if err := c.Wait(); err != nil {
			t.Fatalf("writer process: %v", err)
		}
	}
	all, err := s.Journal(t.Context(), store.JournalQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3*writerRounds {
		t.Fatalf("%d journal entries, want %d", len(all), 3*writerRounds)
	}
	m, err := s.GetMailbox(t.Context(), "counter")
	if err != nil {
		t.Fatal(err)
	}
	if string(m.SealedGrant) != fmt.Sprint(3*writerRounds) || m.Version != 3*writerRounds {
		t.Fatalf("counter %s at version %d, want %d at %d", m.SealedGrant, m.Version, 3*writerRounds, 3*writerRounds)
	}
}

func TestSQLiteFileIsPrivateAndWAL(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(t.Context(), "sqlite:popbridge.db", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(filepath.Join(dir, "popbridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "popbridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q (%v), want wal", mode, err)
	}
}

// TestSQLiteKeepsStateAcrossReopen: what one handle wrote, the next one
// opened on the file reads (a popbridge restart).
func TestSQLiteKeepsStateAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(t.Context(), "sqlite:state.db", dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutUIDLs(t.Context(), "alice", []store.UIDLRecord{{UIDValidity: 1, UID: 2, UIDL: "x"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = store.Open(t.Context(), "sqlite:"+filepath.Join(dir, "state.db"), "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := s.UIDLMap(t.Context(), "alice")
	if err != nil || len(m) != 1 || m[0].UIDL != "x" {
		t.Fatalf("after reopening: %+v, %v", m, err)
	}
}

// TestSchemaTooNew: a database migrated by a newer popbridge is refused at
// open, and left as it was.
func TestSchemaTooNew(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(t.Context(), "sqlite:state.db", dir)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, true)"); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	_, err = store.Open(t.Context(), "sqlite:state.db", dir)
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("open: %v, want ErrSchemaTooNew", err)
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "99999") {
		t.Fatalf("error %q: want one line naming the version", err)
	}
}

func TestOpenURLs(t *testing.T) {
	_, err := store.Open(t.Context(), "none", "")
	if !errors.Is(err, store.ErrDisabled) || !strings.Contains(err.Error(), "--store") {
		t.Fatalf("none: %v", err)
	}
	for _, bad := range []string{"", "mysql://x", "sqlite:", "sqlite:x.db?mode=ro", "postgres://u:secret@%zz/db"} {
		_, err := store.Open(t.Context(), bad, "")
		if err == nil || errors.Is(err, store.ErrDisabled) {
			t.Fatalf("%q: %v, want an error", bad, err)
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%q: error %q shows the password or has several lines", bad, err)
		}
		if err := store.CheckURL(bad, ""); err == nil {
			t.Fatalf("CheckURL(%q) passed", bad)
		}
	}
	_, err = store.Open(t.Context(), "sqlite:state.db", filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "data directory") {
		t.Fatalf("missing data directory: %v", err)
	}
	// An unreachable PostgreSQL: one line, no password, ErrUnavailable-free
	// but clear. Port 1 on loopback refuses at once.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = store.Open(ctx, "postgres://popbridge:secret@127.0.0.1:1/popbridge?connect_timeout=5", "")
	if err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("unreachable PostgreSQL: %q", err)
	}
	for _, good := range []string{"none", "sqlite::memory:", "sqlite:popbridge.db", "sqlite:/var/lib/popbridge/x.db", "postgres://u@127.0.0.1/db", "postgresql://u:p@h/db?sslmode=disable"} {
		if err := store.CheckURL(good, "/tmp"); err != nil {
			t.Fatalf("CheckURL(%q): %v", good, err)
		}
	}
	if p, _ := store.SQLitePath("sqlite:popbridge.db", "/var/lib/popbridge"); p != "/var/lib/popbridge/popbridge.db" {
		t.Fatalf("relative path: %q", p)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable":   "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db":                               "postgres://u@h/db",
		"postgres://h/db?user=u&password=secret&x=1":      "postgres://h/db?user=u&password=xxxxx&x=1",
		"postgres://u:p@ss@h/db":                          "postgres://u:xxxxx@h/db",
		"sqlite:popbridge.db":                             "sqlite:popbridge.db",
		"postgresql://u:secret@h/db?password=secret#frag": "postgresql://u:xxxxx@h/db?password=xxxxx#frag",
	} {
		if got := store.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSQLiteOnlineBackup: the online backup docs/operations.md gives
// (VACUUM INTO from another connection while popbridge runs) is a
// complete store that opens as one, WAL contents included.
func TestSQLiteOnlineBackup(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(t.Context(), "sqlite:popbridge.db", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.AppendJournal(t.Context(), []store.JournalEntry{{User: "alice", UID: 7}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutMailbox(t.Context(), store.Mailbox{Mailbox: "alice", SealedGrant: []byte("sealed")}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "popbridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	backup := filepath.Join(dir, "backup.db")
	if _, err := db.Exec("VACUUM INTO ?", backup); err != nil {
		t.Fatal(err)
	}
	b, err := store.Open(t.Context(), "sqlite:"+backup, "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	j, err := b.Journal(t.Context(), store.JournalQuery{User: "alice"})
	if err != nil || len(j) != 1 || j[0].UID != 7 {
		t.Fatalf("journal in the backup: %+v, %v", j, err)
	}
	m, err := b.GetMailbox(t.Context(), "alice")
	if err != nil || string(m.SealedGrant) != "sealed" {
		t.Fatalf("mailbox in the backup: %+v, %v", m, err)
	}
}

// waitPing waits until s answers a ping, failing the test after a minute
// (conditions, not durations: the machine may be busy).
func waitPing(t *testing.T, s store.Store, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := s.Ping(t.Context())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
