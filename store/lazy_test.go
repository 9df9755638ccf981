package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/store/storetest"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu   sync.Mutex
	ops  []string
	errs []error
}

func (r *recorder) ObserveStore(op string, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took < 0 {
		panic("negative duration")
	}
	r.ops = append(r.ops, op)
	r.errs = append(r.errs, err)
}

// TestConformanceLazyInstrumented runs the suite through a LazyStore with
// an observer: the wrapper passes every method through unchanged.
func TestConformanceLazyInstrumented(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		dir := t.TempDir()
		open := func() store.Store {
			return store.Lazy("sqlite:state.db", dir, &recorder{})
		}
		s := open()
		t.Cleanup(func() { _ = s.Close() })
		return s, open
	})
}

func TestLazyOpensAtFirstUse(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{}
	l := store.Lazy("sqlite:popbridge.db", dir, rec)
	path := filepath.Join(dir, "popbridge.db")
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) || l.Opened() {
		t.Fatalf("a lazy store created its file before any use (%v)", err)
	}
	if err := l.Close(); err != nil { // closing an unopened store: nothing
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Close created the file")
	}

	l = store.Lazy("sqlite:popbridge.db", dir, rec)
	defer l.Close()
	if _, err := l.Journal(t.Context(), store.JournalQuery{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil || !l.Opened() {
		t.Fatalf("no file after the first use: %v", err)
	}
	_, err := l.GetMailbox(t.Context(), "nobody")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.ops, []string{"journal", "get_mailbox"}) || rec.errs[0] != nil || store.ErrorKind(rec.errs[1]) != "not_found" {
		t.Fatalf("observed %v %v", rec.ops, rec.errs)
	}
}

func TestLazyErrors(t *testing.T) {
	l := store.Lazy("none", "", nil)
	if err := l.Ping(t.Context()); !errors.Is(err, store.ErrDisabled) || store.ErrorKind(err) != "disabled" {
		t.Fatalf("none: %v", err)
	}
	// A data directory that does not exist yet: unavailable, and tried
	// again (after a second) once it exists.
	dir := filepath.Join(t.TempDir(), "later")
	l = store.Lazy("sqlite:state.db", dir, nil)
	defer l.Close()
	err := l.Ping(t.Context())
	if !errors.Is(err, store.ErrUnavailable) || store.ErrorKind(err) != "unavailable" {
		t.Fatalf("missing data directory: %v", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	waitPing(t, l, "still failing once the directory exists")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Ping(t.Context()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("after Close: %v", err)
	}
	for err, want := range map[error]string{
		nil: "", store.ErrConflict: "conflict", store.ErrLocked: "locked", store.ErrSchemaTooNew: "schema_too_new",
		errors.New("x"): "unavailable",
	} {
		if got := store.ErrorKind(err); got != want {
			t.Errorf("ErrorKind(%v) = %q, want %q", err, got, want)
		}
	}
}
