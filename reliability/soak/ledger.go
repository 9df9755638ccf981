package soak

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
)

type msgKey struct {
	user string
	uid  uint32
}

func (k msgKey) String() string { return fmt.Sprintf("%s UID %d", k.user, k.uid) }

// ledger is what everyone did to the mailboxes, for the final audit. The
// appender writes what it stored and expunged; POP3 sessions write what
// their QUIT deleted (for sure, or perhaps) and which messages vanished
// under them.
type ledger struct {
	mu          sync.Mutex
	nextSerial  map[string]int
	uidValidity map[string]uint32
	stored      map[msgKey]int // UID -> serial, once APPEND returned
	expunged    map[msgKey]bool
	deleted     map[msgKey]bool // by a session whose QUIT got +OK
	maybe       map[msgKey]bool // by a session whose QUIT got -ERR or no answer
	vanished    map[msgKey]bool // RETR/TOP answered "no such message"
	cutShort    map[msgKey]bool // RETR/TOP closed before the dot
	claims      []claim
}

// claim is a message a POP3 session downloaded: that UID had that serial.
type claim struct {
	key    msgKey
	serial int
}

func newLedger() *ledger {
	return &ledger{
		nextSerial:  make(map[string]int),
		uidValidity: make(map[string]uint32),
		stored:      make(map[msgKey]int),
		expunged:    make(map[msgKey]bool),
		deleted:     make(map[msgKey]bool),
		maybe:       make(map[msgKey]bool),
		vanished:    make(map[msgKey]bool),
		cutShort:    make(map[msgKey]bool),
	}
}

func (l *ledger) serial(user string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nextSerial[user]++
	return l.nextSerial[user]
}

func (l *ledger) store(user string, uid uint32, serial int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stored[msgKey{user, uid}] = serial
}

// pick returns a random stored, not yet removed UID of user (for the
// expunger), using n as the random choice.
func (l *ledger) pick(user string, n int) (uint32, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var uids []uint32
	for k := range l.stored {
		if k.user == user && !l.expunged[k] && !l.deleted[k] {
			uids = append(uids, k.uid)
		}
	}
	if len(uids) == 0 {
		return 0, false
	}
	slices.Sort(uids)
	return uids[n%len(uids)], true
}

func (l *ledger) mark(set map[msgKey]bool, keys ...msgKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		set[k] = true
	}
}

func (l *ledger) claim(k msgKey, serial int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.claims = append(l.claims, claim{k, serial})
}

// Audit is the final accounting of one run.
type Audit struct {
	Stored      int // messages appended (seed and during the run)
	Present     int // still there at the end
	ExpungedIMP int // removed by the IMAP client
	DeletedPOP3 int // removed by POP3 sessions that got +OK at QUIT
	MaybePOP3   int // removed by POP3 sessions whose QUIT failed (allowed)
	Vanished    int // RETR/TOP "no such message", each justified by a removal
	CutShort    int // RETR/TOP closed before the dot, each justified by a removal

	Lost      []string // gone, and nobody removed them
	Corrupt   []string // there, but not the octets that were appended
	Unknown   []string // there, but never appended (a duplicate?)
	NotDone   []string // QUIT said +OK but the message is still there
	BadClaims []string // a session got another message's octets for a UID
}

// OK reports whether the audit found nothing wrong.
func (a *Audit) OK() bool {
	return len(a.Lost)+len(a.Corrupt)+len(a.Unknown)+len(a.NotDone)+len(a.BadClaims) == 0
}

// audit compares the mailboxes as they are at the end (user -> UID ->
// octets) with the ledger.
func (l *ledger) audit(final map[string]map[uint32][]byte) *Audit {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := &Audit{Stored: len(l.stored), ExpungedIMP: len(l.expunged), Vanished: len(l.vanished), CutShort: len(l.cutShort)}
	for k, serial := range l.stored {
		body, present := final[k.user][k.uid]
		switch {
		case present:
			a.Present++
			if !bytes.Equal(body, messageBody(k.user, serial)) {
				a.Corrupt = append(a.Corrupt, k.String())
			}
			if l.deleted[k] {
				a.NotDone = append(a.NotDone, k.String())
			}
		case l.expunged[k]:
		case l.deleted[k]:
			a.DeletedPOP3++
		case l.maybe[k]:
			a.MaybePOP3++
		default:
			a.Lost = append(a.Lost, k.String())
		}
	}
	for user, msgs := range final {
		for uid := range msgs {
			if _, ok := l.stored[msgKey{user, uid}]; !ok {
				a.Unknown = append(a.Unknown, msgKey{user, uid}.String())
			}
		}
	}
	for k := range l.vanished {
		if _, present := final[k.user][k.uid]; present {
			a.BadClaims = append(a.BadClaims, "answered no such message but still there: "+k.String())
		}
	}
	for k := range l.cutShort {
		if _, present := final[k.user][k.uid]; present {
			a.BadClaims = append(a.BadClaims, "transfer closed before the dot but the message is still there: "+k.String())
		}
	}
	for _, c := range l.claims {
		if s, ok := l.stored[c.key]; ok && s != c.serial {
			a.BadClaims = append(a.BadClaims, fmt.Sprintf("%s served message %d, is %d", c.key, c.serial, s))
		}
	}
	for _, list := range [][]string{a.Lost, a.Corrupt, a.Unknown, a.NotDone, a.BadClaims} {
		slices.Sort(list)
	}
	return a
}
