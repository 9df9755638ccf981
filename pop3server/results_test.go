package pop3server

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestSessionResultsDocumented: SessionResults lists exactly the values
// the code assigns to SessionStats.Result, so the documented contract
// (and the metric's label values) cannot drift from the code.
func TestSessionResultsDocumented(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	set := regexp.MustCompile(`stats\.Result = "([^"]*)"`)
	var used []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range set.FindAllSubmatch(src, -1) {
			if r := string(m[1]); !slices.Contains(used, r) {
				used = append(used, r)
			}
		}
	}
	slices.Sort(used)
	documented := slices.Clone(SessionResults)
	slices.Sort(documented)
	if !slices.Equal(used, documented) {
		t.Fatalf("the code sets %q, SessionResults documents %q", used, documented)
	}
}
