package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgLockTimeout bounds one advisory lock or unlock round trip. It is not the
// caller's deadline: a query cancelled half-way makes pgx close the
// connection, which would free every lock of this process.
const pgLockTimeout = 10 * time.Second

// pgDefaultMaxConns is a replica's pool size when the URL sets no
// pool_max_conns (docs/operations.md sizes PostgreSQL for it).
const pgDefaultMaxConns = 16

// pgConnectTimeout bounds a connection attempt when the URL sets no
// connect_timeout.
const pgConnectTimeout = 10 * time.Second

func postgresConfig(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors show the URL with its password redacted.
		return nil, fmt.Errorf("store: bad PostgreSQL URL %s: %w", Redact(url), err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default (4, or the number of CPUs) queues a busy
		// replica's sessions behind a few connections.
		cfg.MaxConns = pgDefaultMaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// An unreachable server must fail a session's store operation, not
		// hang it; the URL's connect_timeout overrides this.
		cfg.ConnConfig.ConnectTimeout = pgConnectTimeout
	}
	return cfg, nil
}

// openPostgres connects to PostgreSQL and migrates the schema.
//
// Queries go through database/sql over a pgxpool (stdlib.OpenDBFromPool):
// the SQL is shared with SQLite, and the pool pings a connection that was
// idle before handing it out, so after a server restart the dead
// connections are replaced without a popbridge restart.
func openPostgres(ctx context.Context, url string) (Store, error) {
	cfg, err := postgresConfig(url)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", Redact(url), err)
	}
	db := stdlib.OpenDBFromPool(pool)
	// Connect first, so that an unreachable server is said plainly rather
	// than as a migration failure.
	err = db.PingContext(ctx)
	if err == nil {
		err = migrate(ctx, db, "postgres")
	}
	if err != nil {
		_ = db.Close()
		pool.Close()
		return nil, fmt.Errorf("store: open %s: %w", Redact(url), err)
	}
	locks := &pgLocks{local: newLocalLocks(newLockTable()), cfg: cfg.ConnConfig.Copy()}
	return &sqlStore{db: db, postgres: true, locks: locks, closers: []func() error{
		func() error { pool.Close(); return nil },
	}}, nil
}

// pgLocks are session locks shared by every process using the database:
// PostgreSQL session-level advisory locks, all held on one connection of
// this process opened for them alone (outside the pool, so the locks cost
// one connection per replica, not one per session). PostgreSQL frees them
// when that connection ends, so a killed replica leaves no lock behind.
//
// If the lock connection breaks (a database restart), the locks it held are
// gone: their sessions go on unprotected until they end, and the next Lock
// opens a new connection. The lock guards against two sessions of a user
// interleaving; mail safety never depends on it (a session only deletes its
// own UIDs at its QUIT).
type pgLocks struct {
	local *localLocks
	cfg   *pgx.ConnConfig

	mu   sync.Mutex // serializes use of conn
	conn *pgx.Conn  // nil until the first Lock and after a failure
	gen  uint64     // counts connections: a lock of an older one is gone
	// A failed connect is answered from memory for lazyRetry, so that
	// logins do not queue behind one connect timeout each while the
	// database is unreachable.
	failedAt time.Time
	failErr  error
}

// lockID maps a key to PostgreSQL's 64-bit advisory lock space. The prefix
// keeps popbridge's locks apart from those of other users of the database.
func lockID(key string) int64 {
	h := fnv.New64a()
	h.Write([]byte("popbridge-session\x00"))
	h.Write([]byte(key))
	return int64(h.Sum64())
}

func (l *pgLocks) lock(ctx context.Context, key string) (func(), error) {
	// First within the process: PostgreSQL would let this process's one
	// connection take the same advisory lock twice.
	if !l.local.tryLock(key) {
		return nil, ErrLocked
	}
	gen, err := l.tryAdvisory(ctx, lockID(key))
	if err != nil {
		l.local.unlock(key)
		return nil, err
	}
	return sync.OnceFunc(func() {
		l.unlockAdvisory(lockID(key), gen)
		l.local.unlock(key)
	}), nil
}

// tryAdvisory takes the advisory lock id on the lock connection, opening
// one when needed and retrying once on a new connection when the old one
// failed (e.g. the server restarted since it was last used).
func (l *pgLocks) tryAdvisory(ctx context.Context, id int64) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var lastErr error
	for range 2 {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if l.conn == nil || l.conn.IsClosed() {
			if l.failErr != nil && time.Since(l.failedAt) < lazyRetry {
				return 0, l.failErr
			}
			cctx, cancel := context.WithTimeout(ctx, pgLockTimeout)
			conn, err := pgx.ConnectConfig(cctx, l.cfg)
			cancel()
			if err != nil {
				l.failedAt, l.failErr = time.Now(), err
				return 0, err
			}
			l.conn, l.failErr = conn, nil
			l.gen++
		}
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pgLockTimeout)
		var ok bool
		err := l.conn.QueryRow(qctx, "SELECT pg_try_advisory_lock($1)", id).Scan(&ok)
		cancel()
		if err == nil {
			if !ok {
				return 0, ErrLocked
			}
			return l.gen, nil
		}
		lastErr = err
		l.dropConn()
	}
	return 0, lastErr
}

// unlockAdvisory frees the advisory lock id taken on connection gen; when
// that connection is gone, so is the lock.
func (l *pgLocks) unlockAdvisory(id int64, gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil || l.gen != gen {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgLockTimeout)
	defer cancel()
	if _, err := l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", id); err != nil {
		// A lock that cannot be freed must not stay held: ending the
		// connection frees it (and any other this process held on it).
		l.dropConn()
	}
}

// dropConn closes the lock connection; l.mu is held.
func (l *pgLocks) dropConn() {
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = l.conn.Close(ctx)
		cancel()
		l.conn = nil
	}
}

func (l *pgLocks) close() error {
	_ = l.local.close()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		// Free the locks before the connection goes: its backend frees them
		// only when it notices the end, a moment after Close returns.
		ctx, cancel := context.WithTimeout(context.Background(), pgLockTimeout)
		_, _ = l.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
		cancel()
	}
	l.dropConn()
	return nil
}
