package uidlmap

import (
	"cmp"
	"slices"
	"strconv"
)

// Listed is one message of a maildrop listing.
type Listed struct {
	UID  uint32
	Size int64
}

// Plan is the UIDL assignment for some messages of one mailbox state,
// made in two steps so that only the messages that need it are
// fingerprinted: NewPlan says which UIDs need a fingerprint (Need), the
// caller fetches their header fields, and Assign gives every message its
// UIDL and the records to store.
type Plan struct {
	// Need are the UIDs, ascending, whose fingerprint Assign needs: the
	// messages no record of the current UIDVALIDITY knows.
	Need []uint32
	// Rematch is set when the mailbox state is new to the map: records
	// exist, none of them for this UIDVALIDITY (or they do not fit the
	// listing). The messages are then matched to the previous records by
	// fingerprint.
	Rematch bool

	uidValidity uint32
	suffixes    int // see NewAppendPlan; 0 = any number
	msgs        []Listed
	known       map[uint32]string // UID -> UIDL, from a current record
	previous    []Record          // the records a rematch may match
	used        map[string]struct{}
}

// NewPlan plans UIDLs for msgs (sorted by UID or not) of the mailbox state
// uidValidity, given every record of the mailbox's key.
//
// A record of uidValidity is trusted for the UID it names only while the
// listing agrees with it: if any such record names a listed UID with
// another size, the server is not the state the records describe (a
// UIDVALIDITY reused after a rebuild or on another server), and all of
// them are treated as previous records instead.
func NewPlan(records []Record, uidValidity uint32, msgs []Listed) *Plan {
	return newPlan(records, uidValidity, msgs, true)
}

// NewAppendPlan plans UIDLs for new mail in a mailbox state whose other
// messages already have theirs, from only the records NearStore.UIDLsFor
// returns for msgs' UIDs and for Candidates(derived UIDL, sep, suffixes)
// of each: never a rematch, and Assign reports Incomplete when a fresh
// UIDL would need more than suffixes suffixes (records outside the ones
// read could hold it); the caller then plans with the whole map.
func NewAppendPlan(records []Record, uidValidity uint32, msgs []Listed, suffixes int) *Plan {
	p := newPlan(records, uidValidity, msgs, false)
	p.suffixes = max(suffixes, 1)
	return p
}

func newPlan(records []Record, uidValidity uint32, msgs []Listed, rematch bool) *Plan {
	p := &Plan{
		uidValidity: uidValidity,
		msgs:        slices.Clone(msgs),
		known:       make(map[uint32]string),
		used:        make(map[string]struct{}, len(records)),
	}
	slices.SortFunc(p.msgs, func(a, b Listed) int { return cmp.Compare(a.UID, b.UID) })
	sizes := make(map[uint32]int64, len(p.msgs))
	for _, m := range p.msgs {
		sizes[m.UID] = m.Size
	}
	var current []Record
	stale := false
	for _, r := range records {
		p.used[r.UIDL] = struct{}{}
		if r.UIDValidity != uidValidity {
			p.previous = append(p.previous, r)
			continue
		}
		current = append(current, r)
		if size, listed := sizes[r.UID]; listed && r.Size != size {
			stale = true
		}
	}
	if stale {
		p.previous = append(p.previous, current...)
		current = nil
	}
	// Two records for one message cannot come from this package; if a
	// store holds them anyway, pick one the same way every time.
	slices.SortFunc(current, func(a, b Record) int { return cmp.Compare(a.UIDL, b.UIDL) })
	for _, r := range current {
		if _, dup := p.known[r.UID]; !dup {
			p.known[r.UID] = r.UIDL
		}
	}
	located := false // a record names a message of some mailbox state
	for _, r := range records {
		located = located || r.UIDValidity != 0
	}
	p.Rematch = rematch && len(current) == 0 && located
	for _, m := range p.msgs {
		if _, ok := p.known[m.UID]; !ok {
			p.Need = append(p.Need, m.UID)
		}
	}
	return p
}

// Fresh makes the UIDL of a message no record can vouch for.
type Fresh struct {
	// Derive is today's UIDL of a UID in the current UIDVALIDITY
	// (--uidl-format): with nothing remembered, it is what clients see.
	Derive func(uid uint32) string
	// Sep starts the suffix that makes a derived UIDL unique when it is
	// taken. It must be a character Derive never produces, so a suffixed
	// UIDL can never equal a later derived one.
	Sep byte
}

// Result is the outcome of Assign.
type Result struct {
	// UIDLs are the messages' UIDLs, in ascending UID order (the order
	// of Messages).
	UIDLs []string
	// Messages are the planned messages in ascending UID order.
	Messages []Listed
	// Put are the records to store: every message that had no current
	// record, with the UIDL it now shows.
	Put []Record
	// Incomplete is set, and nothing else, when an append plan could not
	// prove a fresh UIDL free (see NewAppendPlan).
	Incomplete bool
	// Kept counts messages with a current record; Matched those that got a
	// previous record's UIDL; Fresh those that got a new UIDL for want of
	// a candidate (new mail, no fingerprint); Ambiguous those that got a
	// new UIDL because their fingerprint matched more than one message.
	Kept, Matched, Fresh, Ambiguous int
}

// Assign gives every planned message its UIDL. fps holds the fingerprints
// of Need (a missing one counts as unknown: the message gets a fresh UIDL).
// No two messages get one UIDL, and no message gets a UIDL a record holds
// for another message.
func (p *Plan) Assign(fps map[uint32]Fingerprint, f Fresh) Result {
	res := Result{UIDLs: make([]string, len(p.msgs)), Messages: p.msgs}
	sizes := make(map[uint32]int64, len(p.Need))
	for _, m := range p.msgs {
		sizes[m.UID] = m.Size
	}
	needFP := make([]Fingerprint, 0, len(p.Need))
	for _, uid := range p.Need {
		fp := fps[uid]
		fp.Size = sizes[uid] // the listing's size, whatever the caller set
		needFP = append(needFP, fp)
	}
	var matches []Match
	if p.Rematch {
		matches = MatchAll(p.previous, needFP, MatchContent)
	}
	j := 0 // index into Need
	for i, m := range p.msgs {
		if uidl, ok := p.known[m.UID]; ok {
			res.UIDLs[i] = uidl
			res.Kept++
			continue
		}
		fp := needFP[j]
		var uidl string
		switch {
		case matches != nil && matches[j].Prev >= 0:
			uidl = p.previous[matches[j].Prev].UIDL
			res.Matched++
		case matches != nil && matches[j].Ambiguous:
			uidl = p.fresh(m.UID, f)
			res.Ambiguous++
		default:
			uidl = p.fresh(m.UID, f)
			res.Fresh++
		}
		if uidl == "" {
			return Result{Incomplete: true}
		}
		j++
		p.used[uidl] = struct{}{}
		res.UIDLs[i] = uidl
		res.Put = append(res.Put, Record{UIDL: uidl, UIDValidity: p.uidValidity, UID: m.UID, Fingerprint: fp})
	}
	return res
}

// fresh returns the derived UIDL of uid, or when a record or an earlier
// message holds it, the first free Suffixed variant; "" when an append
// plan runs out of the variants it has records for.
func (p *Plan) fresh(uid uint32, f Fresh) string {
	d := f.Derive(uid)
	if !p.taken(d) {
		return d
	}
	for n := 1; p.suffixes == 0 || n <= p.suffixes; n++ {
		if c := Suffixed(d, f.Sep, n); !p.taken(c) {
			return c
		}
	}
	return ""
}

// Suffixed is the n-th unique variant of a taken UIDL d:
// "<d><sep><n>", with d cut so that the whole stays within 70 characters.
func Suffixed(d string, sep byte, n int) string {
	suffix := string(sep) + strconv.Itoa(n)
	if len(d)+len(suffix) > MaxUIDLLen {
		d = d[:MaxUIDLLen-len(suffix)]
	}
	return d + suffix
}

// Candidates are the UIDLs a fresh UIDL for derived d may be: d and its
// first n Suffixed variants.
func Candidates(d string, sep byte, n int) []string {
	out := []string{d}
	for i := 1; i <= n; i++ {
		out = append(out, Suffixed(d, sep, i))
	}
	return out
}

func (p *Plan) taken(s string) bool { _, ok := p.used[s]; return ok }

// Match is the outcome for one new message of MatchAll.
type Match struct {
	// Prev is the index of the previous record matched, or -1.
	Prev int
	// Ambiguous is set when the fingerprint matched, but not one to one.
	Ambiguous bool
}

// MatchMode is what MatchAll compares.
type MatchMode int

const (
	// MatchContent compares size, header hash and body prefix: a
	// rematch, where both sides come from IMAP.
	MatchContent MatchMode = iota
	// MatchHeader compares the header hash alone: a POP3 server may count
	// sizes differently (bare LF line ends) and TOP n 0 has no body.
	MatchHeader
	// MatchHeaderBody compares header hash and body prefix, not size.
	MatchHeaderBody
)

// MatchAll matches messages (by fingerprint) to previous records. A
// message matches a record only when their fingerprints are equal (as
// mode compares them) and no other message or record has that
// fingerprint: two identical copies are never told apart by guessing, so
// they never inherit each other's UIDL. An unknown fingerprint matches
// nothing.
func MatchAll(prev []Record, msgs []Fingerprint, mode MatchMode) []Match {
	type key struct {
		size       int64
		hash, body string
	}
	keyOf := func(f Fingerprint) key {
		switch mode {
		case MatchHeader:
			return key{hash: f.Hash}
		case MatchHeaderBody:
			return key{hash: f.Hash, body: f.Body}
		}
		return key{f.Size, f.Hash, f.Body}
	}
	byKey := make(map[key][]int)
	for i, r := range prev {
		if r.Known() {
			k := keyOf(r.Fingerprint)
			byKey[k] = append(byKey[k], i)
		}
	}
	newCount := make(map[key]int)
	for _, f := range msgs {
		if f.Known() {
			newCount[keyOf(f)]++
		}
	}
	out := make([]Match, len(msgs))
	for i, f := range msgs {
		out[i].Prev = -1
		if !f.Known() {
			continue
		}
		k := keyOf(f)
		cands := byKey[k]
		switch {
		case len(cands) == 1 && newCount[k] == 1:
			out[i].Prev = cands[0]
		case len(cands) > 0:
			out[i].Ambiguous = true
		}
	}
	return out
}
