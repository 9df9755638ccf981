package upstream

import (
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-imap/v2"
)

func TestGuardReader(t *testing.T) {
	var bodies atomic.Bool
	read := func(in string) error {
		g := &guardReader{r: iotest.OneByteReader(strings.NewReader(in)), bodies: &bodies}
		out, err := io.ReadAll(g)
		if err == nil && string(out) != in {
			t.Errorf("guard changed the stream")
		}
		return err
	}
	long := strings.Repeat("x", maxResponseLine+1)
	bigLit := "* 1 FETCH (UID 1 BODY[] {" + itoa(maxLiteral+1) + "}\r\n" + strings.Repeat("y", maxLiteral+1) + ")\r\n"

	if err := read("* OK fine\r\n* 1 FETCH (UID 1 BODY[] {5}\r\n\r\n\r\n)\r\nT1 OK\r\n"); err != nil {
		t.Errorf("small literal: %v", err)
	}
	// A literal's content is not a line: CR LF inside it do not count,
	// and its length does not count against the line limit.
	if err := read("* 1 FETCH (BODY[] {" + itoa(maxResponseLine+10) + "}\r\n" + long + "123456789)\r\n"); err == nil {
		t.Error("a literal over maxLiteral outside a body passed")
	}
	bodies.Store(true)
	if err := read(bigLit); err != nil {
		t.Errorf("big literal while a body streams: %v", err)
	}
	if err := read("* 1 FETCH (BODY[] {" + itoa(maxResponseLine+10) + "}\r\n" + long + "123456789)\r\n"); err != nil {
		t.Errorf("literal longer than a line while a body streams: %v", err)
	}
	bodies.Store(false)
	if err := read(bigLit); err == nil {
		t.Error("big literal outside a body passed")
	}
	if err := read("* SEARCH " + long + "\r\n"); !errors.Is(err, errResponseTooLong) {
		t.Errorf("long line: %v", err)
	}
	if err := read("* SEARCH " + strings.Repeat("1 ", maxResponseLine/4) + "\r\n* OK\r\n"); err != nil {
		t.Errorf("long but legal line: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestLiteralAtEnd(t *testing.T) {
	tests := []struct {
		in   string
		n    int64
		isLi bool
	}{
		{"* 1 FETCH (BODY[] {12}\r", 12, true},
		{"{0}\r", 0, true},
		{"A1 LOGIN {5+}\r", 5, true},
		{"* OK text}\r", 0, false},
		{"* OK {x}\r", 0, false},
		{"{}\r", 0, false},
		{"* OK\r", 0, false},
	}
	for _, tt := range tests {
		n, ok := literalAtEnd([]byte(tt.in))
		if n != tt.n || ok != tt.isLi {
			t.Errorf("literalAtEnd(%q) = %d, %v", tt.in, n, ok)
		}
	}
}

func TestUIDSets(t *testing.T) {
	got := uidSets([]uint32{1, 2, 3, 5, 7, 8, 100})
	if len(got) != 1 || got[0].String() != "1:3,5,7:8,100" {
		t.Errorf("uidSets = %v", got)
	}
	if uidSets(nil) != nil {
		t.Error("uidSets(nil) not nil")
	}
	// Scattered UIDs split into sets that each fit a command line and
	// together hold every UID once.
	var uids []uint32
	for i := uint32(1); i <= 20000; i++ {
		uids = append(uids, 1_000_000+2*i)
	}
	sets := uidSets(uids)
	if len(sets) < 2 {
		t.Fatalf("%d sets", len(sets))
	}
	var all []imap.UID
	for _, s := range sets {
		if len(s.String()) > maxSetLen {
			t.Errorf("set of %d characters", len(s.String()))
		}
		nums, _ := s.Nums()
		all = append(all, nums...)
	}
	want := make([]imap.UID, len(uids))
	for i, u := range uids {
		want[i] = imap.UID(u)
	}
	if !slices.Equal(all, want) {
		t.Error("sets do not hold exactly the UIDs")
	}
}
