package pop3server

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzParseCommand: the parser never panics, the verb is at most four
// upper-case octets, and verb+arg always come from the line.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"USER alice", "PASS a b c", "LIST", "TOP 1 10", "retr 99999999999999999999",
		"AUTH PLAIN AGFsaWNlAHNlY3JldA==", "", " ", "STLS\x00", "ÄÖÜ x", "LIST  1", "DELE -1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		verb, arg := parseCommand(line)
		if len(verb) > 4 || verb != strings.ToUpper(verb) {
			t.Fatalf("verb %q", verb)
		}
		if !strings.HasSuffix(line, arg) {
			t.Fatalf("arg %q not from line %q", arg, line)
		}
		if args, ok := splitArgs(arg); ok {
			for _, a := range args {
				if a == "" || strings.Contains(a, " ") {
					t.Fatalf("bad split %q", args)
				}
				parseNumber(a)
			}
		}
	})
}

// FuzzDotWriter: un-stuffing the output gives the input with CRLF line
// ends (and a final CRLF), whatever the chunking.
func FuzzDotWriter(f *testing.F) {
	for _, s := range []string{"", ".", "..\r\n", "a\nb\r\nc", "\r\n.\r\n", ".x\n.\n", "\r", "a\r", "\r\r\n", "x\n\n"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		dw := newDotWriter(bw, Workarounds{})
		step := int(chunk%16) + 1
		for p := in; len(p) > 0; {
			n := min(step, len(p))
			if _, err := dw.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		dw.Close()
		bw.Flush()
		got, err := unstuff(out.Bytes())
		if err != nil {
			t.Fatalf("output %q: %v", out.Bytes(), err)
		}
		if want := crlf(in); !bytes.Equal(got, want) {
			t.Fatalf("in %q: unstuffed %q, want %q", in, got, want)
		}
	})
}

// unstuff reverses the multi-line encoding, checking its rules: CRLF line
// ends, a leading dot only as stuffing, and the final ".".
func unstuff(b []byte) ([]byte, error) {
	var out []byte
	for len(b) > 0 {
		i := bytes.Index(b, []byte("\r\n"))
		if i < 0 {
			return nil, errString("unterminated line")
		}
		line := b[:i]
		b = b[i+2:]
		if bytes.Equal(line, []byte(".")) {
			if len(b) != 0 {
				return nil, errString("data after terminator")
			}
			return out, nil
		}
		if bytes.IndexByte(line, '\n') >= 0 {
			return nil, errString("bare LF in output")
		}
		if len(line) > 0 && line[0] == '.' {
			if len(line) < 2 || line[1] != '.' {
				return nil, errString("unstuffed leading dot")
			}
			line = line[1:]
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	return nil, errString("no terminator")
}

// crlf is what the writer must deliver: bare LF as CRLF, a final CRLF.
func crlf(in []byte) []byte {
	var out []byte
	for i, c := range in {
		if c == '\n' && (i == 0 || in[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}

type errString string

func (e errString) Error() string { return string(e) }
