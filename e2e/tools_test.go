package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// toolTimeout bounds one run of an external client.
const toolTimeout = 60 * time.Second

// runTool runs cmd with a timeout and returns its stdout; a non-zero exit
// fails the test with stderr shown.
func runTool(t testing.TB, cmd *exec.Cmd) []byte {
	t.Helper()
	out, err := runToolStatus(t, cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return out
}

// runToolStatus runs cmd and returns its stdout and the error of Run,
// which carries stderr and the exit status.
func runToolStatus(t testing.TB, cmd *exec.Cmd) ([]byte, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return stdout.Bytes(), fmt.Errorf("%w\nstderr:\n%s", err, stderr.Bytes())
		}
		if testing.Verbose() && stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", filepath.Base(cmd.Path), stderr.Bytes())
		}
		return stdout.Bytes(), nil
	case <-time.After(toolTimeout):
		_ = cmd.Process.Kill()
		<-done
		return stdout.Bytes(), fmt.Errorf("killed after %v\nstderr:\n%s", toolTimeout, stderr.Bytes())
	}
}

// writeFile writes data to name with mode perm, failing the test on error.
func writeFile(t testing.TB, name string, perm os.FileMode, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, perm); err != nil { // WriteFile's perm is masked by umask
		t.Fatal(err)
	}
}
