package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

// rfc1939MinIdle is RFC 1939's minimum autologout timer.
const rfc1939MinIdle = 10 * time.Minute

// validate checks what no single key can check alone.
func (c *Config) validate() error {
	if c.Upstream == nil && !c.Demo {
		return fmt.Errorf("--upstream: required unless --demo (e.g. --upstream imaps://imap.example.com)")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		if c.TLSCert == "" {
			return fmt.Errorf("%s: set without tls-cert (give both or neither)", c.Where("tls-key"))
		}
		return fmt.Errorf("%s: set without tls-key (give both or neither)", c.Where("tls-cert"))
	}
	tls := c.TLSCert != ""
	if c.ListenTLS != "" && !tls {
		return fmt.Errorf("%s: needs tls-cert and tls-key", c.Where("listen-tls"))
	}
	if c.Listen == "" && c.ListenTLS == "" {
		return fmt.Errorf("%s: empty and no listen-tls: nothing to serve", c.Where("listen"))
	}
	if c.PlaintextAuth == pop3server.PlaintextNever && !tls {
		return fmt.Errorf("%s: never, but no tls-cert is configured, so no client could log in", c.Where("plaintext-auth"))
	}
	if c.AuthPenaltyMax < c.AuthFailDelay {
		return fmt.Errorf("%s: %v is below auth-fail-delay %v", c.Where("auth-penalty-max"), c.AuthPenaltyMax, c.AuthFailDelay)
	}
	if err := c.checkOAuth(); err != nil {
		return err
	}
	if err := c.checkMoveTargets(); err != nil {
		return err
	}
	return c.checkStateNeeded()
}

// checkStateNeeded refuses --store none with a feature that cannot work
// without state: an OAuth2 auth mode, a dry run or the quarantine action,
// anywhere.
func (c *Config) checkStateNeeded() error {
	if c.Store != "none" {
		return nil
	}
	if c.UsesOAuth() {
		return fmt.Errorf("%s: none, but an oauth2 auth mode needs the state store (grants and device passwords)", c.Where("store"))
	}
	check := func(s policy.Settings, where string) error {
		switch {
		case s.Policy.DryRun:
			return fmt.Errorf("%s: none, but delete-dry-run (%s) needs the state store", c.Where("store"), where)
		case s.Policy.Action.Kind == policy.Quarantine:
			return fmt.Errorf("%s: none, but delete-action quarantine (%s) needs the state store", c.Where("store"), where)
		}
		return nil
	}
	return c.eachResolved("delete-action", check)
}

// checkMoveTargets rejects a move: action into the served mailbox, for the
// default and for every override, as each resolves: moving a message into
// the maildrop it came from would serve it again under a new UID forever.
func (c *Config) checkMoveTargets() error {
	check := func(s policy.Settings, where string) error {
		if a := s.Policy.Action; a.Kind == policy.Move && sameMailbox(a.Mailbox, s.Mailbox) {
			return fmt.Errorf("%s: delete-action %v moves into the served mailbox %q", where, a, s.Mailbox)
		}
		if sameMailbox(s.Mailbox, c.QuarantineMailbox) {
			// The quarantine is never served: clients could delete what
			// the admin means to keep restorable.
			return fmt.Errorf("%s: serves the quarantine mailbox %q (quarantine-mailbox)", where, s.Mailbox)
		}
		return nil
	}
	return c.eachResolved("delete-action", check)
}

// eachResolved calls check with the settings the server level, each
// domain and each user resolve to, and where each was set (the server
// level's as key's source), stopping at the first error.
func (c *Config) eachResolved(key string, check func(s policy.Settings, where string) error) error {
	r := c.Resolver()
	if err := check(r.Default, c.Where(key)); err != nil {
		return err
	}
	for _, d := range slices.Sorted(maps.Keys(c.Domains)) {
		// "@domain" resolves the domain override alone: no user key may
		// start with '@'.
		if err := check(r.Resolve("@"+d), c.where["domains."+d]); err != nil {
			return err
		}
	}
	for _, u := range slices.Sorted(maps.Keys(c.Users)) {
		if err := check(r.Resolve(u), c.where["users."+u]); err != nil {
			return err
		}
	}
	return nil
}

// sameMailbox compares IMAP mailbox names: INBOX is case-insensitive
// (RFC 3501 §5.1), every other name is not.
func sameMailbox(a, b string) bool {
	if strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX") {
		return true
	}
	return a == b
}

// Warnings lists settings that are valid but probably unwanted, for cmd to
// log at startup.
func (c *Config) Warnings() []string {
	var w []string
	if c.IdleTimeout < rfc1939MinIdle {
		w = append(w, fmt.Sprintf("%s: %v is below RFC 1939's 10-minute autologout minimum", c.Where("idle-timeout"), c.IdleTimeout))
	}
	if c.PreLoginIdleTimeout > c.PreLoginTimeout {
		w = append(w, fmt.Sprintf("%s: %v exceeds prelogin-timeout %v and never fires", c.Where("prelogin-idle-timeout"), c.PreLoginIdleTimeout, c.PreLoginTimeout))
	}
	if c.PlaintextAuth == pop3server.PlaintextAlways {
		w = append(w, fmt.Sprintf("%s: always: passwords may cross the network in clear", c.Where("plaintext-auth")))
	}
	if c.Demo && c.Upstream != nil {
		w = append(w, fmt.Sprintf("%s: ignored with --demo", c.Where("upstream")))
	}
	if !c.Demo && insecureUpstream(c.Upstream) {
		w = append(w, fmt.Sprintf("%s: %s sends passwords without TLS to a non-loopback host", c.Where("upstream"), c.Upstream))
	}
	for _, sec := range []struct {
		name string
		m    map[string]policy.Override
	}{{"domains", c.Domains}, {"users", c.Users}} {
		for _, k := range slices.Sorted(maps.Keys(sec.m)) {
			if u := sec.m[k].Upstream; u != nil && insecureUpstream(canonicalURL(*u)) {
				w = append(w, fmt.Sprintf("%s: %s sends passwords without TLS to a non-loopback host", c.where[sec.name+"."+k], *u))
			}
		}
	}
	return w
}

// canonicalURL is an override's upstream, which parseOverride checked and
// stored in canonical form, as a URL again.
func canonicalURL(s string) *upstream.URL {
	u, _ := upstream.ParseURL(s)
	return u
}
