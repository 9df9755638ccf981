package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpsStaticBuildLikeDockerfile runs the Dockerfile's own go build line
// (Docker itself is not available in CI), then checks the result is a
// static executable without the build machine's paths that runs --help.
func TestOpsStaticBuildLikeDockerfile(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	line := dockerfileBuildLine(t, filepath.Join(root, "Dockerfile"))
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-o /out/popbridge", "./cmd/popbridge"} {
		if !strings.Contains(line, want) {
			t.Fatalf("Dockerfile build line %q lacks %q", line, want)
		}
	}
	bin := filepath.Join(t.TempDir(), "popbridge")
	cmd := exec.Command("sh", "-c", strings.Replace(line, "/out/popbridge", bin, 1))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: not static", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs shared libraries %v", libs)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(root+"/")) {
		t.Errorf("binary contains the build path %s: -trimpath not in effect", root)
	}

	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("popbridge --help: %v\n%s", err, out)
	}
	for _, flag := range []string{"--listen", "--admin-listen", "--proxy-protocol", "--drain-timeout"} {
		if !bytes.Contains(out, []byte(flag)) {
			t.Errorf("--help does not mention %s:\n%s", flag, out)
		}
	}
}

// dockerfileBuildLine returns the command of the Dockerfile's RUN line
// that runs go build.
func dockerfileBuildLine(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if cmd, ok := strings.CutPrefix(l, "RUN "); ok && strings.Contains(cmd, "go build") {
			if strings.HasSuffix(cmd, `\`) {
				t.Fatalf("Dockerfile build line continues on the next line; keep it one line")
			}
			return cmd
		}
	}
	t.Fatalf("no RUN ... go build line in %s", path)
	return ""
}

// TestOpsDockerfileShape checks what an image must have that no build can
// test here: the distroless base, a numeric non-root user, the ports, and
// no HEALTHCHECK.
func TestOpsDockerfileShape(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	for _, want := range []string{
		"FROM golang:1.26 AS build",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
		"EXPOSE 1110 1995 9110",
		`ENTRYPOINT ["/popbridge"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, l := range strings.Split(df, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "HEALTHCHECK") {
			t.Errorf("Dockerfile has a HEALTHCHECK; probes belong to the orchestrator")
		}
	}
}
