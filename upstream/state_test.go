package upstream

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/uidlmap"
)

// newTestState returns an empty store for one test.
func newTestState(t *testing.T) State {
	t.Helper()
	return &memState{devices: map[string]map[string]time.Time{}}
}

// memState keeps State in memory until the store package is in.
type memState struct {
	mu      sync.Mutex
	devices map[string]map[string]time.Time
	done    []struct {
		key string
		r   DoneRecord
	}
	journal  []JournalEntry
	restores []Restore
	uidls    map[string][]uidlmap.Record
}

func (s *memState) UIDLMap(_ context.Context, key string) ([]uidlmap.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.uidls[key]), nil
}

func (s *memState) PutUIDLs(_ context.Context, key string, recs []uidlmap.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uidls == nil {
		s.uidls = map[string][]uidlmap.Record{}
	}
	for _, r := range recs {
		s.uidls[key] = slices.DeleteFunc(s.uidls[key], func(o uidlmap.Record) bool { return o.UIDL == r.UIDL })
		s.uidls[key] = append(s.uidls[key], r)
	}
	return nil
}

func (s *memState) TouchDevice(_ context.Context, key, device string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.devices[key] == nil {
		s.devices[key] = map[string]time.Time{}
	}
	if at.After(s.devices[key][device]) {
		s.devices[key][device] = at
	}
	return nil
}

func (s *memState) Devices(_ context.Context, key string) ([]Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Device
	for n, at := range s.devices[key] {
		out = append(out, Device{Name: n, LastSeen: at})
	}
	slices.SortFunc(out, func(a, b Device) int { return compareStrings(a.Name, b.Name) })
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *memState) MarkDone(_ context.Context, key, device string, uv uint32, uids []uint32, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range uids {
		s.done = append(s.done, struct {
			key string
			r   DoneRecord
		}{key, DoneRecord{Device: device, UIDValidity: uv, UID: u, At: at}})
	}
	return nil
}

func (s *memState) Done(_ context.Context, key string, uv uint32) ([]DoneRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []DoneRecord
	for _, d := range s.done {
		if d.key == key && d.r.UIDValidity == uv {
			out = append(out, d.r)
		}
	}
	return out, nil
}

func (s *memState) AppendJournal(_ context.Context, es []JournalEntry) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int64
	for _, e := range es {
		e.ID = int64(len(s.journal) + 1)
		if e.Outcome == "" {
			e.Outcome = "pending"
		}
		s.journal = append(s.journal, e)
		ids = append(ids, e.ID)
	}
	return ids, nil
}

func (s *memState) SetJournalOutcome(_ context.Context, ids []int64, outcome string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.journal[id-1].Outcome = outcome
	}
	return nil
}

func (s *memState) Journal(_ context.Context, q JournalQuery) ([]JournalEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []JournalEntry
	for _, e := range s.journal {
		if (q.User == "" || e.User == q.User) && (q.Device == "" || e.Device == q.Device) &&
			(q.MessageID == "" || e.MessageID == q.MessageID) && (q.Since.IsZero() || !e.Time.Before(q.Since)) &&
			(q.Until.IsZero() || e.Time.Before(q.Until)) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *memState) PruneJournal(_ context.Context, before time.Time) (int64, error) { return 0, nil }

func (s *memState) QueueRestore(_ context.Context, r Restore) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.ID = int64(len(s.restores) + 1)
	r.Outcome = "pending"
	s.restores = append(s.restores, r)
	return r.ID, nil
}

func (s *memState) PendingRestores(_ context.Context, user string) ([]Restore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Restore
	for _, r := range s.restores {
		if r.User == user && r.Outcome == "pending" {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *memState) FinishRestore(_ context.Context, id int64, outcome string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 1 || int(id) > len(s.restores) {
		return errors.New("not found")
	}
	s.restores[id-1].Outcome = outcome
	return nil
}
