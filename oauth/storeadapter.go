package oauth

import (
	"context"
	"fmt"
	"strings"

	"github.com/popbridge/popbridge/store"
)

// FromStore adapts the state store to this package's Store. The store
// keeps a mailbox's mode and state in one opaque State string, which this
// package writes as "MODE active" or "MODE reenroll: REASON".
// The device credentials, the lock and the errors are the store's own.
func FromStore(s store.Store) Store { return storeAdapter{s} }

type storeAdapter struct{ store.Store }

func (a storeAdapter) GetMailbox(ctx context.Context, mailbox string) (Mailbox, error) {
	m, err := a.Store.GetMailbox(ctx, mailbox)
	if err != nil {
		return Mailbox{}, err
	}
	return fromRow(m), nil
}

func (a storeAdapter) ListMailboxes(ctx context.Context) ([]Mailbox, error) {
	rows, err := a.Store.ListMailboxes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Mailbox, len(rows))
	for i, m := range rows {
		out[i] = fromRow(m)
	}
	return out, nil
}

func (a storeAdapter) PutMailbox(ctx context.Context, m Mailbox) (Mailbox, error) {
	state := m.Mode + " active"
	if m.NeedsReenroll {
		state = m.Mode + " reenroll: " + m.LastError
	}
	row, err := a.Store.PutMailbox(ctx, store.Mailbox{Mailbox: m.Mailbox, Provider: m.Provider, State: state,
		SealedGrant: m.SealedGrant, Version: m.Version, UpdatedAt: m.UpdatedAt})
	if err != nil {
		return Mailbox{}, err
	}
	return fromRow(row), nil
}

// fromRow parses State; an unknown state reads as needing re-enrollment,
// so that a row this version does not understand is never used blindly.
func fromRow(m store.Mailbox) Mailbox {
	out := Mailbox{Mailbox: m.Mailbox, Provider: m.Provider, SealedGrant: m.SealedGrant, Version: m.Version, UpdatedAt: m.UpdatedAt}
	mode, state, _ := strings.Cut(m.State, " ")
	out.Mode = mode
	switch {
	case state == "active":
	case strings.HasPrefix(state, "reenroll: "):
		out.NeedsReenroll, out.LastError = true, strings.TrimPrefix(state, "reenroll: ")
	default:
		out.NeedsReenroll, out.LastError = true, fmt.Sprintf("unknown state %q", m.State)
	}
	return out
}
