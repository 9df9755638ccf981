package uidlmap

import (
	"strings"
	"testing"
)

const fullHeader = "Return-Path: <a@example.org>\r\n" +
	"Received: from mx.example.org by imap.example.org; Mon, 1 Dec 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"Date: Mon, 1 Dec 2026 09:59:58 +0000\r\n" +
	"From: Alice <a@example.org>\r\n" +
	"To: bob@example.org,\r\n carol@example.org\r\n" +
	"Subject: hello\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"body\r\n"

func mustParse(t *testing.T, s string) Fingerprint {
	t.Helper()
	f, err := Parse(strings.NewReader(s), 100)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestParseSameMessageSameHash(t *testing.T) {
	want := mustParse(t, fullHeader)
	if want.MessageID != "<1@example.org>" || want.Date != "Mon, 1 Dec 2026 09:59:58 +0000" || want.Size != 100 || len(want.Hash) != 32 {
		t.Fatalf("fingerprint = %+v", want)
	}
	same := map[string]string{
		"LF line ends": strings.ReplaceAll(fullHeader, "\r\n", "\n"),
		// What BODY.PEEK[HEADER.FIELDS (...)] returns: the fields, in
		// another order here, and the blank line.
		"header fields only": "Subject: hello\r\nFrom: Alice <a@example.org>\r\nMessage-ID: <1@example.org>\r\n" +
			"To: bob@example.org,\r\n carol@example.org\r\nDate: Mon, 1 Dec 2026 09:59:58 +0000\r\n" +
			"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n",
		"unfolded, other spacing and case": "message-id:   <1@example.org>\nDATE: Mon, 1 Dec 2026 09:59:58 +0000\n" +
			"From: Alice <a@example.org>\nTo: bob@example.org,\tcarol@example.org  \nSubject: hello\n" +
			"Content-Type: multipart/mixed; boundary=\"b1\"\n",
		"extra trace headers":    "Delivered-To: bob@example.org\r\nX-Spam-Score: 1\r\n" + fullHeader,
		"no body, no blank line": strings.TrimSuffix(fullHeader, "\r\nbody\r\n"),
	}
	for name, in := range same {
		if got := mustParse(t, in); got != want {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	differ := map[string]string{
		"other subject":       strings.Replace(fullHeader, "hello", "hullo", 1),
		"other boundary":      strings.Replace(fullHeader, "b1", "b2", 1),
		"a field in the body": strings.Replace(fullHeader, "Subject: hello\r\n", "", 1) + "Subject: hello\r\n",
	}
	for name, in := range differ {
		if got := mustParse(t, in); got.Hash == want.Hash {
			t.Errorf("%s: same hash as the original", name)
		}
	}
}

func TestParseWithoutMessageID(t *testing.T) {
	a := mustParse(t, "From: scanner@example.org\r\nDate: Mon, 1 Dec 2026 10:00:00 +0000\r\nSubject: Scan\r\n\r\n")
	b := mustParse(t, "From: scanner@example.org\r\nDate: Mon, 1 Dec 2026 10:00:01 +0000\r\nSubject: Scan\r\n\r\n")
	if a.MessageID != "" || !a.Known() || a.Hash == b.Hash {
		t.Fatalf("a = %+v, b = %+v", a, b)
	}
	if empty := mustParse(t, ""); !empty.Known() {
		t.Fatal("an empty header must still have a hash (of nothing)")
	}
}

func TestParseLongLine(t *testing.T) {
	long := "Subject: " + strings.Repeat("x", 20000) + "\r\nMessage-ID: <2@x>\r\n\r\n"
	f := mustParse(t, long)
	if f.MessageID != "<2@x>" {
		t.Fatalf("message-id after a long line = %q", f.MessageID)
	}
}
