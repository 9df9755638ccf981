package cli

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/bridge"
)

func TestReadPassword(t *testing.T) {
	for in, want := range map[string]string{"secret\n": "secret", "secret\r\n": "secret", "secret": "secret", "with space\n": "with space"} {
		if got, err := readPassword(strings.NewReader(in)); got != want || err != nil {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, in := range []string{"", "\n", "tab\there\n", strings.Repeat("x", 201) + "\n"} {
		if _, err := readPassword(strings.NewReader(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// run runs the command line in-process on a SQLite store in dir.
func runCLI(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{
		Getenv: func(k string) string {
			return map[string]string{"POPBRIDGE_STORE": "sqlite:" + filepath.Join(dir, "s.db"), "POPBRIDGE_SECRET_KEY_FILE": filepath.Join(dir, "k")}[k]
		},
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		OpenStore: bridge.OpenStore,
	}
	code := Run(args, env)
	return code, out.String(), errb.String()
}

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := runCLI(t, dir, "keygen"); code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"keygen"}, 2, "refusing to overwrite"},
		{[]string{"devices"}, 0, "No mailbox is enrolled"},
		{[]string{"devices", "--mailbox", "a@b.c"}, 1, "a@b.c is not enrolled"},
		{[]string{"revoke", "--mailbox", "a@b.c"}, 1, "a@b.c is not enrolled"},
		{[]string{"revoke"}, 2, "--mailbox is required"},
		{[]string{"enroll", "--mailbox", "a@b.c", "--device", "d", "--generate"}, 2, "resolves to auth passthrough"},
		{[]string{"enroll", "--mailbox", "a@b.c", "--device", "d", "--generate", "--password-stdin"}, 2, "exactly one of"},
		{[]string{"enroll", "--mailbox", "a@b.c", "--device", "d", "--generate", "--flow", "magic"}, 2, "--flow"},
		{[]string{"devices", "--no-such-flag"}, 2, "unknown flag"},
		{[]string{"nothing"}, 2, "unknown command"},
		{[]string{}, 2, "a command is required"},
	} {
		code, out, errs := runCLI(t, dir, tc.args...)
		if code != tc.code || !strings.Contains(out+errs, tc.want) || (code != 0 && strings.Count(errs, "\n") != 1) {
			t.Errorf("%q: status %d, out %q, err %q; want %d and %q", tc.args, code, out, errs, tc.code, tc.want)
		}
	}
	if code, out, _ := runCLI(t, dir, "--help"); code != 0 || !strings.Contains(out, "popbridge oauth enroll") {
		t.Errorf("--help: %d %q", code, out)
	}
}
