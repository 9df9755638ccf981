package config

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite README.md's flag table from the settings table")

// The README's flag table lies between these lines.
const (
	readmePath  = "../../README.md"
	tableBegin  = "<!-- flag table: generated from internal/config/settings.go by go generate ./internal/config; do not edit -->\n"
	tableFinish = "<!-- end of flag table -->\n"
)

// TestREADMEFlagTable: README.md's flag table is FlagTable, so that it
// and --help (both from the settings table) cannot drift apart. Run
// "go generate ./internal/config" after changing a setting.
func TestREADMEFlagTable(t *testing.T) {
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	before, rest, ok := strings.Cut(readme, tableBegin)
	if !ok {
		t.Fatalf("README.md lacks the line %q", tableBegin)
	}
	table, after, ok := strings.Cut(rest, tableFinish)
	if !ok {
		t.Fatalf("README.md lacks the line %q", tableFinish)
	}
	want := FlagTable()
	if table == want {
		return
	}
	if *update {
		if err := os.WriteFile(readmePath, []byte(before+tableBegin+want+tableFinish+after), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's flag table differs from the settings table; run go generate ./internal/config\n got:\n%s\nwant:\n%s", table, want)
}

// TestFlagTableListsEveryKey: one row per key, each naming its flag.
func TestFlagTableListsEveryKey(t *testing.T) {
	rows := strings.Split(strings.TrimSuffix(FlagTable(), "\n"), "\n")[2:]
	if len(rows) != len(settings) {
		t.Fatalf("%d rows for %d settings", len(rows), len(settings))
	}
	for i, s := range settings {
		if !strings.HasPrefix(rows[i], "| `--"+s.name) || strings.Count(strings.ReplaceAll(rows[i], `\|`, ""), "|") != 4 {
			t.Errorf("row %q for --%s", rows[i], s.name)
		}
	}
}
