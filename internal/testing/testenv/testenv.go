// Package testenv is the environment the project's integration tests run in:
// external tools looked up the same way everywhere, an unprivileged user for
// tools that refuse to run as root, and a real Dovecot started from a
// generated configuration on free loopback ports (see StartDovecot).
//
// Outside CI a missing tool skips the test; with CI=true it fails it, so a CI
// run never passes by skipping. ./scripts/test.sh installs every tool.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// extraToolDirs are searched after PATH: a non-root PATH often lacks the
// sbin directories, and Dovecot keeps its helpers in /usr/lib/dovecot.
var extraToolDirs = []string{"/usr/sbin", "/sbin", "/usr/lib/dovecot"}

// InCI reports whether the tests run in CI (environment variable CI=true).
func InCI() bool {
	return os.Getenv("CI") == "true"
}

// RequireTool returns the absolute path of the executable name, looked up in
// PATH and then in /usr/sbin, /sbin and /usr/lib/dovecot. When it is missing
// the test is skipped, or failed when InCI.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := LookTool(name)
	if err == nil {
		return path
	}
	if InCI() {
		t.Fatalf("%v; CI=true requires it: ./scripts/test.sh installs it", err)
	}
	t.Skipf("skipping: %v (./scripts/test.sh installs it)", err)
	return ""
}

// LookTool is RequireTool for code without a testing.TB: it returns the
// absolute path of the executable name or an error saying where it looked.
func LookTool(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return filepath.Abs(path)
	}
	for _, dir := range extraToolDirs {
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or %v", name, extraToolDirs)
}

// unprivilegedName is the account used when the tests run as root. The
// stock "nobody" exists on every Debian system, so nothing is created or
// left behind; the price is that files it writes belong to nobody, which
// only matters to tests that compare owners.
const unprivilegedName = "nobody"

var unprivileged = sync.OnceValues(func() (*user.User, error) {
	if os.Geteuid() != 0 {
		return user.Current()
	}
	return user.Lookup(unprivilegedName)
})

// UnprivilegedUser returns the user that tools refusing root (getmail,
// Dovecot's mail processes) run as: the current user when the process is
// not root, and "nobody" (uid 65534 on Debian) when it is. ok is false only
// when that user cannot be found.
func UnprivilegedUser() (uid, gid int, name string, ok bool) {
	u, err := unprivileged()
	if err != nil {
		return 0, 0, "", false
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return 0, 0, "", false
	}
	return uid, gid, u.Username, true
}

// asUnprivileged returns the attributes that make a child process run as
// UnprivilegedUser: nil when not root, since the child then already runs as
// the current user.
func asUnprivileged() (*syscall.SysProcAttr, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	uid, gid, _, ok := UnprivilegedUser()
	if !ok {
		return nil, fmt.Errorf("running as root and user %q does not exist", unprivilegedName)
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{},
	}}, nil
}

// CommandAsUnprivileged is exec.CommandContext, except that when the process
// is root the command runs as UnprivilegedUser (with no supplementary
// groups). The environment is inherited, HOME included: point HOME (or the
// tool's own option) at a WritableTempDir when the tool writes there. If no
// unprivileged user exists the returned command fails to start.
func CommandAsUnprivileged(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	attr, err := asUnprivileged()
	if err != nil {
		cmd.Err = err
		return cmd
	}
	cmd.SysProcAttr = attr
	return cmd
}

// WritableTempDir returns a new directory, removed when the test ends, that
// UnprivilegedUser can write to. As root it is created directly in
// os.TempDir() (t.TempDir's parent is private to root) and chowned to that
// user; otherwise it is t.TempDir(). Files and directories the test creates
// inside it belong to root: use ChownUnprivileged on them when a tool run
// with CommandAsUnprivileged must write there.
func WritableTempDir(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("", "popbridge-test-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := ChownUnprivileged(dir); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dir
}

// ChownUnprivileged gives path, and everything below it, to
// UnprivilegedUser. It does nothing when the process is not root.
func ChownUnprivileged(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, _, ok := UnprivilegedUser()
	if !ok {
		return fmt.Errorf("chown %s: user %q does not exist", path, unprivilegedName)
	}
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
