package soak

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestMessageBody(t *testing.T) {
	a, b := messageBody("u1", 7), messageBody("u1", 7)
	if !bytes.Equal(a, b) {
		t.Fatal("messageBody is not deterministic")
	}
	if bytes.Equal(a, messageBody("u1", 8)) || bytes.Equal(a, messageBody("u2", 7)) {
		t.Fatal("different messages have the same octets")
	}
	for serial := 1; serial <= 200; serial++ {
		m := messageBody("u1", serial)
		if bytes.Contains(bytes.ReplaceAll(m, []byte("\r\n"), nil), []byte("\n")) || bytes.Contains(bytes.ReplaceAll(m, []byte("\r\n"), nil), []byte("\r")) {
			t.Fatalf("message %d has a bare CR or LF", serial)
		}
		if !bytes.HasSuffix(m, []byte("\r\n")) || len(m) < 1<<10 || len(m) > 260<<10 {
			t.Fatalf("message %d: %d octets", serial, len(m))
		}
		user, s, ok := parseID(m)
		if !ok || user != "u1" || s != serial {
			t.Fatalf("parseID of message %d: %q %d %v", serial, user, s, ok)
		}
	}
}

func TestTopOf(t *testing.T) {
	body := []byte("A: 1\r\nB: 2\r\n\r\none\r\n.two\r\nthree\r\n")
	for lines, want := range map[int]string{
		0:        "A: 1\r\nB: 2\r\n\r\n",
		2:        "A: 1\r\nB: 2\r\n\r\none\r\n.two\r\n",
		99999999: string(body),
	} {
		if got := topOf(body, lines); string(got) != want {
			t.Errorf("topOf(%d) = %q, want %q", lines, got, want)
		}
	}
}

func TestMixPick(t *testing.T) {
	m := Mix{Poll: 1, Dele: 3}
	r := rand.New(rand.NewPCG(1, 2))
	var n [numKinds]int
	for i := 0; i < 4000; i++ {
		n[m.pick(r)]++
	}
	if n[Poll]+n[Dele] != 4000 || n[Dele] < 2*n[Poll] {
		t.Fatalf("picks %v", n)
	}
}

// TestAudit: every fate of a message is classified, and each kind of
// wrong outcome is reported.
func TestAudit(t *testing.T) {
	l := newLedger()
	for uid := uint32(1); uid <= 9; uid++ {
		l.store("u", uid, int(uid))
	}
	k := func(uid uint32) msgKey { return msgKey{"u", uid} }
	l.mark(l.expunged, k(2))
	l.mark(l.deleted, k(3), k(4)) // 4 stays: "not done"
	l.mark(l.maybe, k(5))
	l.mark(l.vanished, k(6)) // 6 is still there: wrong
	l.claim(k(7), 8)         // UID 7 served message 8: wrong
	final := map[string]map[uint32][]byte{"u": {
		1:  messageBody("u", 1),
		4:  messageBody("u", 4),
		6:  messageBody("u", 6),
		7:  messageBody("u", 7),
		8:  []byte("garbage"), // corrupt
		42: messageBody("u", 42),
		// 9 is gone and nobody removed it: lost
	}}
	a := l.audit(final)
	if a.OK() {
		t.Fatal("audit passed")
	}
	check := func(name string, got []string, want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	check("Lost", a.Lost, "u UID 9")
	check("Corrupt", a.Corrupt, "u UID 8")
	check("Unknown", a.Unknown, "u UID 42")
	check("NotDone", a.NotDone, "u UID 4")
	check("BadClaims", a.BadClaims, "answered no such message but still there: u UID 6", "u UID 7 served message 8, is 7")
	if a.Stored != 9 || a.Present != 5 || a.ExpungedIMP != 1 || a.DeletedPOP3 != 1 || a.MaybePOP3 != 1 {
		t.Errorf("counts %+v", a)
	}

	clean := newLedger()
	clean.store("u", 1, 1)
	clean.store("u", 2, 2)
	clean.mark(clean.deleted, k(2))
	if a := clean.audit(map[string]map[uint32][]byte{"u": {1: messageBody("u", 1)}}); !a.OK() {
		t.Fatalf("clean audit failed: %+v", a)
	}
}
