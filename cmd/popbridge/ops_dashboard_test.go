package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var metricName = regexp.MustCompile(`\bpopbridge_[a-z_]+\b`)

// documentedMetrics are the metric names in docs/operations.md's table.
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "| `popbridge_") {
			for _, n := range metricName.FindAllString(strings.SplitN(l, "|", 3)[1], -1) {
				names[n] = true
			}
		}
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metrics in docs/operations.md's table", len(names))
	}
	return names
}

// baseName strips the series suffixes a histogram's name gets in PromQL.
func baseName(n string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if strings.HasSuffix(n, s) && strings.HasSuffix(strings.TrimSuffix(n, s), "_seconds") {
			return strings.TrimSuffix(n, s)
		}
	}
	return n
}

// TestOpsMetricsDocumented: every metric popbridge's code registers is in
// docs/operations.md's table, and every metric the table lists is
// registered somewhere in the code, so the table cannot drift.
func TestOpsMetricsDocumented(t *testing.T) {
	documented := documentedMetrics(t)
	inCode := map[string]bool{}
	nameLit := regexp.MustCompile(`Name:\s*"(popbridge_[a-z_]+)"`)
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range nameLit.FindAllStringSubmatch(string(src), -1) {
			inCode[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for n := range inCode {
		if !documented[n] {
			t.Errorf("metric %s is registered but not in docs/operations.md's metrics table", n)
		}
	}
	for n := range documented {
		if !inCode[n] {
			t.Errorf("docs/operations.md lists %s, which no code registers", n)
		}
	}
}

// TestOpsDashboardAndAlerts: the shipped Grafana dashboard and Prometheus
// alert rules parse, and every popbridge metric they query is one popbridge
// exports (docs/operations.md's table, kept true by
// TestOpsMetricsDocumented); the dashboard shows what an operator of
// several replicas watches.
func TestOpsDashboardAndAlerts(t *testing.T) {
	documented := documentedMetrics(t)
	var used []string

	raw, err := os.ReadFile(filepath.Join(deployDir, "grafana", "popbridge.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/popbridge.json: %v", err)
	}
	queried := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			for _, n := range metricName.FindAllString(q.Expr, -1) {
				queried[baseName(n)] = true
				used = append(used, baseName(n))
			}
		}
	}
	for _, n := range []string{"popbridge_sessions_active", "popbridge_logins_total", "popbridge_upstream_command_duration_seconds",
		"popbridge_cache_hits_total", "popbridge_oauth_token_refreshes_total", "popbridge_store_errors_total"} {
		if !queried[n] {
			t.Errorf("the dashboard does not show %s", n)
		}
	}

	raw, err = os.ReadFile(filepath.Join(deployDir, "prometheus", "popbridge-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("prometheus/popbridge-alerts.yaml: %v", err)
	}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts++
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("alert rule %+v lacks a name or an expression", r)
			}
			for _, n := range metricName.FindAllString(r.Expr, -1) {
				used = append(used, baseName(n))
			}
		}
	}
	if alerts < 5 {
		t.Errorf("%d alert rules", alerts)
	}
	sort.Strings(used)
	for _, n := range used {
		if !documented[n] {
			t.Errorf("the dashboard or alerts query %s, which popbridge does not export", n)
		}
	}
}
