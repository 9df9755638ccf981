package policy

import "strings"

// Settings is everything that may differ per user: where the maildrop lives
// and what deletes and downloads do to it.
type Settings struct {
	// Upstream is the IMAP server URL (imaps://, imap:// or imap+insecure://).
	Upstream string
	// Mailbox is the IMAP mailbox served as the POP3 maildrop.
	Mailbox string
	// Policy is the delete policy, delete action and mark-seen setting.
	Policy Policy
	// Auth is how the upstream login is made: "passthrough" (or empty),
	// "oauth2-user" or "oauth2-app" (package oauth); Provider names the
	// OAuth2 provider of the config file's providers: section.
	Auth, Provider string
}

// Override changes some Settings for a domain or a user; a nil field keeps
// the value inherited from the level below.
type Override struct {
	Upstream *string
	Mailbox  *string
	Delete   *DeletePolicy
	Action   *Action
	MarkSeen *bool
	DryRun   *bool
	Auth     *string
	Provider *string
}

// apply returns s with every non-nil field of o applied.
func (o Override) apply(s Settings) Settings {
	if o.Upstream != nil {
		s.Upstream = *o.Upstream
	}
	if o.Mailbox != nil {
		s.Mailbox = *o.Mailbox
	}
	if o.Delete != nil {
		s.Policy.Delete = *o.Delete
	}
	if o.Action != nil {
		s.Policy.Action = *o.Action
	}
	if o.MarkSeen != nil {
		s.Policy.MarkSeen = *o.MarkSeen
	}
	if o.DryRun != nil {
		s.Policy.DryRun = *o.DryRun
	}
	if o.Auth != nil {
		s.Auth = *o.Auth
	}
	if o.Provider != nil {
		s.Provider = *o.Provider
	}
	return s
}

// Resolver computes a user's Settings: the server Default, then the
// override of the user's domain, then the override of the user.
//
// Map keys must be in the form NormalizeName returns (lower case);
// internal/config builds them that way. A Resolver is read-only after
// construction and safe for concurrent use.
type Resolver struct {
	// Default is the server-wide setting.
	Default Settings
	// Domains is keyed by lower-case domain ("example.com").
	Domains map[string]Override
	// Users is keyed by lower-case login name ("bob@example.com" or "bob").
	Users map[string]Override
}

// Resolve returns the effective settings for the login name username, as
// the client sent it. The domain is the part after the last '@'; a name
// without '@' (or ending in '@') has no domain and gets only a user
// override. A nil Resolver resolves to policy.Default with no upstream and
// mailbox "INBOX".
func (r *Resolver) Resolve(username string) Settings {
	if r == nil {
		return Settings{Mailbox: "INBOX", Policy: Default}
	}
	s := r.Default
	name := NormalizeName(username)
	if i := strings.LastIndexByte(name, '@'); i >= 0 && i < len(name)-1 {
		if o, ok := r.Domains[name[i+1:]]; ok {
			s = o.apply(s)
		}
	}
	if o, ok := r.Users[name]; ok {
		s = o.apply(s)
	}
	return s
}

// NormalizeName is the matching key for a login name or a domain: the
// whole name lower-cased.
//
// Domains are case-insensitive (RFC 5321). Local parts are formally
// case-sensitive, but no mail system in practice hands out "Bob" and "bob"
// as different mailboxes, and Dovecot is commonly run with
// auth_username_format=%Lu; an override that silently failed to match
// because a client capitalised the login would be the worse surprise.
// Only the lookup is folded: the name sent upstream and the cache key stay
// exactly what the client typed.
func NormalizeName(name string) string { return strings.ToLower(name) }
