package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

// setting is one key: its flag, variable and YAML names derive from name.
type setting struct {
	name  string
	arg   string // placeholder in Usage; "" for booleans
	def   string // default, as text in any source would give it
	usage string
	list  bool // the file may give a YAML sequence
	set   func(c *Config, v string) error
}

func (s setting) isBool() bool { return s.arg == "" }

// flag is how Usage and FlagTable show the key: "--name ARG", or
// "--name" for a boolean.
func (s setting) flag() string {
	if s.isBool() {
		return "--" + s.name
	}
	return "--" + s.name + " " + s.arg
}

// envName is the environment variable for a key.
func envName(key string) string {
	return "POPBRIDGE_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// settings is every key, in Usage order: the one table behind Load, the
// file's keys, Usage and FlagTable.
var settings = []setting{
	str("listen", "ADDR", "127.0.0.1:1110", "plain POP3 listener (STLS when TLS is configured); empty disables", func(c *Config) *string { return &c.Listen }, checkAddr),
	str("listen-tls", "ADDR", "", "implicit-TLS POP3S listener (RFC 8314)", func(c *Config) *string { return &c.ListenTLS }, checkAddr),
	str("tls-cert", "FILE", "", "server certificate chain, PEM; reloaded on SIGHUP", func(c *Config) *string { return &c.TLSCert }, nil),
	str("tls-key", "FILE", "", "server private key, PEM (a path: the secret stays in its file)", func(c *Config) *string { return &c.TLSKey }, nil),
	{name: "plaintext-auth", arg: strings.Join(pop3server.PlaintextAuthNames(), "|"), def: "local", usage: "where cleartext logins are allowed without TLS",
		set: func(c *Config, v string) (err error) {
			c.PlaintextAuth, err = pop3server.ParsePlaintextAuth(v)
			return err
		}},
	{name: "upstream", arg: "URL", usage: "imaps://host[:993], imap://host[:143] (STARTTLS) or imap+insecure://host[:143]; required unless --demo",
		set: func(c *Config, v string) (err error) {
			if v == "" {
				c.Upstream = nil
				return nil
			}
			c.Upstream, err = upstream.ParseURL(v)
			return err
		}},
	str("upstream-ca", "FILE", "", "extra CA bundle for the upstream (default: system roots)", func(c *Config) *string { return &c.UpstreamCA }, nil),
	str("mailbox", "NAME", "INBOX", "IMAP mailbox served as the POP3 maildrop", func(c *Config) *string { return &c.Mailbox }, checkMailbox),
	{name: "delete-policy", arg: "honor|leave|on-download", def: "honor", usage: "what DELE and a full RETR do at QUIT; leave without --store shows a deleted message again at the next session (clients that delete download it again): use honor with --delete-action flag where IMAP users must keep the mail",
		set: func(c *Config, v string) (err error) { c.DeletePolicy, err = policy.ParseDeletePolicy(v); return err }},
	{name: "delete-action", arg: "expunge|flag|move:MAILBOX", def: "expunge", usage: "what applying a delete means upstream",
		set: func(c *Config, v string) (err error) { c.DeleteAction, err = policy.ParseAction(v); return err }},
	str("store", "URL", "sqlite:popbridge.db", "state store: sqlite:PATH (relative to --data-dir), postgres://..., or none; given explicitly it also turns on the deletion journal", func(c *Config) *string { return &c.Store }, checkStoreURL),
	str("data-dir", "DIR", "", "directory of a relative sqlite: store (default: the working directory)", func(c *Config) *string { return &c.DataDir }, nil),
	boolean("delete-dry-run", false, "journal what the delete policy would apply and change nothing upstream (needs a store)", func(c *Config) *bool { return &c.DeleteDryRun }),
	str("quarantine-mailbox", "NAME", policy.DefaultQuarantineMailbox, "where --delete-action quarantine moves messages; never served over POP3", func(c *Config) *string { return &c.QuarantineMailbox }, checkMailbox),
	integer("quarantine-days", 14, 1, "days a quarantined message is kept before a later session of its user expunges it", func(c *Config) *int { return &c.QuarantineDays }),
	str("device-separator", "SEP", policy.DefaultDeviceSeparator, "splits alice@example.com#phone into the upstream user and the device; empty disables devices", func(c *Config) *string { return &c.DeviceSeparator }, checkDeviceSeparator),
	duration("device-expiry", policy.DefaultDeviceExpiry, "a device not seen for this long stops holding back deletes", func(c *Config) *time.Duration { return &c.DeviceExpiry }),
	duration("journal-retention", 90*24*time.Hour, "how long deletion journal entries are kept", func(c *Config) *time.Duration { return &c.JournalRetention }),
	str("upstream-master-user", "NAME", "", "Dovecot master user for popbridge restore (logs in as user*master)", func(c *Config) *string { return &c.UpstreamMasterUser }, nil),
	str("upstream-master-password-file", "FILE", "", "file holding the master user's password", func(c *Config) *string { return &c.UpstreamMasterPasswordFile }, nil),
	oneOf("auth", "passthrough", "upstream login: the POP3 credentials (passthrough), a delegated OAuth2 grant per mailbox with device passwords (oauth2-user) or one application grant (oauth2-app); see docs/oauth2.md", func(c *Config) *string { return &c.Auth }, AuthPassthrough, AuthOAuth2User, AuthOAuth2App),
	str("provider", "NAME", "", "OAuth2 provider (of the config file's providers:) for auth oauth2-user and oauth2-app", func(c *Config) *string { return &c.Provider }, nil),
	str("secret-key-file", "FILE", "", "key that seals OAuth2 grants in the store, mode 0600 (popbridge oauth keygen)", func(c *Config) *string { return &c.SecretKeyFile }, nil),
	boolean("mark-seen", true, "set \\Seen upstream on messages RETR'd in full", func(c *Config) *bool { return &c.MarkSeen }),
	{name: "uidl-format", arg: "FORMAT", def: upstream.DefaultUIDLFormat, usage: "UIDL format with Dovecot's %u (UID) and %v (UIDVALIDITY)",
		set: func(c *Config, v string) (err error) { c.UIDLFormat, err = upstream.ParseUIDLFormat(v); return err }},
	boolean("lock-session", false, "one POP3 session per user at a time", func(c *Config) *bool { return &c.LockSession }),
	{name: "client-workarounds", arg: "LIST", usage: "outlook-no-nuls, oe-ns-eoh", list: true, set: setWorkarounds},
	{name: "proxy-protocol", arg: "CIDRS", usage: "accept PROXY v1/v2 headers from these networks only", list: true, set: setProxyProtocol},
	boolean("upstream-send-id", false, "send IMAP ID with the client's address before login", func(c *Config) *bool { return &c.UpstreamSendID }),
	str("config", "FILE", "", "YAML config file", func(c *Config) *string { return &c.ConfigFile }, nil),
	str("admin-listen", "ADDR", "", "HTTP /metrics, /livez, /readyz", func(c *Config) *string { return &c.AdminListen }, checkAddr),
	integer("ready-upstream-failures", 0, 0, "/readyz fails after this many upstream connect failures in a row; 0 never", func(c *Config) *int { return &c.ReadyUpstreamFailures }),
	duration("drain-timeout", 30*time.Second, "how long busy sessions may finish at shutdown", func(c *Config) *time.Duration { return &c.DrainTimeout }),
	oneOf("log-format", "json", "log format", func(c *Config) *string { return &c.LogFormat }, "json", "console"),
	{name: "log-level", arg: "LEVEL", def: "info", usage: "trace, debug, info, warn, error, fatal, panic or disabled",
		set: func(c *Config, v string) error {
			switch l := strings.ToLower(v); l {
			case "trace", "debug", "info", "warn", "error", "fatal", "panic", "disabled":
				c.LogLevel, _ = zerolog.ParseLevel(l)
				return nil
			}
			return fmt.Errorf("unknown log level %q (want trace, debug, info, warn, error, fatal, panic or disabled)", v)
		}},
	boolean("demo", false, "serve an embedded demo IMAP server (user demo, password demo)", func(c *Config) *bool { return &c.Demo }),

	integer("max-line-length", 1024, 255, "longest command line in octets, CRLF excluded", func(c *Config) *int { return &c.MaxLineLength }),
	duration("prelogin-idle-timeout", 180*time.Second, "idle time allowed before login (Dovecot's; Thunderbird sends AUTH before its password prompt)", func(c *Config) *time.Duration { return &c.PreLoginIdleTimeout }),
	duration("prelogin-timeout", 180*time.Second, "whole pre-login phase, TLS handshake included", func(c *Config) *time.Duration { return &c.PreLoginTimeout }),
	duration("idle-timeout", 600*time.Second, "idle time allowed after login (RFC 1939: at least 10m)", func(c *Config) *time.Duration { return &c.IdleTimeout }),
	{name: "release-idle-after", arg: "DURATION", def: pop3server.DefaultReleaseAfter.String(), usage: "a logged-in client silent this long has its upstream client and buffers freed, its upstream connection kept (docs/design.md); 0 never",
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return fmt.Errorf("invalid duration %q (want e.g. 250ms, or 0 for never)", v)
			}
			if d == 0 {
				d = -1 // pop3server: negative disables, zero is the default
			}
			c.ReleaseAfter = d
			return nil
		}},
	duration("write-timeout", 120*time.Second, "a write to a client that makes no progress", func(c *Config) *time.Duration { return &c.WriteTimeout }),
	integer("max-bad-commands-prelogin", 3, 1, "bad commands before login, then close", func(c *Config) *int { return &c.MaxBadCommandsPreLogin }),
	integer("max-bad-commands", 20, 1, "bad commands after login, then close", func(c *Config) *int { return &c.MaxBadCommandsPostLogin }),
	integer("max-login-failures", 3, 1, "failed logins per connection, then close", func(c *Config) *int { return &c.MaxLoginFailures }),
	duration("auth-fail-delay", 2*time.Second, "delay of a failed login, doubled per client IP", func(c *Config) *time.Duration { return &c.AuthFailDelay }),
	duration("auth-penalty-max", 15*time.Second, "longest failed-login delay", func(c *Config) *time.Duration { return &c.AuthPenaltyMax }),
	duration("login-negative-ttl", 5*time.Minute, "a user+password the upstream refused is refused locally this long (docs/security.md)", func(c *Config) *time.Duration { return &c.LoginNegativeTTL }),
	integer("login-user-burst", 3, 1, "upstream attempts per user with passwords not known to be right, then one per --login-user-interval", func(c *Config) *int { return &c.LoginUserBurst }),
	duration("login-user-interval", time.Minute, "refill of --login-user-burst; a password that logged in before is always tried", func(c *Config) *time.Duration { return &c.LoginUserInterval }),
	integer("max-conns-per-ip", 10, 1, "concurrent unauthenticated connections per client IP", func(c *Config) *int { return &c.MaxConnsPerIP }),
	integer("max-userip-conns", 10, 1, "concurrent logged-in sessions per user and client IP (Dovecot's mail_max_userip_connections)", func(c *Config) *int { return &c.MaxUserIPConns }),
	integer("max-sessions", 5000, 1, "concurrent connections in all", func(c *Config) *int { return &c.MaxSessions }),
	integer("max-prelogin-conns", 1000, 1, "concurrent unauthenticated connections; when full the oldest is closed", func(c *Config) *int { return &c.MaxPreLoginConns }),
	duration("upstream-dial-timeout", 10*time.Second, "upstream connect and TLS handshake", func(c *Config) *time.Duration { return &c.UpstreamDialTimeout }),
	duration("upstream-login-timeout", 30*time.Second, "upstream login", func(c *Config) *time.Duration { return &c.UpstreamLoginTimeout }),
	duration("upstream-command-timeout", 60*time.Second, "an upstream command that makes no progress", func(c *Config) *time.Duration { return &c.UpstreamCommandTimeout }),
	integer("cache-entries", 10000, 0, "mailbox listings cached; 0 disables", func(c *Config) *int { return &c.CacheEntries }),
	durationMin("cache-max-age", 0, 0, "full re-listing after this age (finds flag changes without CONDSTORE); 0 never", func(c *Config) *time.Duration { return &c.CacheMaxAge }),
	integer("prefetch-bytes", 64<<20, 0, "octets of small messages all sessions together may fetch ahead of clients reading in order (docs/prefetch.md); 0 disables", func(c *Config) *int { return &c.PrefetchBytes }),
	integer("prefetch-session-bytes", 1<<20, 1, "each session's share of --prefetch-bytes; messages over an eighth of it stream, never fetched ahead", func(c *Config) *int { return &c.PrefetchSessionBytes }),
}

// settingsByName indexes settings.
var settingsByName = func() map[string]*setting {
	m := make(map[string]*setting, len(settings))
	for i := range settings {
		m[settings[i].name] = &settings[i]
	}
	return m
}()

func str(name, arg, def, usage string, field func(*Config) *string, check func(string) error) setting {
	return setting{name: name, arg: arg, def: def, usage: usage, set: func(c *Config, v string) error {
		if check != nil {
			if err := check(v); err != nil {
				return err
			}
		}
		*field(c) = v
		return nil
	}}
}

func oneOf(name, def, usage string, field func(*Config) *string, values ...string) setting {
	want := strings.Join(values, "|")
	return setting{name: name, arg: want, def: def, usage: usage, set: func(c *Config, v string) error {
		for _, ok := range values {
			if v == ok {
				*field(c) = v
				return nil
			}
		}
		return fmt.Errorf("unknown value %q (want %s)", v, strings.Join(values, ", "))
	}}
}

func boolean(name string, def bool, usage string, field func(*Config) *bool) setting {
	return setting{name: name, def: strconv.FormatBool(def), usage: usage, set: func(c *Config, v string) (err error) {
		*field(c), err = parseBool(v)
		return err
	}}
}

// parseBool accepts only true and false (any case): "1", "t" or "yes"
// in a file are more likely typos than intent.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("invalid boolean %q (want true or false)", v)
}

func integer(name string, def, min int, usage string, field func(*Config) *int) setting {
	return setting{name: name, arg: "N", def: strconv.Itoa(def), usage: usage, set: func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("invalid number %q", v)
		}
		if n < min {
			return fmt.Errorf("%d is below the minimum %d", n, min)
		}
		*field(c) = n
		return nil
	}}
}

func duration(name string, def time.Duration, usage string, field func(*Config) *time.Duration) setting {
	return durationMin(name, def, time.Nanosecond, usage, field)
}

func durationMin(name string, def, min time.Duration, usage string, field func(*Config) *time.Duration) setting {
	return setting{name: name, arg: "DURATION", def: def.String(), usage: usage, set: func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. 90s or 10m)", v)
		}
		if d < min {
			if min == time.Nanosecond {
				return fmt.Errorf("duration %q must be positive", v)
			}
			return fmt.Errorf("duration %q is below %v", v, min)
		}
		*field(c) = d
		return nil
	}}
}
