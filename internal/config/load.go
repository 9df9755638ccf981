package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// rawFlag records a flag's text; parsing happens later, with the other
// sources, so that every error has the same shape.
type rawFlag struct {
	s     *setting
	value string
	set   bool
}

func (f *rawFlag) String() string   { return f.value }
func (f *rawFlag) IsBoolFlag() bool { return f.s.isBool() }
func (f *rawFlag) Set(v string) error {
	f.value, f.set = v, true
	return nil
}

// Load builds the configuration from the command line (args, without the
// program name), the environment (getenv, usually os.Getenv) and the file
// named by --config or POPBRIDGE_CONFIG. -h or --help returns flag.ErrHelp;
// print Usage() then. Any other error is one line naming the key and
// where it was set.
func Load(args []string, getenv func(string) string) (*Config, error) {
	return load(args, getenv, true)
}

// LoadTool is Load for the admin subcommands (popbridge oauth ...): the
// same sources and per-key checks, without the checks that only serving
// needs (an upstream, a listener), but with the OAuth2 ones.
func LoadTool(args []string, getenv func(string) string) (*Config, error) {
	return load(args, getenv, false)
}

// TakeFlags takes a subcommand's own flags out of args (--name value,
// --name=value, or --name[=true|false] for booleans, with one or two
// dashes) and returns the rest, the bridge's flags, for LoadTool. -h or
// --help returns flag.ErrHelp; any other error is bad input.
func TakeFlags(args []string, values map[string]*string, bools map[string]*bool) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			return nil, flag.ErrHelp
		}
		if p, ok := values[name]; ok {
			if !hasVal {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("--%s: needs a value", name)
				}
				i++
				val = args[i]
			}
			*p = val
			continue
		}
		if p, ok := bools[name]; ok {
			switch {
			case !hasVal || val == "true":
				*p = true
			case val == "false":
				*p = false
			default:
				return nil, fmt.Errorf("--%s: want true or false", name)
			}
			continue
		}
		rest = append(rest, a)
	}
	return rest, nil
}

func load(args []string, getenv func(string) string, serving bool) (*Config, error) {
	fs := flag.NewFlagSet("popbridge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	flags := make([]*rawFlag, len(settings))
	for i := range settings {
		flags[i] = &rawFlag{s: &settings[i]}
		fs.Var(flags[i], settings[i].name, settings[i].usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, flag.ErrHelp
		}
		return nil, flagError(err)
	}
	if fs.NArg() > 0 {
		if _, err := parseBool(fs.Arg(0)); err == nil {
			// "--mark-seen false": the flag package ends a boolean at the space.
			return nil, fmt.Errorf("command line: unexpected argument %q (write a boolean as --flag=%s)", fs.Arg(0), fs.Arg(0))
		}
		return nil, fmt.Errorf("command line: unexpected argument %q (flags only)", fs.Arg(0))
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}

	c := Default()

	// The file is named by the flag or the variable, never by itself.
	path := getenv(envName("config"))
	if f := flags[indexOf("config")]; f.set {
		path = f.value
	}
	if path != "" {
		if err := loadFile(c, path); err != nil {
			return nil, err
		}
	}
	for i := range settings {
		s := &settings[i]
		if v := getenv(envName(s.name)); v != "" {
			if err := c.apply(s, v, envName(s.name)); err != nil {
				return nil, err
			}
		}
	}
	for _, f := range flags {
		if f.set {
			if err := c.apply(f.s, f.value, "--"+f.s.name); err != nil {
				return nil, err
			}
		}
	}
	if !serving {
		return c, c.checkOAuth()
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Default is the configuration every key's default gives: what Load
// returns without flags, variables or file, except that Upstream is still
// empty. Programs that assemble popbridge without a command line
// (benchmarks, tests) start from it and set fields; values no flag
// accepts (a negative limit, which disables it) are theirs to choose.
func Default() *Config {
	c := &Config{where: map[string]string{}}
	for i := range settings {
		if err := settings[i].set(c, settings[i].def); err != nil {
			panic(fmt.Sprintf("config: default of %s: %v", settings[i].name, err))
		}
	}
	return c
}

// apply sets one key from one source and records the source.
func (c *Config) apply(s *setting, v, where string) error {
	if err := s.set(c, v); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	c.where[s.name] = where
	return nil
}

func indexOf(name string) int {
	for i := range settings {
		if settings[i].name == name {
			return i
		}
	}
	panic("config: no setting " + name)
}

// Usage is the --help text: every flag with its variable and default.
func Usage() string {
	var b strings.Builder
	b.WriteString("Usage: popbridge [flags]\n\n" +
		"popbridge serves an IMAP mailbox to POP3 clients.\n" +
		"Every flag can also be set as POPBRIDGE_<FLAG> (upper case, - becomes _)\n" +
		"or as a key of the --config YAML file. Precedence: flag > environment > file > default.\n\n")
	for _, s := range settings {
		def := ""
		if s.def != "" {
			def = ", default " + s.def
		}
		fmt.Fprintf(&b, "  %s  (%s%s)\n      %s\n", s.flag(), envName(s.name), def, s.usage)
	}
	return b.String()
}

// FlagTable is README.md's flag table, in Markdown: every key with its
// default and meaning, from the same table as Usage. README_test.go fails
// when README.md differs; "go generate ./internal/config" rewrites it.
func FlagTable() string {
	var b strings.Builder
	b.WriteString("| flag | default | meaning |\n|---|---|---|\n")
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, s := range settings {
		def := "empty"
		if s.def != "" {
			def = "`" + s.def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", cell(s.flag()), cell(def), cell(s.usage))
	}
	return b.String()
}

// flagError rewords the flag package's errors into the "--key: problem"
// shape of every other error.
func flagError(err error) error {
	msg := err.Error()
	for prefix, problem := range map[string]string{
		"flag provided but not defined: -": "unknown flag",
		"flag needs an argument: -":        "needs a value",
	} {
		if name, ok := strings.CutPrefix(msg, prefix); ok {
			return fmt.Errorf("--%s: %s", strings.TrimPrefix(name, "-"), problem)
		}
	}
	return fmt.Errorf("command line: %s", msg)
}
