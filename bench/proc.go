package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// Mem is resident memory in bytes: PSS counts shared pages divided among
// the processes sharing them, RSS counts them whole in each.
type Mem struct {
	PSS, RSS int64
}

// Sub returns m - o.
func (m Mem) Sub(o Mem) Mem { return Mem{PSS: m.PSS - o.PSS, RSS: m.RSS - o.RSS} }

// procMem reads /proc/pid/smaps_rollup.
func procMem(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Mem{}, err
	}
	var m Mem
	m.RSS = kbField(b, "Rss:")
	m.PSS = kbField(b, "Pss:")
	return m, nil
}

// procStatus returns a "kB" field of /proc/pid/status, e.g. VmHWM, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	v := kbField(b, field+":")
	if v < 0 {
		return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
	}
	return v, nil
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux 4.0+).
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// kbField returns the value of the first line starting with name, given in
// kB, in bytes; -1 when absent.
func kbField(b []byte, name string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return -1
			}
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return -1
			}
			return v * 1024
		}
	}
	return -1
}

// groupPIDs returns the live processes of process group pgid: a testenv
// Dovecot runs its master and every child in a group of its own.
func groupPIDs(pgid int) []int { return testenv.GroupPIDs(pgid) }

// mailProcesses returns the processes of group pgid running Dovecot's imap
// or pop3 mail process.
func mailProcesses(pgid int) []int {
	var out []int
	for _, pid := range groupPIDs(pgid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue
		}
		if comm := strings.TrimSpace(string(b)); comm == "imap" || comm == "pop3" {
			out = append(out, pid)
		}
	}
	return out
}

// groupMem sums Mem over the processes of group pgid, and counts them.
func groupMem(pgid int) (Mem, int) {
	var sum Mem
	n := 0
	for _, pid := range groupPIDs(pgid) {
		m, err := procMem(pid)
		if err != nil {
			continue // exited meanwhile
		}
		sum.PSS += m.PSS
		sum.RSS += m.RSS
		n++
	}
	return sum, n
}

// dovecotPGID returns the process group of a testenv Dovecot: its master's
// pid, from base_dir/master.pid.
func dovecotPGID(dir string) (int, error) {
	b, err := os.ReadFile(dir + "/run/master.pid")
	if err != nil {
		return 0, fmt.Errorf("dovecot master pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("dovecot master pid: %q", b)
	}
	return pid, nil
}

// clockTicks is USER_HZ, the unit of /proc/pid/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the CPU time, user and system, that process pid used,
// plus that of its children it has waited for (a Dovecot master reaps
// its mail and login processes, so their time survives them).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	// After comm: state(3) ... utime(14) stime(15) cutime(16) cstime(17).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	var ticks int64
	for _, s := range f[11:15] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// groupCPU sums procCPU over group pgid. Processes that exited are
// counted by the parent that reaped them, once it has.
func groupCPU(pgid int) time.Duration {
	var sum time.Duration
	for _, pid := range groupPIDs(pgid) {
		if d, err := procCPU(pid); err == nil {
			sum += d
		}
	}
	return sum
}

// loadAvg returns the 1-minute load average: other work on the machine
// makes the timings noisy, and the report says how busy it was.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
