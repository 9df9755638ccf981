package bench

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// metricInfo describes each metric key of a Result.
var metricInfo = map[string]struct {
	label string
	lower bool // lower is better
}{
	"p50_ms":          {"p50 latency, ms", true},
	"p99_ms":          {"p99 latency, ms", true},
	"sessions_per_s":  {"sessions/s", false},
	"sessions":        {"sessions measured", false},
	"mb_per_s":        {"MB/s (10^6 octets)", false},
	"msgs_per_s":      {"messages/s", false},
	"seconds":         {"session time, s", true},
	"held":            {"sessions held", false},
	"own_pss_kib":     {"own PSS per session, KiB", true},
	"own_rss_kib":     {"own RSS per session, KiB", true},
	"total_pss_kib":   {"PSS per session incl. upstream Dovecot, KiB", true},
	"total_rss_kib":   {"RSS per session incl. upstream Dovecot, KiB", true},
	"peak_growth_mib": {"peak RSS growth, MiB", true},

	"cpu_ms_per_session":       {"own CPU per session, ms", true},
	"total_cpu_ms_per_session": {"CPU per session incl. upstream Dovecot, ms", true},
	"cpu_ms_per_mb":            {"own CPU per MB, ms", true},
	"total_cpu_ms_per_mb":      {"CPU per MB incl. upstream Dovecot, ms", true},
	"cpu_ms_per_1k_msgs":       {"own CPU per 1,000 messages, ms", true},
	"total_cpu_ms_per_1k_msgs": {"CPU per 1,000 messages incl. upstream Dovecot, ms", true},
}

// metricOrder is the order metrics are printed in.
var metricOrder = []string{
	"p50_ms", "p99_ms", "sessions_per_s", "sessions", "msgs_per_s", "mb_per_s", "seconds",
	"cpu_ms_per_session", "total_cpu_ms_per_session", "cpu_ms_per_mb", "total_cpu_ms_per_mb",
	"cpu_ms_per_1k_msgs", "total_cpu_ms_per_1k_msgs",
	"peak_growth_mib", "held", "own_pss_kib", "own_rss_kib", "total_pss_kib", "total_rss_kib",
}

// Report is a run's outcome.
type Report struct {
	Machine   Machine
	Reps      int
	Quick     bool `json:",omitempty"`
	Scenarios []*ScenarioReport
	Verdicts  []Verdict
	Started   time.Time
	Duration  time.Duration
}

// Machine is what the figures were measured on.
type Machine struct {
	NProc            int
	CPU              string
	Kernel           string
	Go               string
	Dovecot          string
	PopbridgeVersion string // VCS revision the binary was built from
}

// ScenarioReport holds every round of one scenario.
type ScenarioReport struct {
	Name    string
	Servers map[string]*ServerStats
}

// ServerStats is one server's rounds of one scenario and their medians.
type ServerStats struct {
	Runs       []Result
	Median     map[string]float64
	Errors     int
	FirstError string `json:",omitempty"`
	Verified   int64
}

// Verdict is one line of the target table.
type Verdict struct {
	Scenario string
	Target   string
	// Popbridge, Baseline and Ratio are the medians compared; Baseline
	// and Ratio are zero for absolute targets.
	Popbridge, Baseline, Ratio float64
	Pass                       bool
	Note                       string `json:",omitempty"`
}

func newReport(cfg Config, e *env) *Report {
	return &Report{Machine: machine(e), Reps: cfg.Reps, Started: time.Now()}
}

func machine(e *env) Machine {
	m := Machine{NProc: runtime.NumCPU(), Go: runtime.Version(), Dovecot: e.up.Version}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if info, err := buildinfo.ReadFile(e.bridge.Path); err == nil {
		rev, dirty := "", ""
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+modified"
				}
			}
		}
		m.PopbridgeVersion = rev + dirty
	}
	return m
}

func (r *Report) scenario(name string) *ScenarioReport {
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s
		}
	}
	s := &ScenarioReport{Name: name, Servers: map[string]*ServerStats{}}
	r.Scenarios = append(r.Scenarios, s)
	return s
}

func (r *Report) add(scenario, server string, res Result) {
	s := r.scenario(scenario)
	st := s.Servers[server]
	if st == nil {
		st = &ServerStats{}
		s.Servers[server] = st
	}
	if res.Metrics != nil {
		st.Runs = append(st.Runs, res)
	}
	st.Errors += res.Errors
	st.Verified += res.Verified
	if st.FirstError == "" {
		st.FirstError = res.FirstError
	}
}

// finish computes the medians and the verdicts.
func (r *Report) finish() {
	r.Duration = time.Since(r.Started)
	for _, s := range r.Scenarios {
		for _, st := range s.Servers {
			st.Median = map[string]float64{}
			for k := range metricInfo {
				var vs []float64
				for _, run := range st.Runs {
					if v, ok := run.Metrics[k]; ok {
						vs = append(vs, v)
					}
				}
				if len(vs) > 0 {
					st.Median[k] = median(vs)
				}
			}
		}
		// Every server lists the same UIDs with the same UIDL format, so
		// the listings must be identical.
		var first Sum
		for _, server := range Servers {
			st := s.Servers[server]
			if st == nil {
				continue
			}
			for _, run := range st.Runs {
				if run.UIDLs == (Sum{}) {
					continue
				}
				if first == (Sum{}) {
					first = run.UIDLs
				} else if run.UIDLs != first {
					st.Errors++
					if st.FirstError == "" {
						st.FirstError = "UIDL listing differs from " + Servers[0] + "'s"
					}
				}
			}
		}
	}
	r.Verdicts = r.verdicts()
}

func median(vs []float64) float64 {
	vs = slices.Clone(vs)
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// ratioTarget is a target relative to a baseline: popbridge's median
// metric divided by the baseline's must be at most (lower-is-better
// metrics) or at least Factor.
type ratioTarget struct {
	scenario, metric, baseline string
	factor                     float64
}

// verdicts evaluates the target table of issue 11 (docs/benchmarks.md). The poll targets name the
// 50,000- and 10,000-message mailboxes; a run with other sizes uses its
// largest and smallest instead.
func (r *Report) verdicts() []Verdict {
	var counts, clients []int
	for _, s := range r.Scenarios {
		var n, c int
		if _, err := fmt.Sscanf(strings.Replace(strings.Replace(s.Name, "k-c", "000-c", 1), "poll-", "", 1), "%d-c%d", &n, &c); err == nil {
			counts = append(counts, n)
			clients = append(clients, c)
		}
	}
	var out []Verdict
	if len(counts) > 0 {
		big1 := pollName(slices.Max(counts), slices.Min(clients))
		smallMany := pollName(slices.Min(counts), slices.Max(clients))
		for _, t := range []ratioTarget{
			{big1, "p50_ms", Native, 0.2},
			{smallMany, "sessions_per_s", IMAPC, 5},
		} {
			out = append(out, r.ratioVerdict(t))
		}
	}
	for _, t := range []ratioTarget{
		{"download-large", "mb_per_s", Native, 1.5},
		{"download-small", "mb_per_s", Native, 1.5},
		{"download-small", "mb_per_s", IMAPC, 3},
	} {
		out = append(out, r.ratioVerdict(t))
	}
	for _, s := range r.Scenarios {
		if strings.HasPrefix(s.Name, "top-") {
			out = append(out, r.ratioVerdict(ratioTarget{s.Name, "msgs_per_s", Native, 1.5}),
				r.ratioVerdict(ratioTarget{s.Name, "msgs_per_s", IMAPC, 3}))
		}
		if strings.HasPrefix(s.Name, "idle-") {
			out = append(out, r.idleVerdict(s))
		}
	}
	if s := r.find("retr-huge"); s != nil {
		v := Verdict{Scenario: s.Name, Target: "popbridge peak RSS grows by < 8 MiB"}
		if st := s.Servers[Popbridge]; st != nil && len(st.Runs) > 0 {
			v.Popbridge = st.Median["peak_growth_mib"]
			v.Pass = v.Popbridge < 8 && st.Errors == 0
			v.Note = errNote(st)
		}
		out = append(out, v)
	}
	return out
}

func (r *Report) find(name string) *ScenarioReport {
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func errNote(st *ServerStats) string {
	if st.Errors == 0 {
		return ""
	}
	return fmt.Sprintf("%d errors: %s", st.Errors, st.FirstError)
}

func (r *Report) ratioVerdict(t ratioTarget) Verdict {
	lower := metricInfo[t.metric].lower
	op := "≥"
	if lower {
		op = "≤"
	}
	v := Verdict{Scenario: t.scenario, Target: fmt.Sprintf("%s %s %g × %s", metricInfo[t.metric].label, op, t.factor, t.baseline)}
	s := r.find(t.scenario)
	if s == nil {
		v.Note = "not run"
		return v
	}
	pb, base := s.Servers[Popbridge], s.Servers[t.baseline]
	if pb == nil || base == nil || len(pb.Runs) == 0 || len(base.Runs) == 0 {
		v.Note = "no measurement"
		return v
	}
	v.Popbridge, v.Baseline = pb.Median[t.metric], base.Median[t.metric]
	if v.Baseline > 0 {
		v.Ratio = v.Popbridge / v.Baseline
	}
	if lower {
		v.Pass = v.Ratio <= t.factor && v.Ratio > 0
	} else {
		v.Pass = v.Ratio >= t.factor
	}
	if pb.Errors > 0 {
		v.Pass = false
		v.Note = errNote(pb)
	}
	return v
}

func (r *Report) idleVerdict(s *ScenarioReport) Verdict {
	v := Verdict{Scenario: s.Name, Target: "all held, 0 errors; popbridge ≤ 32 KiB per session (PSS and RSS)"}
	st := s.Servers[Popbridge]
	if st == nil || len(st.Runs) == 0 {
		v.Note = "no measurement"
		return v
	}
	n := strings.TrimPrefix(s.Name, "idle-")
	v.Popbridge = max(st.Median["own_pss_kib"], st.Median["own_rss_kib"])
	v.Pass = st.Errors == 0 && v.Popbridge <= 32 && fmt.Sprint(int(st.Median["held"])) == n
	v.Note = fmt.Sprintf("held %.0f of %s; PSS %.1f KiB, RSS %.1f KiB", st.Median["held"], n, st.Median["own_pss_kib"], st.Median["own_rss_kib"])
	if st.Errors > 0 {
		v.Note += "; " + errNote(st)
	}
	return v
}
