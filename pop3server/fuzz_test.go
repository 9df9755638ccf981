package pop3server

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
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

// FuzzSASL drives the AUTH decoding path: strict base64, then the PLAIN or
// LOGIN exchange, then the credential gate before Backend.Login.
// Invariants:
//   - decodeSASL accepts only canonical base64 (re-encoding gives the
//     input back) or "=" for empty, and never returns empty otherwise;
//   - a finished exchange yields exactly the credentials the client
//     encoded (PLAIN: authzid empty or equal to the user; LOGIN: the two
//     responses);
//   - the gate passes exactly the credentials an independent oracle
//     accepts: user valid UTF-8 without any Unicode control character or
//     white space (a space would split USER name password),
//     password without C0 controls or DEL, both non-empty and within the
//     length limits. So nothing that passes can carry NUL, CR or LF into
//     an IMAP command.
func FuzzSASL(f *testing.F) {
	b64 := base64.StdEncoding.EncodeToString
	for _, s := range [][4]string{
		{"PLAIN", b64([]byte("\x00alice\x00secret")), "", ""},
		{"plain", "", b64([]byte("alice\x00alice\x00secret")), ""},
		{"PLAIN", b64([]byte("bob\x00alice\x00secret")), "", ""},
		{"PLAIN", "=", "", ""},
		{"PLAIN", b64([]byte("\x00alice\x00sec\r\nA1 LOGOUT")), "", ""},
		{"PLAIN", "AGFsaWNlAHNlY3JldB==", "", ""},
		{"PLAIN", "AGFsaWNl\rAHNlY3JldA==", "", ""},
		{"LOGIN", "", b64([]byte("alice")), b64([]byte("secret"))},
		{"LOGIN", b64([]byte("alice")), b64([]byte("secret")), ""},
		{"LOGIN", "=", "=", ""},
		{"LOGIN", b64([]byte("al\x00ice")), b64([]byte("x")), ""},
		{"LOGIN", b64([]byte("j\u00fcrgen\u0085")), b64([]byte("\xff\xfe")), ""},
		{"LOGIN", b64([]byte(" 4")), b64([]byte("-4")), ""}, // a user with white space is refused
		{"CRAM-MD5", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, mech, ir, r1, r2 string) {
		for _, s := range []string{ir, r1, r2} {
			b, ok := decodeSASL(s)
			switch {
			case !ok:
			case s == "=":
				if len(b) != 0 {
					t.Fatalf("decodeSASL(=) = %q", b)
				}
			case len(b) == 0 || base64.StdEncoding.EncodeToString(b) != s:
				t.Fatalf("decodeSASL(%q) = %q: not canonical base64", s, b)
			}
		}

		srv, creds := newSASLServer(mech)
		if srv == nil {
			if m := strings.ToUpper(mech); m == "PLAIN" || m == "LOGIN" {
				t.Fatalf("mechanism %q not served", mech)
			}
			return
		}
		// What the server reads, as handleAuth feeds it: no initial
		// response is nil, then one decoded line per challenge.
		var decoded [][]byte
		var resp []byte
		if ir != "" {
			var ok bool
			if resp, ok = decodeSASL(ir); !ok {
				return
			}
		}
		lines := []string{r1, r2}
		done := false
		for step := 0; step < 4 && !done; step++ {
			if resp != nil {
				decoded = append(decoded, resp)
			}
			var err error
			_, done, err = srv.Next(resp)
			if err != nil {
				return // refused: answered -ERR [AUTH]
			}
			if done {
				break
			}
			if len(lines) == 0 {
				return
			}
			var ok bool
			if resp, ok = decodeSASL(lines[0]); !ok {
				return
			}
			lines = lines[1:]
		}
		if !done {
			return
		}
		user, pass := creds.user, creds.pass
		switch strings.ToUpper(mech) {
		case "PLAIN":
			last := string(decoded[len(decoded)-1])
			if last != "\x00"+user+"\x00"+pass && last != user+"\x00"+user+"\x00"+pass {
				t.Fatalf("PLAIN %q gave user %q password %q", last, user, pass)
			}
		case "LOGIN":
			if len(decoded) != 2 || string(decoded[0]) != user || string(decoded[1]) != pass {
				t.Fatalf("LOGIN %q gave user %q password %q", decoded, user, pass)
			}
		}
		gate := checkCredentials(user, pass) == nil
		oracle := len(user) > 0 && len(user) <= maxUsernameLen && utf8.ValidString(user) &&
			!strings.ContainsFunc(user, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) &&
			len(pass) > 0 && len(pass) <= maxPasswordLen && !strings.ContainsAny(pass, asciiControls)
		if gate != oracle {
			t.Fatalf("gate(%q, %q) = %v, oracle says %v", user, pass, gate, oracle)
		}
		if gate && strings.ContainsAny(user+pass, "\x00\r\n") {
			t.Fatalf("gate passed NUL, CR or LF: %q %q", user, pass)
		}
	})
}

// asciiControls is C0 and DEL.
var asciiControls = func() string {
	var b []byte
	for c := byte(0); c < 0x20; c++ {
		b = append(b, c)
	}
	return string(append(b, 0x7f))
}()

// BenchmarkDotWriter writes a 1 MiB message of 76-octet CRLF lines, one
// in a thousand starting with a dot, in 32 KiB chunks as writeBody does.
func BenchmarkDotWriter(b *testing.B) {
	var msg []byte
	for i := 0; len(msg) < 1<<20; i++ {
		line := bytes.Repeat([]byte{'a' + byte(i%26)}, 74)
		if i%1000 == 999 {
			line[0] = '.'
		}
		msg = append(append(msg, line...), '\r', '\n')
	}
	bw := bufio.NewWriterSize(io.Discard, 32<<10)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		dw := newDotWriter(bw, Workarounds{})
		for p := msg; len(p) > 0; {
			n := min(32<<10, len(p))
			dw.Write(p[:n])
			p = p[n:]
		}
		dw.Close()
		bw.Flush()
	}
}
