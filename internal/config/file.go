package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/upstream"
)

// fileError is one located problem in the config file.
func fileError(path string, n *yaml.Node, key, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	return fmt.Errorf("config %s:%d: %s", path, n.Line, msg)
}

// loadFile applies the file's settings and overrides to c. The file is
// walked as a yaml.Node tree rather than decoded into a struct so that
// every error can carry its line, and so that unknown and duplicate keys
// are errors instead of being ignored.
func loadFile(c *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, unwrapPathError(err))
	}
	return parseFile(c, path, data)
}

func parseFile(c *Config, path string, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file is an empty config
		}
		return syntaxError(path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: want one YAML document", path)
	}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	if isNull(root) {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fileError(path, root, "", "want a mapping of settings, got %s", kindName(root))
	}
	return eachPair(path, root, "", func(k string, kn, vn *yaml.Node) error {
		switch k {
		case "domains", "users":
			return parseOverrides(c, path, k, vn)
		case "providers":
			return parseProviders(c, path, vn)
		case "config":
			return fileError(path, kn, k, "not allowed in the config file (give it as --config or POPBRIDGE_CONFIG)")
		}
		s, ok := settingsByName[k]
		if !ok {
			return fileError(path, kn, k, "unknown key")
		}
		v, err := scalarOrList(path, vn, k, s.list)
		if err != nil {
			return err
		}
		return c.apply(s, v, fmt.Sprintf("config %s:%d: %s", path, vn.Line, k))
	})
}

// eachPair calls fn for every key of a mapping, rejecting non-string and
// duplicate keys. prefix names the mapping in errors.
func eachPair(path string, m *yaml.Node, prefix string, fn func(k string, kn, vn *yaml.Node) error) error {
	seen := make(map[string]int, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := deref(m.Content[i]), deref(m.Content[i+1])
		if kn.Kind != yaml.ScalarNode || kn.Tag == "!!merge" {
			return fileError(path, kn, strings.TrimSuffix(prefix, "."), "keys must be plain strings")
		}
		if line, dup := seen[kn.Value]; dup {
			return fileError(path, kn, prefix+kn.Value, "duplicate key (first on line %d)", line)
		}
		seen[kn.Value] = kn.Line
		if err := fn(kn.Value, kn, vn); err != nil {
			return err
		}
	}
	return nil
}

// scalarOrList returns a scalar's text, or for list keys a sequence of
// scalars joined with commas.
func scalarOrList(path string, n *yaml.Node, key string, list bool) (string, error) {
	switch {
	case isNull(n):
		return "", nil
	case n.Kind == yaml.ScalarNode:
		return n.Value, nil
	case n.Kind == yaml.SequenceNode && list:
		items := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			item = deref(item)
			if item.Kind != yaml.ScalarNode || strings.Contains(item.Value, ",") {
				return "", fileError(path, item, key, "want a list of plain values")
			}
			items = append(items, item.Value)
		}
		return strings.Join(items, ","), nil
	}
	return "", fileError(path, n, key, "want a single value, got %s", kindName(n))
}

// parseOverrides reads "domains:" or "users:" into c.
func parseOverrides(c *Config, path, section string, m *yaml.Node) error {
	if isNull(m) {
		return nil
	}
	if m.Kind != yaml.MappingNode {
		return fileError(path, m, section, "want a mapping of names to overrides, got %s", kindName(m))
	}
	out := map[string]policy.Override{}
	folded := map[string]string{} // normalized key -> key as written
	err := eachPair(path, m, section+".", func(name string, kn, vn *yaml.Node) error {
		at := fmt.Sprintf("%s.%q", section, name)
		if err := checkOverrideName(section, name); err != nil {
			return fileError(path, kn, at, "%v", err)
		}
		key := policy.NormalizeName(name)
		if first, dup := folded[key]; dup {
			return fileError(path, kn, at, "same name as %q (names are matched without regard to case)", first)
		}
		folded[key] = name
		o, err := parseOverride(c, path, at, section+"."+key, vn)
		if err != nil {
			return err
		}
		out[key] = o
		c.where[section+"."+key] = fmt.Sprintf("config %s:%d: %s", path, kn.Line, at)
		return nil
	})
	if err != nil {
		return err
	}
	if section == "domains" {
		c.Domains = out
	} else {
		c.Users = out
	}
	return nil
}

func checkOverrideName(section, name string) error {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("name must be non-empty, without spaces or control characters")
	}
	if section == "domains" && strings.Contains(name, "@") {
		return fmt.Errorf("a domain has no '@' (put users under users:)")
	}
	if section == "users" && (strings.HasPrefix(name, "@") || strings.HasSuffix(name, "@")) {
		return fmt.Errorf("a login name neither starts nor ends with '@' (put domains under domains:)")
	}
	return nil
}

// parseOverride reads one domain's or user's settings.
// whereKey is the override's key in c.where ("users.bob@example.com"):
// each setting's line is recorded under whereKey + "." + setting.
func parseOverride(c *Config, path, at, whereKey string, m *yaml.Node) (policy.Override, error) {
	var o policy.Override
	if isNull(m) {
		return o, nil
	}
	if m.Kind != yaml.MappingNode {
		return o, fileError(path, m, at, "want a mapping of settings, got %s", kindName(m))
	}
	err := eachPair(path, m, at+".", func(k string, kn, vn *yaml.Node) error {
		key := at + "." + k
		if vn.Kind != yaml.ScalarNode || isNull(vn) {
			return fileError(path, vn, key, "want a single value, got %s", kindName(vn))
		}
		v := vn.Value
		var err error
		switch k {
		case "upstream":
			var u *upstream.URL
			if u, err = upstream.ParseURL(v); err == nil {
				canonical := u.String()
				o.Upstream = &canonical
			}
		case "mailbox":
			if err = checkMailbox(v); err == nil {
				o.Mailbox = &v
			}
		case "delete-policy":
			var p policy.DeletePolicy
			if p, err = policy.ParseDeletePolicy(v); err == nil {
				o.Delete = &p
			}
		case "delete-action":
			var a policy.Action
			if a, err = policy.ParseAction(v); err == nil {
				o.Action = &a
			}
		case "mark-seen":
			var b bool
			if b, err = parseBool(v); err == nil {
				o.MarkSeen = &b
			}
		case "delete-dry-run":
			var b bool
			if b, err = parseBool(v); err == nil {
				o.DryRun = &b
			}
		case "auth":
			if err = checkAuth(v); err == nil {
				o.Auth = &v
			}
		case "provider":
			o.Provider = &v
		default:
			return fileError(path, kn, key, "unknown key (an override sets only upstream, mailbox, delete-policy, delete-action, mark-seen, delete-dry-run, auth or provider)")
		}
		if err != nil {
			return fileError(path, vn, key, "%v", err)
		}
		c.where[whereKey+"."+k] = fmt.Sprintf("config %s:%d", path, kn.Line)
		return nil
	})
	return o, err
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// yamlLine matches the position yaml.v3 puts in its syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError reshapes "yaml: line 3: did not find ..." into our
// "config FILE:3: did not find ..." form, on one line.
func syntaxError(path string, err error) error {
	msg := oneLine(err.Error())
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("config %s:%s: YAML syntax: %s", path, m[1], msg[len(m[0]):])
	}
	return fmt.Errorf("config %s: YAML syntax: %s", path, strings.TrimPrefix(msg, "yaml: "))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// unwrapPathError drops the path an *os.PathError repeats.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
