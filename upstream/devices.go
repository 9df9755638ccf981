package upstream

import (
	"context"
	"fmt"
	"slices"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/uidlmap"
)

// stateKey names a user's maildrop in the store's device ledger: the
// UIDL map's key format (uidlmap.Key), but of the login name as the policy
// matches it, so that devices logging in as "Alice" and "alice" share one
// ledger.
func stateKey(user, mailbox string) string {
	return uidlmap.Key(policy.NormalizeName(user), mailbox)
}

// viewsOn reports whether this session keeps a device view: with a store,
// for a named device always, and for a login without a device when the
// store was configured explicitly (Options.Passive), so that leave hides
// from a client what it deleted (docs/policy.md, "Devices").
func (m *maildrop) viewsOn() bool {
	return m.b.opts.State != nil && (m.device != "" || m.b.opts.Passive)
}

// loadDevices records this device's login and reads the mailbox's devices
// and ledger for the snapshot's UIDVALIDITY. It runs after SELECT and
// before the listing is numbered, which hides what this device is done
// with.
func (m *maildrop) loadDevices(ctx context.Context) error {
	st, now := m.b.opts.State, m.b.now()
	if err := st.TouchDevice(ctx, m.ledgerKey(), m.device, now); err != nil {
		return fmt.Errorf("store: recording device %q: %w", m.device, err)
	}
	known, err := st.Devices(ctx, m.ledgerKey())
	if err != nil {
		return fmt.Errorf("store: devices: %w", err)
	}
	done, err := st.Done(ctx, m.ledgerKey(), m.uidValidity)
	if err != nil {
		return fmt.Errorf("store: device ledger: %w", err)
	}
	m.devs = policy.Devices{Device: m.device, Now: now, Expiry: m.b.opts.DeviceExpiry, Done: policy.Ledger{}}
	for _, d := range known {
		m.devs.Known = append(m.devs.Known, policy.DeviceSeen{Name: d.Name, LastSeen: d.LastSeen})
	}
	for _, r := range done {
		m.devs.Done[r.Device] = append(m.devs.Done[r.Device], r.UID)
	}
	m.hide = m.devs.Hidden()
	return nil
}

func (m *maildrop) ledgerKey() string { return stateKey(m.user, m.mailbox) }

// hidden reports whether this device's view hides uid.
func (m *maildrop) hidden(uid uint32) bool {
	_, ok := slices.BinarySearch(m.hide, uid)
	return ok
}

// setPresent keeps the UIDs a QUIT may act on under device views: the
// listing's messages not hidden by the flag action, those this device no
// longer sees included (another device may complete them).
func (m *maildrop) setPresent(e *cache.Entry) {
	if !m.viewsOn() {
		return
	}
	m.present = make([]uint32, 0, len(e.Messages))
	for _, msg := range e.Messages {
		if !msg.Hidden {
			m.present = append(m.present, msg.UID)
		}
	}
	slices.Sort(m.present) // listings are in UID order; forgetGone relies on it
}

// forgetGone drops from the ledger the UIDs that left the mailbox: those
// this session's QUIT expunged, moved or flagged (gone), and those the
// ledger holds that the listing no longer has (another client expunged
// them). The ledger then stays the size of the mailbox. A failure costs
// only space, so it is logged.
func (m *maildrop) forgetGone(ctx context.Context, gone []uint32) {
	if !m.viewsOn() {
		return
	}
	for _, uids := range m.devs.Done {
		for _, uid := range uids {
			if _, ok := slices.BinarySearch(m.present, uid); !ok {
				gone = append(gone, uid)
			}
		}
	}
	if len(gone) == 0 {
		return
	}
	slices.Sort(gone)
	gone = slices.Compact(gone)
	if err := m.b.opts.State.ForgetDone(context.WithoutCancel(ctx), m.ledgerKey(), m.uidValidity, gone); err != nil {
		m.warn().Err(err).Int("uids", len(gone)).Msg("store: device ledger not pruned")
	}
}
