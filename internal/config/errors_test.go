package config

import (
	"strings"
	"testing"
)

// checkErr loads and expects an error of one line containing every want.
func checkErr(t *testing.T, name string, args []string, e env, want ...string) {
	t.Helper()
	_, err := Load(args, e.get)
	if err == nil {
		t.Errorf("%s: Load succeeded, want error containing %q", name, want)
		return
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("%s: error is not one line: %q", name, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: error %q does not contain %q", name, msg, w)
		}
	}
}

func TestFlagAndEnvErrors(t *testing.T) {
	up := []string{"--upstream", "imaps://imap.example.com"}
	for _, tc := range []struct {
		name string
		args []string
		env  env
		want []string
	}{
		{"flag policy", []string{"--delete-policy", "x"}, nil, []string{`--delete-policy: unknown delete policy "x" (want honor, leave or on-download)`}},
		{"env policy", nil, env{"POPBRIDGE_DELETE_POLICY": "x"}, []string{`POPBRIDGE_DELETE_POLICY: unknown delete policy "x"`}},
		{"action typo", []string{"--delete-action", "mvoe:Trash"}, nil, []string{`--delete-action: unknown delete action "mvoe:Trash" (want expunge, flag, move:MAILBOX or quarantine)`}},
		{"move without mailbox", []string{"--delete-action", "move:"}, nil, []string{"--delete-action:", "names no mailbox"}},
		{"move with CRLF", nil, env{"POPBRIDGE_DELETE_ACTION": "move:a\r\nb"}, []string{"POPBRIDGE_DELETE_ACTION:", "control character"}},
		{"upstream scheme", []string{"--upstream", "https://x"}, nil, []string{"--upstream:", `unknown scheme "https"`}},
		{"upstream host", []string{"--upstream", "imaps://"}, nil, []string{"--upstream:", "no host"}},
		{"upstream env", nil, env{"POPBRIDGE_UPSTREAM": "imap://u:pw@h"}, []string{"POPBRIDGE_UPSTREAM:", "credentials", "imap://REDACTED@h"}},
		{"log level", []string{"--log-level", "verbose"}, nil, []string{"--log-level:", `unknown log level "verbose"`}},
		{"log format", []string{"--log-format", "text"}, nil, []string{"--log-format:", `unknown value "text" (want json, console)`}},
		{"plaintext-auth", []string{"--plaintext-auth", "sometimes"}, nil, []string{"--plaintext-auth:", `"sometimes"`, "local, always, never"}},
		{"cidr", []string{"--proxy-protocol", "10.0.0.0/8,10.0.0.0/33"}, nil, []string{"--proxy-protocol:", `invalid network "10.0.0.0/33"`}},
		{"cidr garbage", nil, env{"POPBRIDGE_PROXY_PROTOCOL": "lb.example"}, []string{"POPBRIDGE_PROXY_PROTOCOL:", `"lb.example"`}},
		{"cidr zone", []string{"--proxy-protocol", "fe80::1%eth0"}, nil, []string{"--proxy-protocol:", "zones"}},
		{"workaround", []string{"--client-workarounds", "outlook-no-nuls,outlook"}, nil, []string{"--client-workarounds:", `unknown client workaround "outlook"`}},
		{"duration zero", []string{"--idle-timeout", "0s"}, nil, []string{"--idle-timeout:", "must be positive"}},
		{"duration negative", []string{"--drain-timeout", "-1s"}, nil, []string{"--drain-timeout:", "must be positive"}},
		{"duration unit", nil, env{"POPBRIDGE_PRELOGIN_TIMEOUT": "180"}, []string{"POPBRIDGE_PRELOGIN_TIMEOUT:", `invalid duration "180"`}},
		{"cache age negative", []string{"--cache-max-age", "-1m"}, nil, []string{"--cache-max-age:", "below"}},
		{"int", []string{"--max-sessions", "many"}, nil, []string{"--max-sessions:", `invalid number "many"`}},
		{"int zero", []string{"--max-conns-per-ip", "0"}, nil, []string{"--max-conns-per-ip:", "below the minimum 1"}},
		{"line length", []string{"--max-line-length", "100"}, nil, []string{"--max-line-length:", "minimum 255"}},
		{"cache negative", []string{"--cache-entries", "-1"}, nil, []string{"--cache-entries:", "minimum 0"}},
		{"bool", []string{"--mark-seen=yes"}, nil, []string{"--mark-seen:", `invalid boolean "yes"`}},
		{"bool env", nil, env{"POPBRIDGE_DEMO": "1"}, []string{"POPBRIDGE_DEMO:", `invalid boolean "1"`}},
		{"address", []string{"--listen", "1110"}, nil, []string{"--listen:", `invalid address "1110"`}},
		{"admin address", []string{"--admin-listen", "localhost:http"}, nil, []string{"--admin-listen:", "bad port"}},
		{"mailbox empty", []string{"--mailbox", " "}, nil, []string{"--mailbox:", "empty"}},
		{"mailbox control", nil, env{"POPBRIDGE_MAILBOX": "IN\rBOX"}, []string{"POPBRIDGE_MAILBOX:", "control character"}},
		{"uidl format", []string{"--uidl-format", "%u %v"}, nil, []string{"--uidl-format:", "not allowed in a UIDL"}},
		{"unknown flag", []string{"--delete-polcy", "x"}, nil, []string{"--delete-polcy: unknown flag"}},
		{"missing value", []string{"--mailbox"}, nil, []string{"--mailbox: needs a value"}},
		{"positional", []string{"serve"}, nil, []string{`unexpected argument "serve"`}},
		{"bool with space", []string{"--mark-seen", "false"}, nil, []string{`unexpected argument "false" (write a boolean as --flag=false)`}},
		{"config unreadable", []string{"--config", "/nonexistent/popbridge.yaml"}, nil, []string{"config /nonexistent/popbridge.yaml:", "no such file"}},

		// Cross-key checks.
		{"no upstream", nil, nil, []string{"--upstream: required unless --demo"}},
		{"cert without key", []string{"--tls-cert", "c.pem"}, nil, []string{"--tls-cert: set without tls-key"}},
		{"key without cert", nil, env{"POPBRIDGE_TLS_KEY": "k.pem"}, []string{"POPBRIDGE_TLS_KEY: set without tls-cert"}},
		{"listen-tls without cert", []string{"--listen-tls", ":995"}, nil, []string{"--listen-tls: needs tls-cert and tls-key"}},
		{"nothing to serve", []string{"--listen="}, nil, []string{"--listen: empty and no listen-tls"}},
		{"never without TLS", []string{"--plaintext-auth", "never"}, nil, []string{"--plaintext-auth: never, but no tls-cert"}},
		{"penalty below delay", []string{"--auth-fail-delay", "20s"}, nil, []string{"--auth-penalty-max: 15s is below auth-fail-delay 20s"}},
		{"move into maildrop", []string{"--delete-action", "move:inbox"}, nil, []string{"--delete-action: delete-action move:inbox moves into the served mailbox"}},
		{"move into custom maildrop", []string{"--mailbox", "POP", "--delete-action", "move:POP"}, nil, []string{"moves into the served mailbox \"POP\""}},
	} {
		args := tc.args
		if tc.name != "no upstream" && !strings.HasPrefix(tc.name, "upstream") {
			args = append(append([]string(nil), up...), args...)
		}
		if tc.name == "positional" || tc.name == "missing value" || tc.name == "bool with space" {
			args = append(append([]string(nil), up...), tc.args...)
		}
		checkErr(t, tc.name, args, tc.env, tc.want...)
	}
}

// "move:Pop" is not the maildrop "POP": only INBOX is case-insensitive.
func TestMoveCaseSensitiveMailbox(t *testing.T) {
	mustLoad(t, []string{"--demo", "--mailbox", "POP", "--delete-action", "move:Pop"}, nil)
}

// Values a higher source overrides are still validated.
func TestOverriddenValuesValidated(t *testing.T) {
	checkErr(t, "bad env under flag", []string{"--demo", "--delete-policy", "leave"},
		env{"POPBRIDGE_DELETE_POLICY": "x"}, "POPBRIDGE_DELETE_POLICY: unknown delete policy")
	file := writeFile(t, "delete-policy: x\n")
	checkErr(t, "bad file under flag", []string{"--demo", "--config", file, "--delete-policy", "leave"},
		nil, "config "+file+":1: delete-policy: unknown delete policy")
}
