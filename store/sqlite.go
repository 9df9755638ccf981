package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go
)

// sqliteBusyTimeoutMS is how long a statement waits for another process's
// (or connection's) write lock before failing.
const sqliteBusyTimeoutMS = 10000

// openSQLite opens (creating when missing) the SQLite file at path, or a
// private in-memory database when path is empty, and migrates it.
func openSQLite(ctx context.Context, path string) (Store, error) {
	var dsn string
	if path == "" {
		// Every connection to ":memory:" is a database of its own: one
		// connection, so all callers see the same one.
		dsn = "file::memory:?" + sqlitePragmas()
	} else {
		if err := createPrivate(path); err != nil {
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
		dsn = "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + sqlitePragmas()
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", sqliteName(path), err)
	}
	if path == "" {
		db.SetMaxOpenConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
	} else {
		// WAL: readers do not block the writer; SQLite itself serializes
		// writers (across processes too), waiting up to the busy timeout.
		db.SetMaxOpenConns(8)
	}
	if err := migrate(ctx, db, "sqlite"); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", sqliteName(path), err)
	}
	return &sqlStore{db: db, locks: newLocalLocks(sqliteLockTable(path))}, nil
}

// sqlitePragmas is the DSN query every connection runs with: WAL (one
// writer, readers alongside, across processes), a busy timeout instead of
// an immediate SQLITE_BUSY, write transactions that take the write lock at
// BEGIN (so two of them never deadlock upgrading), durable commits, and
// foreign keys.
func sqlitePragmas() string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeoutMS))
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a committed journal entry survives a power loss too, as the
	// delete it announces does upstream (NORMAL could lose the last ones).
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	return q.Encode()
}

// createPrivate creates the database file with mode 0600 when it does not
// exist (SQLite gives its -wal and -shm files the same mode): it holds
// password hashes and sealed grants. Its directory must exist: it is the
// data directory an admin chose.
func createPrivate(path string) error {
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

func sqliteName(path string) string {
	if path == "" {
		return "sqlite::memory:"
	}
	return path
}

// lockTable is the set of keys locked in this process on one database.
type lockTable struct {
	mu   sync.Mutex
	held map[string]bool
}

func newLockTable() *lockTable { return &lockTable{held: map[string]bool{}} }

func (lt *lockTable) tryLock(key string) bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if lt.held[key] {
		return false
	}
	lt.held[key] = true
	return true
}

func (lt *lockTable) unlock(key string) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	delete(lt.held, key)
}

// sqliteLockTables shares one lockTable among the handles this process has
// open on one SQLite file, so that they exclude each other.
var sqliteLockTables = struct {
	sync.Mutex
	byPath map[string]*lockTable
}{byPath: map[string]*lockTable{}}

func sqliteLockTable(path string) *lockTable {
	if path == "" {
		return newLockTable() // in memory: the database is this handle's alone
	}
	sqliteLockTables.Lock()
	defer sqliteLockTables.Unlock()
	lt := sqliteLockTables.byPath[path]
	if lt == nil {
		lt = newLockTable()
		sqliteLockTables.byPath[path] = lt
	}
	return lt
}

// localLocks are one handle's session locks in a lockTable: SQLite's locks,
// and the first level of PostgreSQL's (PostgreSQL lets one connection take
// its own advisory lock twice). Close frees the locks the handle still
// holds.
type localLocks struct {
	table *lockTable
	mu    sync.Mutex
	mine  map[string]bool
}

func newLocalLocks(table *lockTable) *localLocks {
	return &localLocks{table: table, mine: map[string]bool{}}
}

func (l *localLocks) lock(_ context.Context, key string) (func(), error) {
	if !l.tryLock(key) {
		return nil, ErrLocked
	}
	return sync.OnceFunc(func() { l.unlock(key) }), nil
}

func (l *localLocks) tryLock(key string) bool {
	if !l.table.tryLock(key) {
		return false
	}
	l.mu.Lock()
	l.mine[key] = true
	l.mu.Unlock()
	return true
}

func (l *localLocks) unlock(key string) {
	l.mu.Lock()
	held := l.mine[key]
	delete(l.mine, key)
	l.mu.Unlock()
	if held {
		l.table.unlock(key)
	}
}

func (l *localLocks) close() error {
	l.mu.Lock()
	keys := l.mine
	l.mine = map[string]bool{}
	l.mu.Unlock()
	for key := range keys {
		l.table.unlock(key)
	}
	return nil
}
