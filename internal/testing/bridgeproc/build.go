// Package bridgeproc runs the real popbridge binary for black-box tests:
// it builds ./cmd/popbridge once per test binary (with the race detector
// when the tests run with -race), starts it with flags on loopback ports,
// reads the bound addresses from its "popbridge started" log line,
// captures its JSON log for WaitLog and CountLog, and signals and stops it.
//
// A package using it calls Main from its TestMain so that the built binary
// is removed at the end:
//
//	func TestMain(m *testing.M) { bridgeproc.Main(m) }
package bridgeproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Package is the import path of the binary under test.
const Package = "github.com/popbridge/popbridge/cmd/popbridge"

// builds holds one build per flavour: with and without -race.
var builds struct {
	mu  sync.Mutex
	dir string
	bin map[bool]string
}

// Binary returns the path of popbridge built for this test binary, with
// the race detector when the tests have it (so that races in the bridge
// show up too), building it on first use; a build failure fails tb.
func Binary(tb testing.TB) string {
	tb.Helper()
	return binary(tb, RaceEnabled)
}

// PlainBinary is Binary never built with -race: for tests that measure
// the process's memory, which the race detector multiplies.
func PlainBinary(tb testing.TB) string {
	tb.Helper()
	return binary(tb, false)
}

func binary(tb testing.TB, race bool) string {
	tb.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if bin, ok := builds.bin[race]; ok {
		return bin
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "popbridge-bin-")
		if err != nil {
			tb.Fatal(err)
		}
		// Tools run as another user may need to read the directory.
		_ = os.Chmod(dir, 0o755)
		builds.dir = dir
		builds.bin = map[bool]string{}
	}
	bin := filepath.Join(builds.dir, "popbridge")
	if race {
		bin += "-race"
	}
	if err := Build(bin, race); err != nil {
		tb.Fatal(err)
	}
	builds.bin[race] = bin
	return bin
}

// Build runs go build for Package into out, with -race if race.
func Build(out string, race bool) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, Package)
	cmd := exec.Command(goBin, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", Package, err, b)
	}
	return nil
}

// Main runs the tests and removes the binaries built, then exits.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main without the exit, for a TestMain that does more.
func Run(m *testing.M) int {
	code := m.Run()
	Cleanup()
	return code
}

// Cleanup removes the built binaries; Binary builds anew if called again.
func Cleanup() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	builds.dir, builds.bin = "", nil
}
