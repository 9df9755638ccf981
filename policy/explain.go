package policy

import "strings"

// Level is where a setting's value comes from.
type Level string

const (
	LevelServer Level = "server"
	LevelDomain Level = "domain"
	LevelUser   Level = "user"
)

// Origin is the override that set one setting: its level and the
// normalized name of the domain or user ("" for the server level).
type Origin struct {
	Level Level
	Name  string
}

// Setting names of an explanation, the same as the configuration keys.
const (
	KeyUpstream = "upstream"
	KeyMailbox  = "mailbox"
	KeyPolicy   = "delete-policy"
	KeyAction   = "delete-action"
	KeyMarkSeen = "mark-seen"
	KeyDryRun   = "delete-dry-run"
	KeyAuth     = "auth"
	KeyProvider = "provider"
)

// Explain resolves username like Resolve and also says, for each setting,
// which level set it: the server default, the user's domain or the user.
func (r *Resolver) Explain(username string) (Settings, map[string]Origin) {
	from := map[string]Origin{}
	for _, k := range []string{KeyUpstream, KeyMailbox, KeyPolicy, KeyAction, KeyMarkSeen, KeyDryRun, KeyAuth, KeyProvider} {
		from[k] = Origin{Level: LevelServer}
	}
	if r == nil {
		return r.Resolve(username), from
	}
	name := NormalizeName(username)
	mark := func(o Override, at Origin) {
		for k, set := range map[string]bool{
			KeyUpstream: o.Upstream != nil, KeyMailbox: o.Mailbox != nil, KeyPolicy: o.Delete != nil,
			KeyAction: o.Action != nil, KeyMarkSeen: o.MarkSeen != nil, KeyDryRun: o.DryRun != nil,
			KeyAuth: o.Auth != nil, KeyProvider: o.Provider != nil,
		} {
			if set {
				from[k] = at
			}
		}
	}
	if i := strings.LastIndexByte(name, '@'); i >= 0 && i < len(name)-1 {
		if o, ok := r.Domains[name[i+1:]]; ok {
			mark(o, Origin{Level: LevelDomain, Name: name[i+1:]})
		}
	}
	if o, ok := r.Users[name]; ok {
		mark(o, Origin{Level: LevelUser, Name: name})
	}
	return r.Resolve(username), from
}
