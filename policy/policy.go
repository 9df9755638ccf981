// Package policy decides what a POP3 session's deletes and downloads do to
// the upstream mailbox at QUIT. It is pure: no I/O, no knowledge of IMAP or
// POP3 wire formats.
package policy

import (
	"fmt"
	"slices"
	"strings"
)

// DeletePolicy says which messages are applied at QUIT (docs/policy.md).
type DeletePolicy int

const (
	// Honor applies the client's DELEs (RFC 1939).
	Honor DeletePolicy = iota
	// Leave accepts DELE but applies nothing (leave-on-server).
	Leave
	// OnDownload applies DELEs and every message retrieved in full.
	OnDownload
)

func (p DeletePolicy) String() string {
	switch p {
	case Honor:
		return "honor"
	case Leave:
		return "leave"
	case OnDownload:
		return "on-download"
	}
	return fmt.Sprintf("DeletePolicy(%d)", int(p))
}

// ParseDeletePolicy parses "honor", "leave" or "on-download".
func ParseDeletePolicy(s string) (DeletePolicy, error) {
	switch s {
	case "honor":
		return Honor, nil
	case "leave":
		return Leave, nil
	case "on-download":
		return OnDownload, nil
	}
	return 0, fmt.Errorf("unknown delete policy %q (want honor, leave or on-download)", s)
}

// ActionKind is what "applied" means upstream.
type ActionKind int

const (
	// Expunge: UID STORE \Deleted then UID EXPUNGE of exactly those UIDs.
	Expunge ActionKind = iota
	// Flag: add \Seen and $POP3Deleted; later POP3 sessions hide the message.
	Flag
	// Move: UID MOVE into Action.Mailbox.
	Move
	// Quarantine: UID MOVE into Action.Mailbox (the quarantine mailbox,
	// DefaultQuarantineMailbox unless configured), from which a later
	// session of the user expunges it after the quarantine period and
	// from which "popbridge restore" moves it back (docs/policy.md).
	Quarantine
)

// DefaultQuarantineMailbox is the default --quarantine-mailbox.
const DefaultQuarantineMailbox = "POPBRIDGE-QUARANTINE"

// Action is a delete action; Mailbox is set only for Move and Quarantine.
type Action struct {
	Kind    ActionKind
	Mailbox string
}

// String is the action's kind, a bounded set fit for a metric label.
func (k ActionKind) String() string {
	switch k {
	case Expunge:
		return "expunge"
	case Flag:
		return "flag"
	case Move:
		return "move"
	case Quarantine:
		return "quarantine"
	}
	return fmt.Sprintf("Action(%d)", int(k))
}

// String is the action as ParseAction reads it.
func (a Action) String() string {
	if a.Kind == Move {
		return "move:" + a.Mailbox
	}
	return a.Kind.String()
}

// Moves reports whether the action takes messages out of the maildrop
// into Mailbox (move and quarantine).
func (a Action) Moves() bool { return a.Kind == Move || a.Kind == Quarantine }

// ParseAction parses "expunge", "flag", "move:MAILBOX" or "quarantine"
// (into DefaultQuarantineMailbox; the caller sets another Mailbox).
func ParseAction(s string) (Action, error) {
	switch {
	case s == "expunge":
		return Action{Kind: Expunge}, nil
	case s == "flag":
		return Action{Kind: Flag}, nil
	case s == "quarantine":
		return Action{Kind: Quarantine, Mailbox: DefaultQuarantineMailbox}, nil
	case strings.HasPrefix(s, "move:"):
		mbox := strings.TrimPrefix(s, "move:")
		if strings.TrimSpace(mbox) == "" {
			return Action{}, fmt.Errorf("delete action %q names no mailbox (want move:MAILBOX)", s)
		}
		// CR/LF would break the IMAP command line; other controls are
		// never legitimate in a mailbox name an admin types.
		if strings.ContainsFunc(mbox, isControl) {
			return Action{}, fmt.Errorf("delete action %q: mailbox name contains a control character", s)
		}
		return Action{Kind: Move, Mailbox: mbox}, nil
	}
	return Action{}, fmt.Errorf("unknown delete action %q (want expunge, flag, move:MAILBOX or quarantine)", s)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// DeletedKeyword is the IMAP keyword the Flag action sets; messages carrying
// it are hidden from every POP3 session (Dovecot's pop3_deleted_flag).
const DeletedKeyword = "$POP3Deleted"

// Policy is the effective setting for one session.
type Policy struct {
	Delete   DeletePolicy
	Action   Action
	MarkSeen bool
	// DryRun journals what would be applied (outcome "dry-run") and
	// changes nothing upstream, \Seen included.
	DryRun bool
}

// Default is the server default (docs/design.md#configuration).
var Default = Policy{Delete: Honor, Action: Action{Kind: Expunge}, MarkSeen: true}

// Expire is the RFC 2449 EXPIRE capability value for the policy: "0" when
// downloaded mail is removed, "NEVER" otherwise.
func (p Policy) Expire() string {
	if p.Delete == OnDownload {
		return "0"
	}
	return "NEVER"
}

// Plan is what to do upstream at QUIT. IDs are whatever the caller passed
// (UIDs in practice), sorted ascending and without duplicates.
type Plan struct {
	// Seen get \Seen added (before Apply is carried out).
	Seen []uint32
	// Apply get the policy's Action.
	Apply []uint32
	// Action is the action for Apply.
	Action Action
}

// Empty reports whether the plan changes nothing upstream.
func (pl Plan) Empty() bool { return len(pl.Seen) == 0 && len(pl.Apply) == 0 }

// MakePlan says which messages get which action at QUIT. deleted are the
// messages the client DELE'd; retrieved are those whose RETR reached the
// client in full. TOP never counts as retrieval; callers must not pass it.
func MakePlan(p Policy, deleted, retrieved []uint32) Plan {
	pl := Plan{Action: p.Action}
	switch p.Delete {
	case Honor:
		pl.Apply = uniqueSorted(deleted)
	case Leave:
		// DELE was answered +OK but nothing is applied.
	case OnDownload:
		pl.Apply = uniqueSorted(append(slices.Clone(deleted), retrieved...))
	}
	if p.MarkSeen {
		pl.Seen = uniqueSorted(retrieved)
	}
	return pl
}

func uniqueSorted(ids []uint32) []uint32 {
	if len(ids) == 0 {
		return nil
	}
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}
