package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Open opens the store named by url and applies the embedded migrations:
//
//	sqlite:PATH        a SQLite file; a relative PATH is relative to dataDir
//	                   (the working directory when dataDir is empty)
//	sqlite::memory:    a private in-memory SQLite database (demo, tests)
//	postgres://...     PostgreSQL (also postgresql://), pgx connection URL
//	none               ErrDisabled: the admin chose no state
//
// An error is one line fit for a startup message; it never contains the
// URL's password.
func Open(ctx context.Context, url, dataDir string) (Store, error) {
	s, err := open(ctx, url, dataDir)
	if err != nil {
		return nil, oneLine{err}
	}
	return s, nil
}

func open(ctx context.Context, url, dataDir string) (Store, error) {
	switch {
	case url == "none":
		return nil, ErrDisabled
	case url == "sqlite::memory:":
		return openSQLite(ctx, "")
	case strings.HasPrefix(url, "sqlite:"):
		path, err := SQLitePath(url, dataDir)
		if err != nil {
			return nil, err
		}
		return openSQLite(ctx, path)
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return openPostgres(ctx, url)
	}
	return nil, fmt.Errorf("store: unknown store URL %q: want sqlite:PATH, sqlite::memory:, postgres://... or none", Redact(url))
}

// CheckURL reports whether url is a store URL Open understands, without
// opening anything (for flag validation at startup).
func CheckURL(url, dataDir string) error {
	switch {
	case url == "none", url == "sqlite::memory:":
		return nil
	case strings.HasPrefix(url, "sqlite:"):
		_, err := SQLitePath(url, dataDir)
		return err
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		_, err := postgresConfig(url)
		return err
	}
	return fmt.Errorf("store: unknown store URL %q: want sqlite:PATH, sqlite::memory:, postgres://... or none", Redact(url))
}

// SQLitePath returns the file a "sqlite:PATH" URL names: PATH itself when
// absolute, else PATH inside dataDir.
func SQLitePath(url, dataDir string) (string, error) {
	path, ok := strings.CutPrefix(url, "sqlite:")
	if !ok || path == "" || path == ":memory:" {
		return "", fmt.Errorf("store: %q names no SQLite file: want sqlite:PATH", url)
	}
	if strings.ContainsAny(path, "?#") {
		return "", fmt.Errorf("store: sqlite:PATH takes no options: %q", url)
	}
	if filepath.IsAbs(path) {
		return filepath.Clean(path), nil
	}
	return filepath.Join(dataDir, path), nil
}

// Redact returns url with any password replaced by "xxxxx", for logs and
// error messages.
func Redact(url string) string {
	out := url
	if scheme, rest, ok := strings.Cut(url, "://"); ok {
		authEnd := strings.IndexAny(rest, "/?#")
		if authEnd < 0 {
			authEnd = len(rest)
		}
		if at := strings.LastIndex(rest[:authEnd], "@"); at >= 0 {
			if user, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
				out = scheme + "://" + user + ":xxxxx" + rest[at:]
			}
		}
	}
	// A password= parameter is redacted as well.
	if i := strings.Index(out, "password="); i >= 0 {
		i += len("password=")
		end := strings.IndexAny(out[i:], "&#")
		if end < 0 {
			end = len(out) - i
		}
		out = out[:i] + "xxxxx" + out[i+end:]
	}
	return out
}

// oneLine shows an error on one line (pgx lists each address it tried on a
// line of its own) and unwraps to it.
type oneLine struct{ err error }

func (e oneLine) Error() string {
	lines := strings.Split(e.err.Error(), "\n")
	for i := range lines {
		lines[i] = strings.Join(strings.Fields(lines[i]), " ")
	}
	msg := lines[0]
	for i, l := range lines[1:] {
		switch {
		case l == "":
			continue
		case strings.HasSuffix(lines[i], ":"):
			msg += " " + l
		default:
			msg += "; " + l
		}
	}
	return msg
}
func (e oneLine) Unwrap() error { return e.err }

// unavailable wraps an engine error so that it matches ErrUnavailable and
// still shows (and unwraps to) the engine's own error.
type unavailable struct {
	op  string
	err error
}

func (e *unavailable) Error() string {
	msg := strings.TrimPrefix(e.err.Error(), "store: ")
	if e.op == "" {
		return "store: " + msg
	}
	return "store: " + e.op + ": " + msg
}
func (e *unavailable) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// wrap returns err unchanged when it is nil or one of the sentinel errors
// (or already wrapped), else as an ErrUnavailable for op ("" when err
// says what failed).
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	for _, sentinel := range []error{ErrNotFound, ErrConflict, ErrLocked, ErrUnavailable, ErrDisabled, ErrSchemaTooNew} {
		if errors.Is(err, sentinel) {
			return err
		}
	}
	return &unavailable{op: op, err: err}
}
