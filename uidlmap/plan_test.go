package uidlmap

import (
	"fmt"
	"strings"
	"testing"
)

// derive is the default --uidl-format, %08Xu%08Xv.
func derive(v uint32) Fresh {
	return Fresh{Derive: func(uid uint32) string { return fmt.Sprintf("%08x%08x", uid, v) }, Sep: '~'}
}

func fp(id string, size int64) Fingerprint {
	return Fingerprint{Size: size, MessageID: id, Hash: "h-" + id}
}

type msg struct {
	uid  uint32
	size int64
	id   string // fingerprint; "" means none fetched
}

func run(t *testing.T, records []Record, v uint32, msgs []msg, f Fresh) (*Plan, Result) {
	t.Helper()
	var listed []Listed
	fps := map[uint32]Fingerprint{}
	for _, m := range msgs {
		listed = append(listed, Listed{UID: m.uid, Size: m.size})
		if m.id != "" {
			// Parse knows no size: Assign takes the listing's.
			fps[m.uid] = fp(m.id, 0)
		}
	}
	p := NewPlan(records, v, listed)
	res := p.Assign(fps, f)
	checkUnique(t, records, res)
	return p, res
}

// checkUnique checks the invariants every result must keep: valid UIDLs,
// no two messages with one UIDL, and no message with a UIDL a record holds
// for another message that was not matched to it.
func checkUnique(t *testing.T, records []Record, res Result) {
	t.Helper()
	seen := map[string]uint32{}
	for i, u := range res.UIDLs {
		if !ValidUIDL(u) {
			t.Errorf("invalid UIDL %q", u)
		}
		if other, dup := seen[u]; dup {
			t.Errorf("UIDL %q given to UIDs %d and %d", u, other, res.Messages[i].UID)
		}
		seen[u] = res.Messages[i].UID
	}
	for _, put := range res.Put {
		if put.UIDL != res.UIDLs[indexOf(res, put.UID)] {
			t.Errorf("stored %q for UID %d, shown %q", put.UIDL, put.UID, res.UIDLs[indexOf(res, put.UID)])
		}
	}
}

func indexOf(res Result, uid uint32) int {
	for i, m := range res.Messages {
		if m.UID == uid {
			return i
		}
	}
	return -1
}

func rec(uidl string, v, uid uint32, id string, size int64) Record {
	return Record{UIDL: uidl, UIDValidity: v, UID: uid, Fingerprint: fp(id, size)}
}

func TestAssign(t *testing.T) {
	const v1, v2 = 0x100, 0x200
	d1, d2 := derive(v1).Derive, derive(v2).Derive
	tests := []struct {
		name      string
		records   []Record
		v         uint32
		msgs      []msg
		fresh     Fresh
		want      []string // UIDLs in UID order
		need      int
		rematch   bool
		put       int
		matched   int
		freshN    int
		ambiguous int
	}{{
		name: "empty store: exactly the derived UIDLs",
		v:    v1,
		msgs: []msg{{2, 10, "b"}, {1, 10, "a"}, {7, 30, "c"}},
		want: []string{d1(1), d1(2), d1(7)},
		need: 3, put: 3, freshN: 3,
	}, {
		name:    "steady state: nothing to fetch or store",
		records: []Record{rec(d1(1), v1, 1, "a", 10), rec("OLD-b", v1, 2, "b", 10)},
		v:       v1,
		msgs:    []msg{{1, 10, ""}, {2, 10, ""}},
		want:    []string{d1(1), "OLD-b"},
	}, {
		name:    "new mail in the same UIDVALIDITY gets its derived UIDL, unmatched",
		records: []Record{rec(d1(1), v1, 1, "a", 10), rec("x", v2-1, 9, "n", 5)},
		v:       v1,
		msgs:    []msg{{1, 10, ""}, {3, 5, "n"}},
		want:    []string{d1(1), d1(3)},
		need:    1, put: 1, freshN: 1,
	}, {
		name:    "a derived UIDL an imported record holds gets a suffix",
		records: []Record{rec(d1(3), v1, 1, "a", 10)},
		v:       v1,
		msgs:    []msg{{1, 10, ""}, {3, 5, "n"}},
		want:    []string{d1(3), d1(3) + "~1"},
		need:    1, put: 1, freshN: 1,
	}, {
		name: "UIDVALIDITY change: every message keeps its UIDL",
		records: []Record{
			rec(d1(1), v1, 1, "a", 10), rec(d1(2), v1, 2, "b", 20), rec(d1(3), v1, 3, "c", 30),
		},
		v:    v2,
		msgs: []msg{{1, 30, "c"}, {2, 10, "a"}, {3, 20, "b"}},
		want: []string{d1(3), d1(1), d1(2)},
		need: 3, rematch: true, put: 3, matched: 3,
	}, {
		name: "identical copies are never merged: fresh UIDLs for both",
		records: []Record{
			rec(d1(1), v1, 1, "dup", 10), rec(d1(2), v1, 2, "dup", 10), rec(d1(3), v1, 3, "u", 10),
		},
		v:    v2,
		msgs: []msg{{1, 10, "dup"}, {2, 10, "dup"}, {3, 10, "u"}},
		want: []string{d2(1), d2(2), d1(3)},
		need: 3, rematch: true, put: 3, matched: 1, ambiguous: 2,
	}, {
		name:    "one copy left of two remembered: ambiguous, not matched",
		records: []Record{rec("A1", v1, 1, "dup", 10), rec("A2", v1, 2, "dup", 10)},
		v:       v2,
		msgs:    []msg{{5, 10, "dup"}},
		want:    []string{d2(5)},
		need:    1, rematch: true, put: 1, ambiguous: 1,
	}, {
		name:    "one added, one expunged around the change",
		records: []Record{rec("A", v1, 1, "a", 10), rec("B", v1, 2, "gone", 10)},
		v:       v2,
		msgs:    []msg{{1, 10, "a"}, {2, 10, "new"}},
		want:    []string{"A", d2(2)},
		need:    2, rematch: true, put: 2, matched: 1, freshN: 1,
	}, {
		name:    "an import marker and a parked record start no rematch, but stay taken",
		records: []Record{{UIDL: ImportMarker}, Parked(rec(d2(1), v1, 1, "a", 10))},
		v:       v2,
		msgs:    []msg{{1, 10, "a"}},
		want:    []string{d2(1) + "~1"},
		need:    1, put: 1, freshN: 1,
	}, {
		name:    "same header, other size: not the same message",
		records: []Record{rec("A", v1, 1, "a", 10)},
		v:       v2,
		msgs:    []msg{{1, 11, "a"}},
		want:    []string{d2(1)},
		need:    1, rematch: true, put: 1, freshN: 1,
	}, {
		name:    "no fingerprint fetched (expunged meanwhile): fresh",
		records: []Record{rec("A", v1, 1, "a", 10)},
		v:       v2,
		msgs:    []msg{{1, 10, ""}},
		want:    []string{d2(1)},
		need:    1, rematch: true, put: 1, freshN: 1,
	}, {
		name:    "same UIDVALIDITY but the sizes disagree: the records are stale, rematch",
		records: []Record{rec("A", v1, 1, "a", 10), rec("B", v1, 2, "b", 20)},
		v:       v1,
		msgs:    []msg{{1, 20, "b"}, {2, 10, "a"}},
		want:    []string{"B", "A"},
		need:    2, rematch: true, put: 2, matched: 2,
	}, {
		name: "format without %v: a matched UIDL takes a later message's derived one",
		records: []Record{
			{UIDL: "1", UIDValidity: v1, UID: 1, Fingerprint: fp("x", 10)},
		},
		v:     v2,
		msgs:  []msg{{1, 5, "y"}, {2, 10, "x"}},
		fresh: Fresh{Derive: func(uid uint32) string { return fmt.Sprint(uid) }, Sep: '~'},
		want:  []string{"1~1", "1"},
		need:  2, rematch: true, put: 2, matched: 1, freshN: 1,
	}, {
		name:    "a 70-character derived UIDL stays within 70 with its suffix",
		records: []Record{{UIDL: strings.Repeat("u", 69) + "1", UIDValidity: v1, UID: 9}},
		v:       v1,
		msgs:    []msg{{1, 5, "y"}},
		fresh:   Fresh{Derive: func(uid uint32) string { return strings.Repeat("u", 69) + fmt.Sprint(uid) }, Sep: '~'},
		want:    []string{strings.Repeat("u", 68) + "~1"},
		need:    1, put: 1, freshN: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.fresh
			if f.Derive == nil {
				f = derive(tt.v)
			}
			p, res := run(t, tt.records, tt.v, tt.msgs, f)
			if fmt.Sprint(res.UIDLs) != fmt.Sprint(tt.want) {
				t.Errorf("UIDLs = %q, want %q", res.UIDLs, tt.want)
			}
			if len(p.Need) != tt.need || p.Rematch != tt.rematch || len(res.Put) != tt.put {
				t.Errorf("need %d rematch %v put %d, want %d %v %d", len(p.Need), p.Rematch, len(res.Put), tt.need, tt.rematch, tt.put)
			}
			if res.Matched != tt.matched || res.Fresh != tt.freshN || res.Ambiguous != tt.ambiguous {
				t.Errorf("matched %d fresh %d ambiguous %d, want %d %d %d", res.Matched, res.Fresh, res.Ambiguous, tt.matched, tt.freshN, tt.ambiguous)
			}
			if res.Kept+res.Matched+res.Fresh+res.Ambiguous != len(tt.msgs) {
				t.Errorf("counts %+v do not add up to %d messages", res, len(tt.msgs))
			}
		})
	}
}

// TestAssignTwice checks that a second change after a rematch matches the
// records the first one wrote: a mailbox rebuilt twice keeps its UIDLs.
func TestAssignTwice(t *testing.T) {
	const v1, v2, v3 = 1, 2, 3
	var records []Record
	state := func(v uint32, msgs []msg) []string {
		_, res := run(t, records, v, msgs, derive(v))
		for _, p := range res.Put {
			replaced := false
			for i := range records {
				if records[i].UIDL == p.UIDL {
					records[i], replaced = p, true
				}
			}
			if !replaced {
				records = append(records, p)
			}
		}
		return res.UIDLs
	}
	first := state(v1, []msg{{1, 10, "a"}, {2, 10, "b"}})
	state(v2, []msg{{4, 10, "b"}, {5, 10, "a"}})
	third := state(v3, []msg{{1, 10, "a"}, {2, 10, "b"}, {3, 10, "c"}})
	if third[0] != first[0] || third[1] != first[1] || third[2] != derive(v3).Derive(3) {
		t.Fatalf("after two rebuilds %q, first %q", third, first)
	}
}

func TestMatchAllIgnoreSize(t *testing.T) {
	prev := []Record{rec("A", 0, 0, "a", 100), rec("B", 0, 0, "b", 100)}
	m := MatchAll(prev, []Fingerprint{fp("a", 98), fp("b", 100), {}}, MatchHeader)
	if m[0].Prev != 0 || m[1].Prev != 1 || m[2].Prev != -1 || m[2].Ambiguous {
		t.Fatalf("%+v", m)
	}
	if m := MatchAll(prev, []Fingerprint{fp("a", 98)}, MatchContent); m[0].Prev != -1 {
		t.Fatalf("size must count unless ignored: %+v", m)
	}
}

func TestKeyAndValid(t *testing.T) {
	if Key("alice@example.org", "INBOX") != "alice@example.org\tINBOX" || Key("a", "b") == Key("b", "a") {
		t.Fatal("unexpected key")
	}
	for s, ok := range map[string]bool{"a": true, "": false, strings.Repeat("a", 71): false, "a b": false, "~!": true} {
		if ValidUIDL(s) != ok {
			t.Errorf("ValidUIDL(%q) != %v", s, ok)
		}
	}
}

// TestAppendPlan checks the plan for new mail from a partial read of the
// map: never a rematch, derived UIDLs where free, a suffix where taken,
// and Incomplete (plan again with the whole map) when every variant it
// read is taken.
func TestAppendPlan(t *testing.T) {
	const v = 5
	f := derive(v)
	d := f.Derive
	// Only records of another UIDVALIDITY were read: a full plan would
	// rematch, an append plan must not.
	p := NewAppendPlan([]Record{rec("X", 1, 1, "n", 5)}, v, []Listed{{UID: 9, Size: 5}}, 3)
	res := p.Assign(map[uint32]Fingerprint{9: fp("n", 0)}, f)
	if p.Rematch || res.Incomplete || res.UIDLs[0] != d(9) || res.Fresh != 1 {
		t.Fatalf("plan %+v result %+v", p, res)
	}
	// Another replica already gave UID 9 its UIDL: kept, nothing to store.
	p = NewAppendPlan([]Record{rec("R", v, 9, "n", 5), rec("R", v, 9, "n", 5)}, v, []Listed{{UID: 9, Size: 5}}, 3)
	if res := p.Assign(nil, f); res.UIDLs[0] != "R" || len(res.Put) != 0 || len(p.Need) != 0 {
		t.Fatalf("kept: %+v", res)
	}
	taken := []Record{{UIDL: d(9), UID: 1, UIDValidity: 1}, {UIDL: Suffixed(d(9), '~', 1), UID: 2, UIDValidity: 1}}
	res = NewAppendPlan(taken, v, []Listed{{UID: 9, Size: 5}}, 3).Assign(nil, f)
	if res.UIDLs[0] != d(9)+"~2" {
		t.Fatalf("suffixed: %+v", res)
	}
	for i := 2; i <= 3; i++ {
		taken = append(taken, Record{UIDL: Suffixed(d(9), '~', i), UID: uint32(i + 1), UIDValidity: 1})
	}
	if res := NewAppendPlan(taken, v, []Listed{{UID: 9, Size: 5}}, 3).Assign(nil, f); !res.Incomplete || len(res.Put) != 0 {
		t.Fatalf("every candidate taken: %+v, want Incomplete", res)
	}
	if got := Candidates("abc", '~', 2); fmt.Sprint(got) != "[abc abc~1 abc~2]" {
		t.Fatalf("Candidates %q", got)
	}
}

// TestMatchAllBody checks that generated messages whose header fields and
// sizes are all the same are matched by their bodies' first octets, and
// that a body differing from a remembered one's is no match.
func TestMatchAllBody(t *testing.T) {
	gen := func(body string) Fingerprint { return Fingerprint{Size: 50, Hash: "same", Body: body} }
	prev := []Record{{UIDL: "A", Fingerprint: gen("a")}, {UIDL: "B", Fingerprint: gen("b")}, {UIDL: "C", Fingerprint: gen("c")}}
	m := MatchAll(prev, []Fingerprint{gen("c"), gen("a"), gen("x")}, MatchContent)
	if m[0].Prev != 2 || m[1].Prev != 0 || m[2].Prev != -1 || m[2].Ambiguous {
		t.Fatalf("by body: %+v", m)
	}
	// TOP n 0 has no body: header only, and then they are ambiguous.
	m = MatchAll(prev, []Fingerprint{gen("a")}, MatchHeader)
	if m[0].Prev != -1 || !m[0].Ambiguous {
		t.Fatalf("header only: %+v", m)
	}
	// A POP3 body prefix (TOP n 20) and another size: header and body.
	m = MatchAll(prev, []Fingerprint{{Size: 48, Hash: "same", Body: "b"}}, MatchHeaderBody)
	if m[0].Prev != 1 {
		t.Fatalf("header and body: %+v", m)
	}
	if h1, _ := HashBody(strings.NewReader(strings.Repeat("x", BodyPrefix) + "tail1")); h1 == "" {
		t.Fatal("no hash")
	} else if h2, _ := HashBody(strings.NewReader(strings.Repeat("x", BodyPrefix) + "tail2")); h1 != h2 {
		t.Fatal("HashBody read past BodyPrefix")
	}
}
