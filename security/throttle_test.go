package security

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// rawLogin logs in from the loopback address from (all of 127.0.0.0/8
// reaches lo) with USER/PASS and returns the reply to PASS, then QUITs.
// It never calls t.Fatal, so attackers can run it in goroutines.
func rawLogin(pop3, from, user, pass string, deadline time.Duration) (string, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", pop3)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(deadline))
	r := bufio.NewReader(nc)
	line := func() (string, error) {
		s, err := r.ReadString('\n')
		return strings.TrimRight(s, "\r\n"), err
	}
	if _, err := line(); err != nil {
		return "", err
	}
	fmt.Fprintf(nc, "USER %s\r\n", user)
	if _, err := line(); err != nil {
		return "", err
	}
	fmt.Fprintf(nc, "PASS %s\r\n", pass)
	reply, err := line()
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(reply, "+OK") {
		fmt.Fprintf(nc, "STAT\r\n")
		if _, err := line(); err != nil {
			return reply, err
		}
	}
	fmt.Fprintf(nc, "QUIT\r\n")
	line()
	return reply, nil
}

// legitLogins logs user in n times from 127.0.0.1, pausing between
// logins so that they sample the whole attack, and returns the durations.
func legitLogins(t *testing.T, pop3, user, pass string, n int, pause time.Duration) []time.Duration {
	t.Helper()
	var ds []time.Duration
	for i := range n {
		time.Sleep(pause)
		start := time.Now()
		reply, err := rawLogin(pop3, "127.0.0.1", user, pass, 60*time.Second)
		if err != nil || !strings.HasPrefix(reply, "+OK") {
			t.Fatalf("%s's login %d: %q, %v", user, i+1, reply, err)
		}
		ds = append(ds, time.Since(start))
	}
	return ds
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// One attacker must not slow everyone (default flags, real Dovecot with its
// auth penalty on, no --upstream-send-id): wrong passwords from 100 loopback
// addresses against three user names — the two real users' and one that
// does not exist — while the real users keep logging in. Without
// loginguard every wrong password reaches Dovecot, which penalizes
// popbridge's own address, so every login waits up to 15 s; with it,
// repeated and throttled guesses are answered by popbridge, and the users'
// logins stay within a small ratio of their baseline measured in this test
// (a ratio: the machine may be slow, but not fifty times slower).
func TestWrongPasswordAttackDoesNotSlowOthers(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{
		AuthDelays: true, // Dovecot's default auth_failure_delay and auth penalty
		Users:      []testenv.User{{Name: "alice", Password: "alice-pw"}, {Name: "bob", Password: "bob-pw"}},
	})
	b := startBridge(t, "--upstream", "imap+insecure://"+d.IMAPAddr, "--admin-listen", "127.0.0.1:0")
	// The admin is told at startup what would make this safe upstream.
	if b.WaitEntry(10*time.Second, func(e map[string]any) bool {
		m, _ := e["message"].(string)
		return e["level"] == "warn" && strings.Contains(m, "--upstream-send-id") && strings.Contains(m, "login_trusted_networks")
	}) == nil {
		t.Error("no startup warning about --upstream-send-id and login_trusted_networks in front of Dovecot")
	}

	baseline := legitLogins(t, b.POP3, "alice", "alice-pw", 5, 0)
	legitLogins(t, b.POP3, "bob", "bob-pw", 1, 0) // bob's device polls too
	base := median(baseline)
	t.Logf("baseline: median %v of %v", base, baseline)

	// The attack: 100 addresses, each a loop of connections with three
	// wrong passwords (fresh ones, and one repeated) for alice, bob or a
	// name that does not exist.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var attempts, refused atomic.Int64
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := fmt.Sprintf("127.0.0.%d", 10+i)
			victim := []string{"alice", "bob", "admin"}[i%3]
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				pass := fmt.Sprintf("guess-%d-%d", i, n)
				if n%2 == 0 {
					pass = "123456"
				}
				reply, err := rawLogin(b.POP3, from, victim, pass, 60*time.Second)
				attempts.Add(1)
				if err == nil && strings.HasPrefix(reply, "-ERR [AUTH]") {
					refused.Add(1)
				}
			}
		}()
	}
	t.Cleanup(func() { close(stop); wg.Wait() })

	// Measure once the attack is under way: every address has failed at
	// least once (popbridge's per-address penalty is then in force).
	deadline := time.Now().Add(60 * time.Second)
	for b.CountLog(map[string]string{"event": "login_failed"}) < 150 {
		if time.Now().After(deadline) {
			t.Fatalf("the attack did not get going: %d failed logins", b.CountLog(map[string]string{"event": "login_failed"}))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The guesses that did reach Dovecot (each user's burst) wait out
	// Dovecot's penalty, up to 15 s each, before they fail; one failing
	// while alice is measured restarts the penalty and holds her next
	// login 15 s (seen on a loaded machine). So wait until every upstream
	// attempt but the six successful logins above has been answered.
	attemptsRE := regexp.MustCompile(`(?m)^popbridge_login_upstream_attempts_total (\d+)`)
	deadline = time.Now().Add(2 * time.Minute) // a hang guard
	for {
		var upstream int
		if m := attemptsRE.FindStringSubmatch(scrape(t, b.Admin)); m != nil {
			upstream, _ = strconv.Atoi(m[1])
		}
		answered := strings.Count(d.Log(), "auth failed")
		if upstream > 0 && answered >= upstream-6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Dovecot answered %d of the %d wrong passwords popbridge passed on", answered, upstream-6)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Each user's burst of wrong passwords (3 each) goes upstream at the
	// start, and Dovecot answers them late (its penalty delays them): wait
	// until all nine are answered, or one still in flight would raise
	// Dovecot's penalty on popbridge's address after the warm-up login
	// below and hold back a measured one.
	deadline = time.Now().Add(2 * time.Minute) // a hang guard, not a measure
	for strings.Count(d.Log(), "auth failed") < 3*3 {
		if time.Now().After(deadline) {
			t.Fatalf("the users' bursts never reached Dovecot: %d failed logins there", strings.Count(d.Log(), "auth failed"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The failures that did reach Dovecot before the throttle engaged
	// (each user's burst) have Dovecot delay the next login; a success
	// ends that. This first login is not measured: what matters is that
	// the attack, going on, slows nobody.
	warmup := legitLogins(t, b.POP3, "alice", "alice-pw", 1, 0)
	under := legitLogins(t, b.POP3, "alice", "alice-pw", 12, 500*time.Millisecond)
	bobUnder := legitLogins(t, b.POP3, "bob", "bob-pw", 3, 500*time.Millisecond)
	failedBefore := b.CountLog(map[string]string{"event": "login_failed"})
	t.Logf("under attack: first login %v, then alice mean %v of %v; bob %v; %d failed logins logged, %d attempts",
		warmup, mean(under), under, bobUnder, failedBefore, attempts.Load())

	// The mean, so that every login Dovecot's penalty holds back (8 to
	// 15 s each) counts. Generous: the attack's own CPU use on a 2-core
	// machine can slow a login several times; Dovecot's penalty makes the
	// mean a hundred times the baseline.
	const ratio = 10
	limit := ratio*base + 300*time.Millisecond
	if m := mean(under); m > limit {
		t.Errorf("alice's mean login under attack %v > %d × baseline %v + 300 ms", m, ratio, base)
	}
	if m := mean(bobUnder); m > limit {
		t.Errorf("bob's (the attacked user's) login with his right password: mean %v > %d × baseline %v + 300 ms", m, ratio, base)
	}
	// Few wrong passwords reached Dovecot: at most the three users'
	// bursts (3 each), one more per user a minute, and the ones in flight.
	upstreamFailures := strings.Count(d.Log(), "auth failed")
	t.Logf("Dovecot logged %d failed logins", upstreamFailures)
	if upstreamFailures > 3*3+3*2 {
		t.Errorf("%d failed logins reached Dovecot for %d refused by popbridge", upstreamFailures, failedBefore)
	}
	// The operator sees it in the metrics.
	if m := scrape(t, b.Admin); !regexp.MustCompile(`(?m)^popbridge_login_refused_locally_total [1-9]`).MatchString(m) {
		t.Errorf("no locally refused logins in /metrics:\n%s", m)
	}
}
