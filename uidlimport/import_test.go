package uidlimport

import (
	"fmt"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/uidlmap"
	"github.com/popbridge/popbridge/upstream"
)

func TestParseAccounts(t *testing.T) {
	in := "# users\nalice secret\n\nbob  pass with spaces \r\n\tcarol\tx\n"
	got, err := ParseAccounts(strings.NewReader(in), "f")
	if err != nil {
		t.Fatal(err)
	}
	want := []Account{{"alice", "secret", 2}, {"bob", "pass with spaces ", 4}, {"carol", "x", 5}}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"alice\n", "alice s1\nalice s2\n"} {
		_, err := ParseAccounts(strings.NewReader(bad), "f")
		if err == nil || strings.Contains(err.Error(), "s1") || strings.Contains(err.Error(), "s2") {
			t.Errorf("%q: %v (must fail without showing a password)", bad, err)
		}
	}
}

func TestParseFlags(t *testing.T) {
	f, rest, err := ParseFlags([]string{"--upstream", "imaps://x", "--from=pop3s://old", "--mailboxes", "m.txt", "--dry-run", "--store", "none", "--json", "--concurrency", "8"})
	if err != nil {
		t.Fatal(err)
	}
	if f.From != "pop3s://old" || f.Mailboxes != "m.txt" || !f.DryRun || !f.JSON || f.Concurrency != 8 {
		t.Errorf("%+v", f)
	}
	if strings.Join(rest, " ") != "--upstream imaps://x --store none" {
		t.Errorf("rest %q", rest)
	}
	for _, bad := range [][]string{{"--mailboxes", "m"}, {"--from", "x"}, {"--from", "x", "--mailboxes", "m", "--concurrency", "0"}} {
		if _, _, err := ParseFlags(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseServer(t *testing.T) {
	for in, want := range map[string]string{
		"pop3s://old.example.org":        "pop3s old.example.org:995",
		"pop3://old.example.org":         "pop3 old.example.org:110",
		"pop3+insecure://127.0.0.1:1110": "pop3+insecure 127.0.0.1:1110",
	} {
		s, err := ParseServer(in)
		if err != nil || s.Scheme+" "+s.Host != want {
			t.Errorf("%s: %+v %v", in, s, err)
		}
	}
	for _, bad := range []string{"imaps://x", "pop3s://u:p@x", "pop3s://x/INBOX", "pop3s://", "pop3s://u:s3cret@x/INBOX", "pop3s://u:s3cret@x:port"} {
		_, err := ParseServer(bad)
		if err == nil {
			t.Errorf("%s accepted", bad)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the password: %v", bad, err)
		}
	}
}

func TestMatch(t *testing.T) {
	fp := func(h string, size int64) uidlmap.Fingerprint { return uidlmap.Fingerprint{Hash: h, Size: size} }
	withBody := func(f uidlmap.Fingerprint, b string) uidlmap.Fingerprint { f.Body = b; return f }
	old := []oldMessage{
		{1, "u-a", fp("a", 100)}, {2, "u-b", fp("b", 100)}, {3, "u-dup1", fp("d", 5)}, {4, "u-dup2", fp("d", 5)},
		{5, "u-gone", fp("g", 5)}, {6, "u-twice", fp("t", 5)}, {7, "u-twice", fp("t2", 5)}, {8, "bad uidl", fp("bad", 5)},
		{9, "u-gen9", fp("gen", 5)}, {10, "u-gen10", fp("gen", 5)},
	}
	imap := &upstream.MailboxFingerprints{
		UIDValidity: 7,
		Messages: []uidlmap.Listed{{UID: 1, Size: 98}, {UID: 2, Size: 100}, {UID: 3, Size: 5}, {UID: 4, Size: 5},
			{UID: 5, Size: 5}, {UID: 6, Size: 5}, {UID: 7, Size: 5}, {UID: 8, Size: 5}},
		Fingerprints: map[uint32]uidlmap.Fingerprint{
			1: withBody(fp("a", 98), "x"), 2: withBody(fp("b", 100), "x"), 3: withBody(fp("d", 5), "same"), 4: withBody(fp("d", 5), "same"),
			5: withBody(fp("t", 5), "x"), 6: withBody(fp("bad", 5), "x"), 7: withBody(fp("gen", 5), "b10"), 8: withBody(fp("gen", 5), "b9"),
		},
	}
	var asked []int
	body := func(n int) (string, error) {
		asked = append(asked, n)
		if n == 3 || n == 4 {
			return "same", nil
		}
		return fmt.Sprint("b", n), nil
	}
	var r Report
	recs, err := match(old, imap, &r, body)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint32{}
	for _, rec := range recs {
		if rec.UIDValidity != 7 {
			t.Errorf("%+v", rec)
		}
		got[rec.UIDL] = rec.UID
	}
	// a matches despite another size (LF vs CRLF on the old server); the
	// generated pair by body; the copies, the UIDL the old server used
	// twice and the invalid UIDL are never imported.
	if len(got) != 4 || got["u-a"] != 1 || got["u-b"] != 2 || got["u-gen9"] != 8 || got["u-gen10"] != 7 {
		t.Errorf("imported %v", got)
	}
	if r.Matched != 4 || r.Ambiguous != 2 || r.Unmatched != 4 {
		t.Errorf("report %+v", r)
	}
	// Bodies are read only for shared headers.
	if fmt.Sprint(asked) != "[3 4 9 10]" {
		t.Errorf("bodies read for %v", asked)
	}
}
