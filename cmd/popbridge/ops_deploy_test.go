package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/certs"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

const deployDir = "../../deploy"

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// TestOpsDeployYAMLParses parses every YAML file under deploy/, every
// document of each.
func TestOpsDeployYAMLParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(deployDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); d.IsDir() || ext != ".yaml" && ext != ".yml" {
			return nil
		}
		if docs := yamlDocs(t, path); len(docs) == 0 {
			t.Errorf("%s: no YAML document", path)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 7 {
		t.Fatalf("found %d YAML files under deploy/, want the example config and the Kubernetes manifests", n)
	}
}

// get walks a decoded YAML tree: keys for maps, ints for lists.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestOpsKubernetesManifests checks the manifests fit together and fit
// popbridge: probes on the admin endpoints, a grace period longer than
// preStop plus drain, ports that match the config, the config valid.
func TestOpsKubernetesManifests(t *testing.T) {
	dir := filepath.Join(deployDir, "kubernetes")
	objs := map[string]map[string]any{} // kind -> object
	kust := yamlDocs(t, filepath.Join(dir, "kustomization.yaml"))[0]
	for _, r := range get(kust, "resources").([]any) {
		for _, doc := range yamlDocs(t, filepath.Join(dir, r.(string))) {
			kind, _ := doc["kind"].(string)
			if kind == "" || doc["apiVersion"] == nil || get(doc, "metadata", "name") == nil {
				t.Errorf("%s: object without apiVersion, kind or metadata.name", r)
			}
			objs[kind] = doc
		}
	}
	for _, kind := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} {
		if objs[kind] == nil {
			t.Fatalf("no %s in kustomization.yaml's resources", kind)
		}
	}

	// The ConfigMap's file is a valid popbridge config.
	file := filepath.Join(t.TempDir(), "popbridge.yaml")
	if err := os.WriteFile(file, []byte(get(objs["ConfigMap"], "data", "popbridge.yaml").(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]string{"--config", file}, func(string) string { return "" })
	if err != nil {
		t.Fatalf("ConfigMap popbridge.yaml: %v", err)
	}

	pod := get(objs["Deployment"], "spec", "template", "spec")
	c := get(pod, "containers", 0)
	if p := get(c, "livenessProbe", "httpGet", "path"); p != "/livez" {
		t.Errorf("livenessProbe path = %v, want /livez", p)
	}
	if p := get(c, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("readinessProbe path = %v, want /readyz", p)
	}
	sleep, _ := get(c, "lifecycle", "preStop", "sleep", "seconds").(int)
	grace, _ := get(pod, "terminationGracePeriodSeconds").(int)
	if sleep <= 0 {
		t.Error("no preStop sleep: the load balancer needs time to stop sending new clients")
	}
	if need := time.Duration(sleep)*time.Second + cfg.DrainTimeout; time.Duration(grace)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds %d <= preStop %ds + drain-timeout %v", grace, sleep, cfg.DrainTimeout)
	}
	// The replicas share one PostgreSQL store, its URL from a Secret.
	storeEnv := false
	for _, e := range get(c, "env").([]any) {
		if get(e, "name") == "POPBRIDGE_STORE" && get(e, "valueFrom", "secretKeyRef", "name") == "popbridge-postgres" {
			storeEnv = true
		}
	}
	if !storeEnv {
		t.Error("no POPBRIDGE_STORE from the popbridge-postgres Secret: each replica would keep state of its own")
	}
	if u := get(pod, "securityContext", "runAsUser"); u != 65532 {
		t.Errorf("runAsUser = %v, want 65532 (the image's user)", u)
	}

	// Ports: the config's listeners are the container's, and the Service
	// targets them by name.
	ports := map[string]int{}
	for _, p := range get(c, "ports").([]any) {
		ports[get(p, "name").(string)] = get(p, "containerPort").(int)
	}
	for name, addr := range map[string]string{"pop3": cfg.Listen, "pop3s": cfg.ListenTLS, "admin": cfg.AdminListen} {
		if _, port, _ := net.SplitHostPort(addr); port != fmt.Sprint(ports[name]) {
			t.Errorf("container port %s = %d, config listens on %q", name, ports[name], addr)
		}
	}
	for _, p := range get(objs["Service"], "spec", "ports").([]any) {
		if tp := get(p, "targetPort").(string); ports[tp] == 0 || tp == "admin" {
			t.Errorf("Service targets port %q: not a POP3 container port", tp)
		}
	}
	for _, kind := range []string{"Service", "PodDisruptionBudget"} {
		sel := get(objs[kind], "spec", "selector")
		if kind == "PodDisruptionBudget" {
			sel = get(sel, "matchLabels")
		}
		if fmt.Sprint(sel) != fmt.Sprint(get(objs["Deployment"], "spec", "template", "metadata", "labels")) {
			t.Errorf("%s selector %v does not match the pod labels", kind, sel)
		}
	}
	if n := get(objs["HorizontalPodAutoscaler"], "spec", "scaleTargetRef", "name"); n != get(objs["Deployment"], "metadata", "name") {
		t.Errorf("HPA scales %v, not the Deployment", n)
	}
}

// TestOpsSystemdUnit checks the unit's hardening and has systemd verify it
// and rate its exposure.
func TestOpsSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join(deployDir, "systemd", "popbridge.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"ExecReload=/bin/kill -HUP $MAINPID", "StateDirectory=popbridge",
		"ExecStart=/usr/local/bin/popbridge --config /etc/popbridge/popbridge.yaml --data-dir /var/lib/popbridge"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(unit) {
			t.Errorf("unit lacks %s", want)
		}
	}
	analyze := testenv.RequireTool(t, "systemd-analyze")
	// verify wants the ExecStart binary to exist.
	bin := bridgeproc.Binary(t)
	tmp := filepath.Join(t.TempDir(), "popbridge.service")
	if err := os.WriteFile(tmp, bytes.ReplaceAll(unit, []byte("/usr/local/bin/popbridge"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", tmp).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// 3.0 on systemd's 0-10 scale ("OK"); the unit rates 1.6.
	if out, err := exec.Command(analyze, "security", "--offline=true", "--threshold=30", tmp).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security: exposure above 3.0: %v\n%s", err, out)
	}
}

// TestOpsBehindHAProxy runs the shipped haproxy.cfg (addresses swapped for
// loopback ones) in front of popbridge: HAProxy's send-proxy-v2 header is
// accepted and popbridge logs the client's address, on POP3 and POP3S.
func TestOpsBehindHAProxy(t *testing.T) {
	haproxy := testenv.RequireTool(t, "haproxy")
	shipped := filepath.Join(deployDir, "haproxy", "haproxy.cfg")
	if out, err := exec.Command(haproxy, "-c", "-f", shipped).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c %s: %v\n%s", shipped, err, out)
	}
	probe, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback, needed to tell the client from HAProxy: %v", err)
	}
	probe.Close()

	// The client comes from ::1, HAProxy connects to popbridge from
	// 127.0.0.1: only the PROXY header can tell popbridge "::1".
	cert, key, _ := certs.Files(t, "", "server")
	p := opsStart(t, bridgeproc.Binary(t), "--demo", "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
		"--tls-cert", cert, "--tls-key", key, "--admin-listen", "127.0.0.1:0",
		"--proxy-protocol", "127.0.0.1/32")
	pop3Front, pop3sFront := startHAProxy(t, haproxy, shipped, p)

	c := opsDial(t, pop3Front, nil)
	c.MustLine("+OK")
	c.OK("USER demo")
	c.OK("PASS demo")
	c.OK("STAT")
	c.OK("QUIT")
	p.WaitLog(map[string]string{"event": "session_end", "client_ip": "::1", "tls": "false", "result": "quit"}, 5*time.Second)

	raw, err := net.DialTimeout("tcp", pop3sFront, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) // the test's own throwaway cert
	c = pop3client.New(t, tc, opsClient)
	t.Cleanup(func() { raw.Close() })
	c.MustLine("+OK")
	c.OK("USER demo")
	c.OK("PASS demo")
	c.OK("QUIT")
	p.WaitLog(map[string]string{"event": "session_end", "client_ip": "::1", "tls": "true", "result": "quit"}, 5*time.Second)

	if n := p.CountLog(map[string]string{"component": "proxy-protocol"}); n != 0 {
		t.Errorf("%d PROXY protocol complaints with HAProxy in front (health checks go to the admin port)", n)
	}
}

// startHAProxy runs HAProxy with the shipped configuration pointed at p
// and returns its POP3 and POP3S front addresses on ::1. HAProxy cannot
// listen on port 0 and report its port: ports are picked below the
// ephemeral range (testenv.FreePort), and a start that fails to bind one
// (HAProxy exits) is tried again with new ports.
func startHAProxy(t *testing.T, haproxy, shipped string, p *bridgeproc.Bridge) (pop3Front, pop3sFront string) {
	t.Helper()
	_, adminPort, _ := net.SplitHostPort(p.Admin)
	src, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		pop3Front, pop3sFront = testenv.FreePort(t, "::1"), testenv.FreePort(t, "::1")
		var cfg []string
		for _, l := range strings.Split(string(src), "\n") {
			f := strings.Fields(l)
			if len(f) > 0 && (f[0] == "chroot" || f[0] == "user" || f[0] == "group" || f[0] == "stats") {
				continue // root-only settings
			}
			if len(f) == 2 && f[0] == "maxconn" {
				l = "    maxconn 100" // within the test's file descriptor limit
			}
			l = strings.Replace(l, "bind :110", "bind "+pop3Front, 1)
			l = strings.Replace(l, "bind :995", "bind "+pop3sFront, 1)
			l = regexp.MustCompile(`10\.0\.0\.1\d:1110`).ReplaceAllString(l, p.POP3)
			l = regexp.MustCompile(`10\.0\.0\.1\d:1995`).ReplaceAllString(l, p.POP3S)
			l = strings.Replace(l, "port 9110", "port "+adminPort, 1)
			cfg = append(cfg, l)
		}
		cfgFile := filepath.Join(t.TempDir(), "haproxy.cfg")
		if err := os.WriteFile(cfgFile, []byte(strings.Join(cfg, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		hlog := &bridgeproc.SyncBuffer{}
		h := exec.Command(haproxy, "-db", "-f", cfgFile)
		h.Stdout, h.Stderr = hlog, hlog
		if err := h.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { h.Wait(); close(exited) }()
		// Listening once both ports are held (no one else can listen
		// there) and the plain front answers; without a connection to the
		// TLS front, which popbridge would log as a failed handshake.
		bound := func() bool {
			for _, a := range []string{pop3Front, pop3sFront} {
				if l, err := net.Listen("tcp", a); err == nil {
					l.Close()
					return false
				}
			}
			c, err := net.Dial("tcp", pop3Front)
			if err == nil {
				c.Close()
			}
			return err == nil
		}
		up := false
		for !up {
			select {
			case <-exited:
			case <-time.After(20 * time.Millisecond):
				up = bound()
				continue
			}
			break
		}
		if up {
			t.Cleanup(func() {
				h.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("haproxy log:\n%s", hlog.String())
				}
			})
			return pop3Front, pop3sFront
		}
		if attempt == 5 {
			t.Fatalf("haproxy exited at start %d times; last log:\n%s", attempt, hlog.String())
		}
		t.Logf("haproxy exited at start (a port taken?), trying new ports:\n%s", hlog.String())
	}
}
