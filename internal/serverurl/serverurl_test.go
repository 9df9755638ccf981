package serverurl

import (
	"strings"
	"testing"
)

var ports = map[string]string{"x": "1", "x+plain": "2"}

func TestParse(t *testing.T) {
	for in, want := range map[string]string{
		"x://H.Example":      "x h.example:1",
		"X+PLAIN://h:0099/":  "x+plain h:99",
		"x://[2001:DB8::1]":  "x [2001:db8::1]:1",
		"x://127.0.0.1:6553": "x 127.0.0.1:6553",
	} {
		s, h, err := Parse(in, ports, "x:// or x+plain://")
		if got := s + " " + h; err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"h":                      "no scheme",
		"y://h":                  `unknown scheme "y"`,
		"x:h":                    "want scheme://host[:port]",
		"x://u:s3cret@h":         "must not contain credentials",
		"x://u:s3cret@h/INBOX":   "must not contain credentials",
		"x://u:s3cret@h:port":    "invalid URL",
		"x://h/INBOX":            "a path is not allowed",
		"x://h?a=b":              "a query is not allowed",
		"x://h#f":                "a fragment is not allowed",
		"x://":                   "no host",
		"x://h:0":                "invalid port",
		"x://h:":                 "empty port",
		"x://u:s3cret@h\n":       "invalid URL",
		"x://u:s3cret@h:99999/p": "must not contain credentials",
	} {
		_, _, err := Parse(in, ports, "x:// or x+plain://")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) error %v, want %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Parse(%q) error shows the password: %v", in, err)
		}
	}
}
