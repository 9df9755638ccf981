package telemetry

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/popbridge/popbridge/store"
)

func TestWatchStore(t *testing.T) {
	m := NewMetrics("test")
	o := m.WatchStore()
	o.ObserveStore("get_mailbox", time.Millisecond, nil)
	o.ObserveStore("get_mailbox", time.Millisecond, store.ErrNotFound)
	o.ObserveStore("lock", time.Millisecond, store.ErrLocked)
	o.ObserveStore("append_journal", time.Second, errors.Join(store.ErrUnavailable, errors.New("disk full")))
	want := `
# HELP popbridge_store_errors_total State store operations that failed, by operation and kind (unavailable, disabled, schema_too_new).
# TYPE popbridge_store_errors_total counter
popbridge_store_errors_total{kind="unavailable",op="append_journal"} 1
popbridge_store_errors_total{kind="unavailable",op="ping"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "popbridge_store_errors_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.Registry(), "popbridge_store_operation_duration_seconds"); n != 3 {
		t.Errorf("%d duration series, want 3 (get_mailbox, lock, append_journal)", n)
	}
}
