package upstream

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	good := []struct{ in, scheme, host string }{
		{"imaps://mail.example.com", SchemeIMAPS, "mail.example.com:993"},
		{"imaps://mail.example.com:10993", SchemeIMAPS, "mail.example.com:10993"},
		{"imaps://mail.example.com/", SchemeIMAPS, "mail.example.com:993"},
		{"IMAPS://Mail.Example.com", SchemeIMAPS, "mail.example.com:993"},
		{"imap://mail.example.com", SchemeIMAP, "mail.example.com:143"},
		{"imap+insecure://127.0.0.1", SchemeInsecure, "127.0.0.1:143"},
		{"imap+insecure://127.0.0.1:1143", SchemeInsecure, "127.0.0.1:1143"},
		{"imaps://[::1]:993", SchemeIMAPS, "[::1]:993"},
		{"imaps://[::1]", SchemeIMAPS, "[::1]:993"},
	}
	for _, tt := range good {
		u, err := ParseURL(tt.in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.in, err)
			continue
		}
		if u.Scheme != tt.scheme || u.Host != tt.host {
			t.Errorf("ParseURL(%q) = %s %s, want %s %s", tt.in, u.Scheme, u.Host, tt.scheme, tt.host)
		}
	}
	bad := []string{
		"", "mail.example.com", "mail.example.com:993", "pop3://h", "imapx://h", "http://h",
		"imaps://", "imaps://user@h", "imaps://user:pw@h", "imaps://h/INBOX", "imaps://h?x=1",
		"imaps://h#f", "imaps://h:0", "imaps://h:65536", "imaps://h:abc", "imaps://h:",
		"imaps:h", "imaps://h?",
	}
	for _, s := range bad {
		if u, err := ParseURL(s); err == nil {
			t.Errorf("ParseURL(%q) = %v, want error", s, u)
		}
	}
}

// TestParseURLRedacts: no error quotes a password given in the URL.
func TestParseURLRedacts(t *testing.T) {
	for _, s := range []string{"imaps://user:s3cret@h", "imaps://user:s3cret@h/INBOX", "pop3://user:s3cret@h", "imaps://user:s3cret@h:99999"} {
		_, err := ParseURL(s)
		if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "REDACTED@h") {
			t.Errorf("ParseURL(%q): %v", s, err)
		}
	}
}

func TestParseURLCanonical(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"imaps://imap.example.com", "imaps://imap.example.com:993"},
		{"imaps://imap.example.com/", "imaps://imap.example.com:993"},
		{"IMAPS://IMAP.Example.COM:10993", "imaps://imap.example.com:10993"},
		{"imap://mail", "imap://mail:143"},
		{"imap+insecure://127.0.0.1", "imap+insecure://127.0.0.1:143"},
		{"imap+insecure://[::1]:1143", "imap+insecure://[::1]:1143"},
		{"imaps://[2001:db8::1]", "imaps://[2001:db8::1]:993"},
	} {
		u, err := ParseURL(tc.in)
		if got := u.String(); err != nil || got != tc.want {
			t.Errorf("ParseURL(%q) = %q, %v; want %q", tc.in, u, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"imap.example.com", "no scheme"},
		{"http://imap.example.com", `unknown scheme "http"`},
		{"pop3://x", "unknown scheme"},
		{"imaps://", "no host"},
		{"imaps://:993", "no host"},
		{"imaps://user:secret@imap.example.com", "must not contain credentials"},
		{"imaps://imap.example.com/INBOX", "a path is not allowed"},
		{"imaps://imap.example.com?x=1", "a query is not allowed"},
		{"imaps://imap.example.com:0", "invalid port"},
		{"imaps://imap.example.com:99999", "invalid port"},
		{"imaps://imap.example.com:abc", "invalid"},
		{"imaps:imap.example.com", "want scheme://host[:port]"},
		{"imaps://imap.example.com\n", "invalid URL"},
	} {
		_, err := ParseURL(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURL(%q) error %v, want %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL error leaks the password: %v", err)
		}
	}
}
