package bench

import (
	"fmt"
	"strings"
)

// Markdown renders the report: the targets with their verdicts, every
// median with its ratios to the two baselines, verification, the machine.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	p("### Targets")
	p("")
	p("| scenario | target | popbridge | baseline | ratio | verdict |")
	p("|---|---|---:|---:|---:|---|")
	for _, v := range r.Verdicts {
		verdict := "**missed**"
		if v.Pass {
			verdict = "met"
		}
		base, ratio := "", ""
		if v.Baseline != 0 {
			base, ratio = num(v.Baseline), fmt.Sprintf("%.2f", v.Ratio)
		}
		if v.Note != "" {
			verdict += " (" + v.Note + ")"
		}
		p("| %s | %s | %s | %s | %s | %s |", v.Scenario, v.Target, num(v.Popbridge), base, ratio, verdict)
	}
	p("")
	p("### Medians of %d round(s), each round running %s in turn", r.Reps, strings.Join(Servers, ", "))
	p("")
	p("| scenario | metric | %s | %s | %s | ÷ native | ÷ imapc |", Servers[0], Servers[1], Servers[2])
	p("|---|---|---:|---:|---:|---:|---:|")
	for _, s := range r.Scenarios {
		for _, k := range metricOrder {
			vals := make([]float64, len(Servers))
			any := false
			for i, server := range Servers {
				if st := s.Servers[server]; st != nil {
					if v, ok := st.Median[k]; ok {
						vals[i], any = v, true
					}
				}
			}
			if !any {
				continue
			}
			p("| %s | %s | %s | %s | %s | %s | %s |", s.Name, metricInfo[k].label,
				num(vals[0]), num(vals[1]), num(vals[2]), ratio(vals[0], vals[1]), ratio(vals[0], vals[2]))
		}
	}
	p("")
	p("### Verification")
	p("")
	p("Load: the machine's 1-minute load average at the start of each round")
	p("(lowest–highest); above %d (the CPU count) other work competed for the CPUs.", r.Machine.NProc)
	p("")
	p("| scenario | server | octets compared with the seeded messages | load | errors |")
	p("|---|---|---:|---|---|")
	for _, s := range r.Scenarios {
		for _, server := range Servers {
			st := s.Servers[server]
			if st == nil {
				continue
			}
			errs := "0"
			if st.Errors > 0 {
				errs = fmt.Sprintf("%d: %s", st.Errors, strings.ReplaceAll(st.FirstError, "|", "\\|"))
			}
			p("| %s | %s | %d | %s | %s |", s.Name, server, st.Verified, loadRange(st.Runs), errs)
		}
	}
	p("")
	m := r.Machine
	if m.PopbridgeVersion == "" {
		m.PopbridgeVersion = "(binary without a VCS stamp)"
	}
	p("Machine: %d CPUs (%s), Linux %s, %s, Dovecot %s, popbridge %s; run took %v.",
		m.NProc, m.CPU, m.Kernel, m.Go, m.Dovecot, m.PopbridgeVersion, r.Duration.Round(1e9))
	return b.String()
}

// num prints a figure with about four significant digits.
func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1000 || v <= -1000:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.4g", v)
	}
}

func ratio(a, b float64) string {
	if b == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f", a/b)
}

// Failed reports whether any server had an error or any popbridge check
// of bytes compared nothing: the run is then not evidence of anything.
func (r *Report) Failed() []string {
	var out []string
	for _, s := range r.Scenarios {
		for _, server := range Servers {
			st := s.Servers[server]
			if st == nil {
				out = append(out, fmt.Sprintf("%s: %s did not run", s.Name, server))
				continue
			}
			if st.Errors > 0 {
				out = append(out, fmt.Sprintf("%s: %s: %d errors, first: %s", s.Name, server, st.Errors, st.FirstError))
			}
		}
	}
	return out
}

func loadRange(runs []Result) string {
	if len(runs) == 0 {
		return ""
	}
	lo, hi := runs[0].Load, runs[0].Load
	for _, r := range runs {
		lo, hi = min(lo, r.Load), max(hi, r.Load)
	}
	if lo == hi {
		return fmt.Sprintf("%.1f", lo)
	}
	return fmt.Sprintf("%.1f–%.1f", lo, hi)
}
