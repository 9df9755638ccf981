package upstream

import (
	"testing"

	"github.com/popbridge/popbridge/store"
)

// newTestState returns an empty in-memory SQLite store for one test.
func newTestState(t *testing.T) store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), "sqlite::memory:", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
