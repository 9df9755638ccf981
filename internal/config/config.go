// Package config is popbridge's whole configuration (docs/design.md#configuration): the
// command-line flags, their POPBRIDGE_* environment variables and the YAML
// config file with its per-domain and per-user overrides. It validates
// everything up front so that cmd/popbridge can print one line and exit 2
// before anything listens.
//
// Precedence is flag > environment > file > default. Each key has one name,
// used as the flag (--max-line-length), as the YAML key (max-line-length:)
// and, upper-cased with '-' → '_', as the variable (POPBRIDGE_MAX_LINE_LENGTH).
// An empty variable counts as unset. Every value given is validated, even
// one a higher source overrides, so a broken file is reported now and not
// on the day the overriding flag is dropped.
//
// The keys, their defaults and meanings are the settings table
// (settings.go), the one source of `popbridge --help` (Usage) and of the
// README's flag table (FlagTable; a test fails when README.md differs).
//
// Durations are Go durations ("90s", "10m"); booleans are true or false
// (a bare --flag means true); lists are comma-separated, or YAML
// sequences in the file. Counts are at least 1 and durations positive
// unless noted: no limit can be switched off, only raised.
//
// The file may also hold "domains:" and "users:" maps whose entries set
// only upstream, mailbox, delete-policy, delete-action, mark-seen,
// delete-dry-run, auth and provider; see Config.Resolver and
// deploy/popbridge.example.yaml. A "providers:" map names the OAuth2
// providers (docs/oauth2.md).
//
// Secrets: the bridge holds no upstream credentials (each POP3 login is
// passed through), so the only secret is the TLS key, which is always
// given as a path (--tls-key), never inline.
package config

//go:generate go test -run TestREADMEFlagTable -update .

import (
	"maps"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

// Config is the validated configuration, in the domain's own types
// (upstream.URL, upstream.UIDLFormat, pop3server.PlaintextAuth, ...). Load
// returns it; nothing in it needs checking again, except what needs I/O
// (certificates, the CA bundle), which package bridge does.
type Config struct {
	Listen        string // plain POP3 (STLS when TLS is configured); "" disables
	ListenTLS     string // implicit-TLS POP3S; "" disables
	TLSCert       string // path, PEM
	TLSKey        string // path, PEM
	PlaintextAuth pop3server.PlaintextAuth

	Upstream *upstream.URL // nil only with Demo

	UpstreamCA     string // path of extra CA bundle; "" = system roots
	UpstreamSendID bool

	Mailbox      string
	DeletePolicy policy.DeletePolicy
	DeleteAction policy.Action
	MarkSeen     bool
	DeleteDryRun bool
	UIDLFormat   upstream.UIDLFormat

	// Store is the state store's URL (store.Open); DataDir the directory
	// of a relative sqlite: path. StoreExplicit says whether Store was
	// given (flag, variable or file) rather than defaulted.
	Store   string
	DataDir string

	// Devices, journal and quarantine (docs/policy.md).
	QuarantineMailbox          string
	QuarantineDays             int
	DeviceSeparator            string // "" disables devices
	DeviceExpiry               time.Duration
	JournalRetention           time.Duration
	UpstreamMasterUser         string // Dovecot master user for restore
	UpstreamMasterPasswordFile string // path

	LockSession bool

	ClientWorkarounds pop3server.Workarounds
	ProxyProtocol     []netip.Prefix // masked; a bare address is a /32 or /128

	ConfigFile   string
	AdminListen  string
	DrainTimeout time.Duration
	LogFormat    string // "json" or "console"
	LogLevel     zerolog.Level
	Demo         bool
	// ReadyUpstreamFailures > 0 makes /readyz fail after that many
	// consecutive upstream connection failures.
	ReadyUpstreamFailures int

	// The POP3 server's limits, passed on as they are.
	pop3server.Limits
	// loginguard.Options (docs/security.md)
	LoginNegativeTTL       time.Duration
	LoginUserBurst         int
	LoginUserInterval      time.Duration
	UpstreamDialTimeout    time.Duration
	UpstreamLoginTimeout   time.Duration
	UpstreamCommandTimeout time.Duration

	CacheEntries         int           // listing LRU size; 0 disables the cache
	CacheMaxAge          time.Duration // cache.Listings.MaxAge; 0 = no limit
	PrefetchBytes        int           // read-ahead budget of all sessions; 0 disables it
	PrefetchSessionBytes int           // each session's read-ahead limit

	// OAuth2 upstream login (docs/oauth2.md): the server-wide auth mode
	// and provider (overridden per domain and user), the providers of the
	// file's providers: section by name, and the sealing key's path.
	Auth          string // AuthPassthrough, AuthOAuth2User or AuthOAuth2App
	Provider      string
	Providers     map[string]Provider
	SecretKeyFile string

	// Domains and Users are the file's overrides, keyed by
	// policy.NormalizeName of the domain or login name.
	Domains map[string]policy.Override
	Users   map[string]policy.Override

	// where maps a key (or an override path) to the source that set it,
	// formatted as an error prefix.
	where map[string]string
}

// Policy is the server-wide delete policy.
func (c *Config) Policy() policy.Policy {
	a := c.DeleteAction
	if a.Kind == policy.Quarantine {
		a.Mailbox = c.QuarantineMailbox
	}
	return policy.Policy{Delete: c.DeletePolicy, Action: a, MarkSeen: c.MarkSeen, DryRun: c.DeleteDryRun}
}

// Resolver returns the per-user settings resolver: the server default from
// Upstream, Mailbox and Policy, then the file's domain and user overrides.
// With --demo, set Upstream to the demo server's URL before calling it.
func (c *Config) Resolver() *policy.Resolver {
	return &policy.Resolver{
		Default: policy.Settings{Upstream: c.Upstream.String(), Mailbox: c.Mailbox, Policy: c.Policy(), Auth: defaultAuth(c.Auth), Provider: c.Provider},
		Domains: maps.Clone(c.Domains),
		Users:   maps.Clone(c.Users),
	}
}

// StoreExplicit reports whether --store was given (as a flag, a variable
// or in the file): the passive stateful features (the deletion journal,
// per-client memory under leave) are on exactly then.
func (c *Config) StoreExplicit() bool {
	_, ok := c.where["store"]
	return ok
}

// Where names the source of a key's value the way Load's errors do:
// "--tls-cert", "POPBRIDGE_TLS_CERT" or "config /etc/popbridge.yaml:7:
// tls-cert" (and "--tls-cert" for a default). cmd uses it for the errors
// it finds itself, such as an unreadable certificate.
func (c *Config) Where(key string) string {
	if w, ok := c.where[key]; ok {
		return w
	}
	return "--" + key
}
