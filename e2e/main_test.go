package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// bridgeBin is the popbridge binary under test, built by TestMain.
var bridgeBin string

// TestMain builds ./cmd/popbridge once for the whole test binary, with the
// race detector when the tests themselves run with -race, so races in the
// bridge show up under real clients too.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "popbridge-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Tools run as an unprivileged user (getmail) never execute the binary,
	// but the directory stays readable so a human can.
	_ = os.Chmod(dir, 0o755)

	bridgeBin = filepath.Join(dir, "popbridge")
	if err := buildBridge(bridgeBin); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	return m.Run()
}

// buildBridge runs go build for cmd/popbridge into out.
func buildBridge(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/popbridge/popbridge/cmd/popbridge")
	cmd := exec.Command(goBin, args...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/popbridge: %w", err)
	}
	return nil
}
