package oauth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/popbridge/popbridge/store"
)

// FromStore adapts the state store to this package's Store. The store
// keeps a mailbox's mode and state in one opaque State string, which this
// package writes as "MODE active" or "MODE reenroll: REASON".
func FromStore(s store.Store) Store { return storeAdapter{s} }

type storeAdapter struct{ s store.Store }

func (a storeAdapter) GetMailbox(ctx context.Context, mailbox string) (Mailbox, error) {
	m, err := a.s.GetMailbox(ctx, mailbox)
	if err != nil {
		return Mailbox{}, mapErr(err)
	}
	return fromRow(m), nil
}

func (a storeAdapter) ListMailboxes(ctx context.Context) ([]Mailbox, error) {
	rows, err := a.s.ListMailboxes(ctx)
	if err != nil {
		return nil, mapErr(err)
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
	row, err := a.s.PutMailbox(ctx, store.Mailbox{Mailbox: m.Mailbox, Provider: m.Provider, State: state,
		SealedGrant: m.SealedGrant, Version: m.Version, UpdatedAt: m.UpdatedAt})
	if err != nil {
		return Mailbox{}, mapErr(err)
	}
	return fromRow(row), nil
}

func (a storeAdapter) DeleteMailbox(ctx context.Context, mailbox string) error {
	return mapErr(a.s.DeleteMailbox(ctx, mailbox))
}

func (a storeAdapter) PutDeviceCredential(ctx context.Context, c DeviceCredential) error {
	return mapErr(a.s.PutDeviceCredential(ctx, store.DeviceCredential(c)))
}

func (a storeAdapter) DeviceCredentials(ctx context.Context, mailbox string) ([]DeviceCredential, error) {
	rows, err := a.s.DeviceCredentials(ctx, mailbox)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]DeviceCredential, len(rows))
	for i, c := range rows {
		out[i] = DeviceCredential(c)
	}
	return out, nil
}

func (a storeAdapter) DeleteDeviceCredential(ctx context.Context, mailbox, device string) error {
	return mapErr(a.s.DeleteDeviceCredential(ctx, mailbox, device))
}

func (a storeAdapter) Lock(ctx context.Context, key string) (func(), error) {
	release, err := a.s.Lock(ctx, key)
	return release, mapErr(err)
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

// mapErr turns the store's sentinel errors into this package's, keeping
// the store's text.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case errors.Is(err, store.ErrLocked):
		return fmt.Errorf("%w: %w", ErrLocked, err)
	}
	return err
}
