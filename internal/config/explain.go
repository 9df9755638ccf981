package config

import (
	"strconv"

	"github.com/popbridge/popbridge/policy"
)

// ExplainLine is one resolved setting of a login, for "popbridge policy
// explain": its value, the level that set it (server, domain or user) and
// where that level got it ("config FILE:LINE", a flag, a variable or
// "default").
type ExplainLine struct {
	Key, Value, Level, Where string
}

// Explain resolves a POP3 login name ("alice@example.com#phone") the way
// a session does: the device split off with the device separator, then
// the server settings, the domain's override and the user's.
func (c *Config) Explain(login string) (user, device string, lines []ExplainLine) {
	user, device = policy.SplitDevice(login, c.DeviceSeparator)
	s, from := c.Resolver().Explain(user)
	where := func(key string, o policy.Origin) string {
		if o.Level == policy.LevelServer {
			if w, ok := c.where[key]; ok {
				return w
			}
			return "default"
		}
		section := "domains."
		if o.Level == policy.LevelUser {
			section = "users."
		}
		return c.where[section+o.Name+"."+key]
	}
	add := func(key, value string, o policy.Origin) {
		lines = append(lines, ExplainLine{Key: key, Value: value, Level: string(o.Level), Where: where(key, o)})
	}
	add(policy.KeyUpstream, s.Upstream, from[policy.KeyUpstream])
	add(policy.KeyMailbox, s.Mailbox, from[policy.KeyMailbox])
	auth := s.Auth
	if auth == "" {
		auth = "passthrough"
	}
	add(policy.KeyAuth, auth, from[policy.KeyAuth])
	if s.Provider != "" {
		add(policy.KeyProvider, s.Provider, from[policy.KeyProvider])
	}
	add(policy.KeyPolicy, s.Policy.Delete.String(), from[policy.KeyPolicy])
	action := s.Policy.Action.String()
	if s.Policy.Action.Kind == policy.Quarantine {
		action += " into " + c.QuarantineMailbox + " for " + strconv.Itoa(c.QuarantineDays) + " days"
	}
	add(policy.KeyAction, action, from[policy.KeyAction])
	add(policy.KeyMarkSeen, strconv.FormatBool(s.Policy.MarkSeen), from[policy.KeyMarkSeen])
	add(policy.KeyDryRun, strconv.FormatBool(s.Policy.DryRun), from[policy.KeyDryRun])
	// EXPIRE follows from the delete policy (RFC 2449): explained by it.
	lines = append(lines, ExplainLine{Key: "expire", Value: s.Policy.Expire(),
		Level: string(from[policy.KeyPolicy].Level), Where: where(policy.KeyPolicy, from[policy.KeyPolicy])})
	return user, device, lines
}
