package config

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

// env is a fake environment.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "popbridge.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustURL(t *testing.T, s string) *upstream.URL {
	t.Helper()
	u, err := upstream.ParseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func mustUIDL(t *testing.T, s string) upstream.UIDLFormat {
	t.Helper()
	f, err := upstream.ParseUIDLFormat(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustLoad(t *testing.T, args []string, e env) *Config {
	t.Helper()
	c, err := Load(args, e.get)
	if err != nil {
		t.Fatalf("Load(%q): %v", args, err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := mustLoad(t, []string{"--upstream", "imaps://imap.example.com"}, nil)
	want := Config{
		Listen:            "127.0.0.1:1110",
		PlaintextAuth:     pop3server.PlaintextLocal,
		Upstream:          mustURL(t, "imaps://imap.example.com"),
		Mailbox:           "INBOX",
		DeletePolicy:      policy.Honor,
		DeleteAction:      policy.Action{Kind: policy.Expunge},
		MarkSeen:          true,
		UIDLFormat:        mustUIDL(t, "%08Xu%08Xv"),
		Auth:              AuthPassthrough,
		Store:             "sqlite:popbridge.db",
		QuarantineMailbox: "POPBRIDGE-QUARANTINE",
		QuarantineDays:    14,
		DeviceSeparator:   "#",
		DeviceExpiry:      30 * 24 * time.Hour,
		JournalRetention:  90 * 24 * time.Hour,
		DrainTimeout:      30 * time.Second,
		LogFormat:         "json",
		LogLevel:          zerolog.InfoLevel,
		Limits: pop3server.Limits{
			MaxLineLength:           1024,
			PreLoginIdleTimeout:     180 * time.Second,
			PreLoginTimeout:         180 * time.Second,
			IdleTimeout:             600 * time.Second,
			ReleaseAfter:            250 * time.Millisecond,
			WriteTimeout:            120 * time.Second,
			MaxBadCommandsPreLogin:  3,
			MaxBadCommandsPostLogin: 20,
			MaxLoginFailures:        3,
			AuthFailDelay:           2 * time.Second,
			AuthPenaltyMax:          15 * time.Second,
			MaxConnsPerIP:           10,
			MaxUserIPConns:          10,
			MaxSessions:             5000,
			MaxPreLoginConns:        1000,
		},
		LoginNegativeTTL:       5 * time.Minute,
		LoginUserBurst:         3,
		LoginUserInterval:      time.Minute,
		UpstreamDialTimeout:    10 * time.Second,
		UpstreamLoginTimeout:   30 * time.Second,
		UpstreamCommandTimeout: 60 * time.Second,
		CacheEntries:           10000,
		PrefetchBytes:          64 << 20,
		PrefetchSessionBytes:   1 << 20,
	}
	got := *c
	got.where = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if c.Policy() != policy.Default {
		t.Errorf("Policy() = %+v, want policy.Default", c.Policy())
	}
	if len(c.Warnings()) != 0 {
		t.Errorf("defaults warn: %q", c.Warnings())
	}
}

func TestEveryFlag(t *testing.T) {
	args := []string{
		"--listen", "[::1]:2110", "--listen-tls", ":995", "--tls-cert", "c.pem", "--tls-key", "k.pem",
		"--plaintext-auth", "never", "--upstream", "imap://Mail.Example.com:1143", "--upstream-ca", "ca.pem",
		"--mailbox", "POP", "--delete-policy", "on-download", "--delete-action", "move:Trash",
		"--mark-seen=false", "--uidl-format", "%u-%v", "--lock-session", "--client-workarounds", "oe-ns-eoh,outlook-no-nuls,oe-ns-eoh",
		"--proxy-protocol", "10.1.2.3/8, 192.0.2.7,2001:db8::/32", "--upstream-send-id", "--admin-listen", "127.0.0.1:0",
		"--ready-upstream-failures", "3",
		"--drain-timeout", "5s", "--log-format", "console", "--log-level", "DEBUG", "--demo",
		"--max-line-length", "2048", "--prelogin-idle-timeout", "1s", "--prelogin-timeout", "2s", "--idle-timeout", "20m",
		"--release-idle-after", "0",
		"--write-timeout", "3s", "--max-bad-commands-prelogin", "4", "--max-bad-commands", "5", "--max-login-failures", "6",
		"--auth-fail-delay", "1s", "--auth-penalty-max", "8s", "--max-conns-per-ip", "9", "--max-sessions", "10",
		"--max-userip-conns", "7", "--max-prelogin-conns", "8",
		"--login-negative-ttl", "30s", "--login-user-burst", "2", "--login-user-interval", "2m",
		"--upstream-dial-timeout", "11s", "--upstream-login-timeout", "12s", "--upstream-command-timeout", "13s",
		"--cache-entries", "0", "--cache-max-age", "1h", "--prefetch-bytes", "0", "--prefetch-session-bytes", "100",
		"--delete-dry-run", "--quarantine-mailbox", "Held", "--quarantine-days", "3", "--device-separator", "+",
		"--device-expiry", "48h", "--journal-retention", "240h", "--upstream-master-user", "admin",
		"--upstream-master-password-file", "master.pw", "--store", "sqlite:/var/lib/pb.db", "--data-dir", "/srv",
		"--auth", "passthrough", "--provider", "corp", "--secret-key-file", "popbridge.key",
	}
	c := mustLoad(t, args, nil)
	want := Config{
		Listen: "[::1]:2110", ListenTLS: ":995", TLSCert: "c.pem", TLSKey: "k.pem",
		PlaintextAuth: pop3server.PlaintextNever, Upstream: mustURL(t, "imap://mail.example.com:1143"), UpstreamCA: "ca.pem",
		UpstreamSendID: true, Mailbox: "POP", DeletePolicy: policy.OnDownload,
		DeleteAction: policy.Action{Kind: policy.Move, Mailbox: "Trash"}, MarkSeen: false,
		UIDLFormat: mustUIDL(t, "%u-%v"), LockSession: true,
		ClientWorkarounds: pop3server.Workarounds{OutlookNoNULs: true, OENSEOH: true},
		ProxyProtocol: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
			netip.MustParsePrefix("2001:db8::/32")},
		AdminListen: "127.0.0.1:0", DrainTimeout: 5 * time.Second, LogFormat: "console", LogLevel: zerolog.DebugLevel, Demo: true, ReadyUpstreamFailures: 3,
		Limits: pop3server.Limits{MaxLineLength: 2048, PreLoginIdleTimeout: time.Second, PreLoginTimeout: 2 * time.Second, IdleTimeout: 20 * time.Minute,
			ReleaseAfter: -1, WriteTimeout: 3 * time.Second, MaxBadCommandsPreLogin: 4, MaxBadCommandsPostLogin: 5, MaxLoginFailures: 6,
			AuthFailDelay: time.Second, AuthPenaltyMax: 8 * time.Second, MaxConnsPerIP: 9, MaxSessions: 10,
			MaxUserIPConns: 7, MaxPreLoginConns: 8},
		LoginNegativeTTL: 30 * time.Second, LoginUserBurst: 2, LoginUserInterval: 2 * time.Minute,
		UpstreamDialTimeout: 11 * time.Second, UpstreamLoginTimeout: 12 * time.Second, UpstreamCommandTimeout: 13 * time.Second,
		CacheEntries: 0, CacheMaxAge: time.Hour, PrefetchBytes: 0, PrefetchSessionBytes: 100,
		DeleteDryRun: true, QuarantineMailbox: "Held", QuarantineDays: 3, DeviceSeparator: "+",
		DeviceExpiry: 48 * time.Hour, JournalRetention: 240 * time.Hour, UpstreamMasterUser: "admin",
		UpstreamMasterPasswordFile: "master.pw", Store: "sqlite:/var/lib/pb.db", DataDir: "/srv",
		Auth: AuthPassthrough, Provider: "corp", SecretKeyFile: "popbridge.key",
	}
	got := *c
	got.where = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flags:\n got %+v\nwant %+v", got, want)
	}
	// Every setting was exercised by this test.
	for _, s := range settings {
		if s.name != "config" && c.Where(s.name) != "--"+s.name {
			t.Errorf("%s not set by TestEveryFlag", s.name)
		}
		if s.name != "config" && c.where[s.name] == "" {
			t.Errorf("%s has no recorded source", s.name)
		}
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
upstream: imaps://file.example
mailbox: FromFile
mark-seen: false
idle-timeout: 11m
client-workarounds: [oe-ns-eoh]
delete-action: move:FileTrash
`)
	full := env{
		"POPBRIDGE_MAILBOX":            "FromEnv",
		"POPBRIDGE_MARK_SEEN":          "true",
		"POPBRIDGE_IDLE_TIMEOUT":       "12m",
		"POPBRIDGE_CLIENT_WORKAROUNDS": "outlook-no-nuls",
		"POPBRIDGE_DELETE_ACTION":      "move:EnvTrash",
	}
	flags := []string{"--mailbox", "FromFlag", "--mark-seen=false", "--idle-timeout", "13m",
		"--client-workarounds", "oe-ns-eoh,outlook-no-nuls", "--delete-action", "flag"}

	type result struct {
		mailbox  string
		markSeen bool
		idle     time.Duration
		wa       []string
		action   string
	}
	check := func(name string, c *Config, want result) {
		t.Helper()
		got := result{c.Mailbox, c.MarkSeen, c.IdleTimeout, c.ClientWorkarounds.Names(), c.DeleteAction.String()}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}

	c := mustLoad(t, append([]string{"--config", file}, flags...), full)
	check("flag > env > file", c, result{"FromFlag", false, 13 * time.Minute, []string{"outlook-no-nuls", "oe-ns-eoh"}, "flag"})
	if c.Where("mailbox") != "--mailbox" {
		t.Errorf("Where(mailbox) = %q", c.Where("mailbox"))
	}

	c = mustLoad(t, []string{"--config", file}, full)
	check("env > file", c, result{"FromEnv", true, 12 * time.Minute, []string{"outlook-no-nuls"}, "move:EnvTrash"})
	if c.Where("mailbox") != "POPBRIDGE_MAILBOX" {
		t.Errorf("Where(mailbox) = %q", c.Where("mailbox"))
	}

	c = mustLoad(t, []string{"--config", file}, nil)
	check("file > default", c, result{"FromFile", false, 11 * time.Minute, []string{"oe-ns-eoh"}, "move:FileTrash"})
	if w := c.Where("mailbox"); w != "config "+file+":3: mailbox" {
		t.Errorf("Where(mailbox) = %q", w)
	}
	if c.Upstream.String() != "imaps://file.example:993" {
		t.Errorf("upstream from file = %q", c.Upstream)
	}

	c = mustLoad(t, []string{"--upstream", "imaps://x"}, nil)
	check("default", c, result{"INBOX", true, 10 * time.Minute, nil, "expunge"})
	if c.Where("mailbox") != "--mailbox" {
		t.Errorf("Where(mailbox) of a default = %q", c.Where("mailbox"))
	}
}

func TestConfigPathSources(t *testing.T) {
	a := writeFile(t, "upstream: imaps://a.example\n")
	b := writeFile(t, "upstream: imaps://b.example\n")
	c := mustLoad(t, nil, env{"POPBRIDGE_CONFIG": a})
	if c.Upstream.String() != "imaps://a.example:993" || c.ConfigFile != a {
		t.Errorf("config from env: %q %q", c.Upstream, c.ConfigFile)
	}
	c = mustLoad(t, []string{"--config", b}, env{"POPBRIDGE_CONFIG": a})
	if c.Upstream.String() != "imaps://b.example:993" || c.ConfigFile != b {
		t.Errorf("--config over env: %q %q", c.Upstream, c.ConfigFile)
	}
}

func TestBoolForms(t *testing.T) {
	for _, tc := range []struct {
		args []string
		e    env
		want bool
	}{
		{[]string{"--lock-session"}, nil, true},
		{[]string{"--lock-session=true"}, nil, true},
		{[]string{"--lock-session=FALSE"}, nil, false},
		{[]string{"-lock-session"}, nil, true},
		{nil, env{"POPBRIDGE_LOCK_SESSION": "True"}, true},
		{[]string{"--lock-session=false"}, env{"POPBRIDGE_LOCK_SESSION": "true"}, false},
	} {
		c := mustLoad(t, append(tc.args, "--demo"), tc.e)
		if c.LockSession != tc.want {
			t.Errorf("%q %v: LockSession = %v", tc.args, tc.e, c.LockSession)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		if _, err := Load([]string{arg}, nil); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Load(%q) = %v, want flag.ErrHelp", arg, err)
		}
	}
	u := Usage()
	for _, s := range settings {
		if !strings.Contains(u, "--"+s.name+" ") || !strings.Contains(u, envName(s.name)) {
			t.Errorf("Usage lacks --%s or %s", s.name, envName(s.name))
		}
	}
}

func TestEnvName(t *testing.T) {
	if got := envName("max-bad-commands-prelogin"); got != "POPBRIDGE_MAX_BAD_COMMANDS_PRELOGIN" {
		t.Errorf("envName = %q", got)
	}
}

func TestEmptyEnvIsUnset(t *testing.T) {
	c := mustLoad(t, []string{"--demo"}, env{"POPBRIDGE_LISTEN": "", "POPBRIDGE_MAILBOX": ""})
	if c.Listen != "127.0.0.1:1110" || c.Mailbox != "INBOX" {
		t.Errorf("empty variables changed settings: %q %q", c.Listen, c.Mailbox)
	}
	c = mustLoad(t, nil, env{"POPBRIDGE_DEMO": "true"})
	if !c.Demo {
		t.Error("POPBRIDGE_DEMO ignored")
	}
}

func TestListenDisabled(t *testing.T) {
	c := mustLoad(t, []string{"--demo", "--listen=", "--listen-tls", ":0", "--tls-cert", "c", "--tls-key", "k"}, nil)
	if c.Listen != "" {
		t.Errorf("--listen= kept %q", c.Listen)
	}
}

func TestTakeFlags(t *testing.T) {
	var mailbox string
	var gen bool
	rest, err := TakeFlags([]string{"--mailbox", "a@b", "--config", "f.yaml", "-generate", "--store=sqlite:x.db"},
		map[string]*string{"mailbox": &mailbox}, map[string]*bool{"generate": &gen})
	if err != nil || mailbox != "a@b" || !gen || strings.Join(rest, " ") != "--config f.yaml --store=sqlite:x.db" {
		t.Errorf("TakeFlags: %q %v %q %v", mailbox, gen, rest, err)
	}
	if _, err := TakeFlags([]string{"--mailbox"}, map[string]*string{"mailbox": &mailbox}, nil); err == nil {
		t.Error("--mailbox without a value accepted")
	}
}
