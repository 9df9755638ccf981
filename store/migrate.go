package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrations holds one directory of goose SQL files per dialect. The two
// directories describe the same tables; only the types differ. Add a new
// numbered file to both for every schema change, and never edit or remove
// a released one: migrations only add (a column with a default, a table,
// an index), so an older popbridge keeps working on a database a newer one
// migrated only until the newer one adds a version it does not know, which
// Open then refuses (ErrSchemaTooNew).
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// migrate brings db to the newest embedded schema of dialect ("sqlite" or
// "postgres").
func migrate(ctx context.Context, db *sql.DB, dialect string) error {
	fsys, err := fs.Sub(migrations, "migrations/"+dialect)
	if err != nil {
		return err
	}
	var opts []goose.ProviderOption
	gooseDialect := goose.DialectSQLite3
	if dialect == "postgres" {
		gooseDialect = goose.DialectPostgres
		// Replicas starting together take turns (a PostgreSQL advisory
		// lock held for the migration).
		// Try every second for up to five minutes (a long first migration
		// on another replica).
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
		if err != nil {
			return err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(gooseDialect, db, fsys, opts...)
	if err != nil {
		return err
	}
	sources := p.ListSources()
	known := sources[len(sources)-1].Version

	// Two processes opening a new SQLite file at once both see it empty and
	// both try the first migration; the loser fails (each migration is one
	// transaction, so nothing half-applied remains) and finds the work done
	// on its next try.
	attempts := 5
	if dialect == "postgres" {
		attempts = 1 // replicas take turns under the session locker
	}
	var lastErr error
	for attempt := range attempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return errors.Join(lastErr, ctx.Err())
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
		if current, err := p.GetDBVersion(ctx); err == nil && current > known {
			return fmt.Errorf("%w (schema version %d, this binary knows up to %d)", ErrSchemaTooNew, current, known)
		}
		if _, lastErr = p.Up(ctx); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("migrate schema: %w", lastErr)
}
