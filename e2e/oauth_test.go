package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/oauthserver"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestOAuth2UserEndToEnd is the admin's path of docs/oauth2.md with the
// real binary: keygen, a config file with a generic provider, enroll by
// the device flow (pending, slow_down, approved) with a generated device
// password and a second device with its own, curl downloading byte-exact
// through Dovecot's oauth2 passdb, then the grant revoked at the
// provider ([SYS/PERM], marked), and the provider down ([SYS/TEMP]).
func TestOAuth2UserEndToEnd(t *testing.T) {
	curl := testenv.RequireTool(t, "curl")
	o := newOAuthEnv(t, oauthserver.Options{ClientSecret: "s3cret"}, "")
	idp, cfgFile, key, tool, want := o.idp, o.cfgFile, o.key, o.tool, o.want
	if out, errs, code := tool("", "keygen", "--secret-key-file", key); code != 0 {
		t.Fatalf("keygen: %d %s %s", code, out, errs)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	// Bad input: one line, status 2.
	for _, args := range [][]string{
		{"enroll", "--config", cfgFile, "--mailbox", oauthMailbox, "--device", "scanner"},
		{"enroll", "--config", cfgFile, "--mailbox", oauthMailbox, "--device", "bad name", "--generate"},
		{"enroll", "--config", cfgFile, "--mailbox", "bob@elsewhere.test", "--device", "scanner", "--generate"},
		{"frobnicate"},
	} {
		_, errs, code := tool("", args...)
		if code != 2 || strings.Count(errs, "\n") != 1 {
			t.Errorf("%q: status %d, stderr %q; want 2 and one line", args, code, errs)
		}
	}

	idp.NextDeviceFlow(oauthMailbox, "authorization_pending", "slow_down")
	out, errs, code := tool("", "enroll", "--config", cfgFile, "--mailbox", oauthMailbox, "--device", "scanner", "--generate")
	if code != 0 {
		t.Fatalf("enroll: %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, idp.URL+"/device") || !regexp.MustCompile(`enter the code\s+[0-9A-F]{8}`).MatchString(out) {
		t.Errorf("enroll does not tell the admin where to go:\n%s", out)
	}
	pw := regexp.MustCompile(`password\s+([a-z2-7]{4}(-[a-z2-7]{4}){4})\s`).FindStringSubmatch(out)
	if pw == nil {
		t.Fatalf("no generated password in:\n%s", out)
	}
	scannerPW := pw[1]
	// A second device with a password of its own (the one it has).
	idp.NextDeviceFlow(oauthMailbox)
	if out, errs, code := tool("old-pbx-password\n", "enroll", "--config", cfgFile, "--mailbox", oauthMailbox, "--device", "pbx", "--password-stdin"); code != 0 {
		t.Fatalf("enroll pbx: %d\n%s\n%s", code, out, errs)
	}

	if out, _, _ := tool("", "devices", "--config", cfgFile); !strings.Contains(out, "ok, access token until") || strings.Count(out, oauthMailbox) != 2 {
		t.Errorf("oauth devices after enrollment:\n%s", out)
	}
	b := o.startBridge(t)
	for _, p := range []string{scannerPW, "old-pbx-password"} {
		for i, m := range want {
			u := url.URL{Scheme: "pop3", User: url.UserPassword(oauthMailbox, p), Host: b.POP3, Path: fmt.Sprintf("/%d", i+1)}
			got := runTool(t, exec.Command(curl, "-sS", "--max-time", "60", u.String()))
			if !bytes.Equal(got, m) {
				t.Errorf("curl message %d with a device password:\n got %q\nwant %q", i+1, got, m)
			}
		}
	}
	// Python's poplib, a second real client, with the other device.
	if py, err := testenv.LookTool("python3"); err == nil {
		host, port, _ := net.SplitHostPort(b.POP3)
		script := `import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]))
p.user(sys.argv[3]); p.pass_(sys.argv[4])
for i in (1, 2):
    sys.stdout.buffer.write(b"\r\n".join(p.retr(i)[1]) + b"\r\n")
p.quit()`
		got := runTool(t, exec.Command(py, "-c", script, host, port, oauthMailbox, "old-pbx-password"))
		if !bytes.Equal(got, bytes.Join(want, nil)) {
			t.Errorf("poplib with the pbx password:\n got %q\nwant %q", got, bytes.Join(want, nil))
		}
	} else if testenv.InCI() {
		t.Fatal(err)
	}
	if log := b.LogText(); strings.Contains(log, scannerPW) || strings.Contains(log, "old-pbx-password") || tokenRE.MatchString(log) {
		t.Error("a password or token reached the log")
	}

	reply := func(pass string) string {
		t.Helper()
		c, r := oauthLogin(t, b, pass)
		c.TryCmd("QUIT")
		return r
	}
	if r := reply("wrong"); !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Errorf("wrong device password: %q", r)
	}
	// The provider is down and the access token has expired.
	idp.SetTokenDown(-1)
	idp.Advance(2 * time.Hour)
	if r := reply(scannerPW); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Errorf("provider down: %q", r)
	}
	idp.SetTokenDown(0)
	// Revoked at the provider: the refresh answers invalid_grant.
	idp.Revoke(oauthMailbox)
	if r := reply(scannerPW); r != "-ERR [SYS/PERM] mailbox authorization expired, ask your administrator" {
		t.Errorf("revoked grant: %q", r)
	}
	b.WaitLog(map[string]string{"message": "mailbox authorization expired: marked for re-enrollment (popbridge oauth enroll)"}, 10*time.Second)
	out, _, _ = tool("", "devices", "--config", cfgFile, "--log-level", "debug") // bridge flags are accepted
	if !strings.Contains(out, "needs re-enrollment (invalid_grant)") || !strings.Contains(out, "pbx") || !strings.Contains(out, "scanner") {
		t.Errorf("oauth devices:\n%s", out)
	}
	// Enrolled again: the devices keep their passwords.
	idp.NextDeviceFlow(oauthMailbox)
	if out, errs, code := tool("", "enroll", "--config", cfgFile, "--mailbox", oauthMailbox, "--device", "scanner", "--generate"); code != 0 {
		t.Fatalf("enroll again: %d\n%s\n%s", code, out, errs)
	}
	if r := reply("old-pbx-password"); !strings.HasPrefix(r, "+OK") {
		t.Errorf("pbx after re-enrollment: %q", r)
	}
	// Revoking one device leaves the other.
	if _, errs, code := tool("", "revoke", "--config", cfgFile, "--mailbox", oauthMailbox, "--device", "pbx"); code != 0 {
		t.Fatalf("revoke pbx: %s", errs)
	}
	if r := reply("old-pbx-password"); !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Errorf("revoked device: %q", r)
	}
	if tokenRE.MatchString(b.LogText()) {
		t.Error("a token reached the log")
	}
	if m := b.Scrape(); m["popbridge_oauth_token_refreshes_total{result=\"invalid_grant\"}"] != 1 {
		t.Errorf("metrics: invalid_grant refreshes = %v", m["popbridge_oauth_token_refreshes_total{result=\"invalid_grant\"}"])
	}
}

// oauthMailbox is the mailbox of the OAuth2 end-to-end tests.
const oauthMailbox = "alice@example.test"

// tokenRE matches the test authorization server's access and refresh tokens.
var tokenRE = regexp.MustCompile(`\b(at|rt)-[0-9a-f]{32}\b`)

// oauthEnv is an authorization server, a Dovecot asking it about tokens
// with two messages for oauthMailbox, and a popbridge config file for them.
type oauthEnv struct {
	idp          *oauthserver.Server
	d            *testenv.Dovecot
	cfgFile, key string
	want         [][]byte // the mailbox's messages
	// tool runs popbridge oauth ARGS with stdin and returns its stdout,
	// stderr and exit status.
	tool func(stdin string, args ...string) (string, string, int)
}

// newOAuthEnv sets up; storeURL "" means a SQLite file in a temporary
// directory. A client secret in opts goes in a client-secret-file.
func newOAuthEnv(t *testing.T, opts oauthserver.Options, storeURL string) *oauthEnv {
	t.Helper()
	o := &oauthEnv{idp: oauthserver.Start(t, opts)}
	o.d = testenv.StartDovecot(t, testenv.DovecotOptions{
		Users:  []testenv.User{{Name: oauthMailbox, Password: "seed-only"}},
		OAuth2: &testenv.DovecotOAuth2{IntrospectionURL: o.idp.URL + "/introspect"},
	})
	o.want = [][]byte{
		[]byte("From: a@example.test\r\nTo: " + oauthMailbox + "\r\nSubject: one\r\n\r\nfirst\r\n.leading dot\r\n"),
		[]byte("From: b@example.test\r\nTo: " + oauthMailbox + "\r\nSubject: two\r\n\r\nsecond\r\n"),
	}
	for _, m := range o.want {
		o.d.Append(t, oauthMailbox, "INBOX", m)
	}
	dir := t.TempDir()
	o.key = filepath.Join(dir, "secret.key")
	if storeURL == "" {
		storeURL = "sqlite:" + filepath.Join(dir, "popbridge.db")
	}
	secret := ""
	if opts.ClientSecret != "" {
		writeFile(t, filepath.Join(dir, "client.secret"), 0o600, opts.ClientSecret+"\n")
		secret = "\n    client-secret-file: " + filepath.Join(dir, "client.secret")
	}
	o.cfgFile = filepath.Join(dir, "popbridge.yaml")
	writeFile(t, o.cfgFile, 0o644, fmt.Sprintf(`secret-key-file: %s
store: %s
providers:
  corp:
    type: generic
    client-id: popbridge%s
    device-auth-url: %s/devicecode
    auth-url: %s/authorize
    token-url: %s/token
    scopes: [mail]
domains:
  example.test:
    auth: oauth2-user
    provider: corp
`, o.key, storeURL, secret, o.idp.URL, o.idp.URL, o.idp.URL))

	bin := bridgeproc.Binary(t)
	o.tool = func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"oauth"}, args...)...)
		cmd.Env = cleanEnv()
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	return o
}

// startBridge starts a popbridge process on the config file.
// startBridge's NoErrorLogs does not fit: marking a mailbox for
// re-enrollment is logged at level error, for the admin.
func (o *oauthEnv) startBridge(t *testing.T, extra ...string) *bridgeproc.Bridge {
	t.Helper()
	return bridgeproc.Start(t, bridgeproc.Options{
		Args: append([]string{"--upstream", "imap+insecure://" + o.d.IMAPAddr, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
			"--config", o.cfgFile, "--auth-fail-delay", "10ms", "--log-level", "debug"}, extra...),
		Env: cleanEnv(), StartTimeout: startTimeout, StopTimeout: 40 * time.Second, MustExitCleanly: true,
	})
}

// TestOAuth2SessionReleasedWhileIdle: an OAuth2 session whose upstream
// client is released whenever its POP3 client pauses (docs/design.md, idle
// sessions) resumes on the same upstream connection: every message
// byte-exact, and one upstream login for the whole session, so no token
// is needed again.
func TestOAuth2SessionReleasedWhileIdle(t *testing.T) {
	o := newOAuthEnv(t, oauthserver.Options{}, "")
	if _, errs, code := o.tool("", "keygen", "--config", o.cfgFile); code != 0 {
		t.Fatalf("keygen: %s", errs)
	}
	o.idp.NextDeviceFlow(oauthMailbox)
	out, errs, code := o.tool("", "enroll", "--config", o.cfgFile, "--mailbox", oauthMailbox, "--device", "scanner", "--generate")
	if code != 0 {
		t.Fatalf("enroll: %d\n%s\n%s", code, out, errs)
	}
	pw := regexp.MustCompile(`password\s+([a-z2-7]{4}(-[a-z2-7]{4}){4})\s`).FindStringSubmatch(out)
	if pw == nil {
		t.Fatalf("no generated password in:\n%s", out)
	}
	// No read-ahead: every RETR needs the upstream, so each resumes and
	// the session is released again after it.
	b := o.startBridge(t, "--release-idle-after", "1ms", "--prefetch-bytes", "0")
	logins := func() int { return strings.Count(o.d.Log(), "Login: user=<"+oauthMailbox+">") }
	before := logins()
	released := map[string]string{"message": "upstream client released while idle"}
	waitReleased := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); b.CountLog(released) < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d releases logged, want %d", b.CountLog(released), n)
			}
		}
	}
	c, r := oauthLogin(t, b, pw[1])
	if !strings.HasPrefix(r, "+OK") {
		t.Fatalf("login: %q", r)
	}
	waitReleased(1)
	for i, m := range o.want {
		c.CmdPrefix(fmt.Sprintf("RETR %d", i+1), "+OK")
		if got := c.Multiline(); !bytes.Equal(got, m) {
			t.Errorf("RETR %d after a release:\n got %q\nwant %q", i+1, got, m)
		}
		waitReleased(i + 2)
	}
	c.CmdPrefix("QUIT", "+OK")
	if n := logins() - before; n != 1 {
		t.Errorf("%d upstream logins for one session, want 1", n)
	}
}

// oauthLogin logs in to b as oauthMailbox with pass and returns the client and
// the answer to PASS.
func oauthLogin(t *testing.T, b *bridgeproc.Bridge, pass string) (*pop3client.Client, string) {
	t.Helper()
	conn, err := net.Dial("tcp", b.POP3)
	if err != nil {
		t.Fatal(err)
	}
	c := pop3client.New(t, conn, pop3client.Options{Deadline: time.Minute})
	c.MustLine("+OK")
	r, _ := c.TryLogin(oauthMailbox, pass)
	return c, r
}

// TestOAuth2TwoProcessesOnePostgres runs two popbridge processes on one
// PostgreSQL store: right after enrollment the stored access token is
// about to expire (the grant's tokens live a minute, refreshed ones an
// hour), and 20 logins at once, half on each process, cost exactly one
// refresh: the processes share nothing but the store's lock and rows.
func TestOAuth2TwoProcessesOnePostgres(t *testing.T) {
	if _, err := testenv.PostgresBinDir(); err != nil && !testenv.InCI() {
		t.Skipf("PostgreSQL: %v", err)
	}
	pg := testenv.StartPostgres(t)
	o := newOAuthEnv(t, oauthserver.Options{GrantAccessTTL: time.Minute}, pg.NewDatabase(t))
	if _, errs, code := o.tool("", "keygen", "--config", o.cfgFile); code != 0 {
		t.Fatalf("keygen: %s", errs)
	}
	o.idp.NextDeviceFlow(oauthMailbox)
	if out, errs, code := o.tool("pw\n", "enroll", "--config", o.cfgFile, "--mailbox", oauthMailbox, "--device", "scanner", "--password-stdin"); code != 0 {
		t.Fatalf("enroll: %d\n%s\n%s", code, out, errs)
	}
	bridges := []*bridgeproc.Bridge{o.startBridge(t), o.startBridge(t)}
	var wg sync.WaitGroup
	errs := make(chan string, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, r := oauthLogin(t, bridges[i%2], "pw")
			if !strings.HasPrefix(r, "+OK") {
				errs <- fmt.Sprintf("bridge %d: %s", i%2, r)
				return
			}
			if st, body, err := c.TryMulti("RETR 1"); err != nil || !bytes.Equal(body, o.want[0]) {
				errs <- fmt.Sprintf("bridge %d: RETR 1: %s %v", i%2, st, err)
			}
			c.TryCmd("QUIT")
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := o.idp.TokenRequests("refresh_token"); n != 1 || o.idp.ReuseDetected() {
		t.Errorf("%d refresh requests from two processes (reuse detected %v), want exactly 1", n, o.idp.ReuseDetected())
	}
}

// TestOAuth2CodeFlowEndToEnd enrolls with the authorization code flow
// and PKCE: the test reads the URL popbridge prints and "opens" it, the
// authorization server redirects to popbridge's loopback listener, and
// curl then reads the mail with the device password.
func TestOAuth2CodeFlowEndToEnd(t *testing.T) {
	curl := testenv.RequireTool(t, "curl")
	o := newOAuthEnv(t, oauthserver.Options{}, "")
	if _, errs, code := o.tool("", "keygen", "--config", o.cfgFile); code != 0 {
		t.Fatalf("keygen: %s", errs)
	}
	o.idp.AuthorizeAs(oauthMailbox, false)
	cmd := exec.Command(bridgeproc.Binary(t), "oauth", "enroll", "--config", o.cfgFile, "--mailbox", oauthMailbox,
		"--device", "fax", "--password-stdin", "--flow", "code")
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader("fax-pw\n")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	authURL := regexp.MustCompile(`http://127\.0\.0\.1:\d+/authorize\?\S+`)
	buf := make([]byte, 4096)
	for !authURL.Match(out.Bytes()) {
		n, err := stdout.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			t.Fatalf("enroll ended before printing the URL: %v\n%s\n%s", err, out.String(), errb.String())
		}
	}
	resp, err := http.Get(authURL.FindString(out.String())) // the browser
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rest, _ := io.ReadAll(stdout)
	out.Write(rest)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("enroll --flow code: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if !strings.Contains(string(page), "signed in") || !strings.Contains(out.String(), "code_challenge_method=S256") {
		t.Errorf("browser page %q; terminal:\n%s", page, out.String())
	}
	b := o.startBridge(t)
	u := url.URL{Scheme: "pop3", User: url.UserPassword(oauthMailbox, "fax-pw"), Host: b.POP3, Path: "/2"}
	if got := runTool(t, exec.Command(curl, "-sS", "--max-time", "60", u.String())); !bytes.Equal(got, o.want[1]) {
		t.Errorf("curl message 2:\n got %q\nwant %q", got, o.want[1])
	}
}
