package inproc

import (
	"flag"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"

	"github.com/popbridge/popbridge/bench"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// loopProfile, unlike go test's -cpuprofile, leaves out the seeding of
// the mailboxes: go test ./bench/inproc -bench X -args -loopprofile=FILE.
// It runs from the first benchmark loop to the end of the test binary.
var loopProfile = flag.String("loopprofile", "", "write a CPU profile of the benchmark loops only (after seeding) to `file`")

var (
	profileOnce sync.Once
	profileFile *os.File
	// fixtures are shared by every run of a benchmark function, so that a
	// mailbox is seeded once per process.
	fixtures = map[string]*fixture{}
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if profileFile != nil {
		pprof.StopCPUProfile()
		profileFile.Close()
	}
	for _, f := range fixtures {
		f.stop()
	}
	os.Exit(code)
}

// profileLoop starts the loop profile, if asked for and not yet running.
func profileLoop(b *testing.B) {
	b.Helper()
	if *loopProfile == "" {
		return
	}
	profileOnce.Do(func() {
		f, err := os.Create(*loopProfile)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		profileFile = f
	})
}

// fixture is a seeded Dovecot and an in-process popbridge in front of it.
type fixture struct {
	dovecot *testenv.Dovecot
	bridge  *Bridge
	boxes   map[string]*bench.Mailbox
}

func (f *fixture) stop() {
	_ = f.bridge.Close()
	_ = f.dovecot.Stop()
}

var boxSpecs = map[string][]bench.BoxSpec{
	"poll10k": {{Count: 10_000, Size: 2 << 10}},
	"poll50k": {{Count: 50_000, Size: 2 << 10}},
	"small":   {{Count: 10_000, Size: 4 << 10}},
	"large":   {{Count: 20, Size: 1 << 20}},
	"tiny":    {{Count: 20, Size: 4 << 10}},
}

// start returns the fixture with the named mailboxes, seeding them and
// starting Dovecot and popbridge on first use. It skips (fails in CI)
// without Dovecot.
func start(tb testing.TB, names ...string) *fixture {
	tb.Helper()
	testenv.RequireTool(tb, "dovecot")
	testenv.RequireTool(tb, "imap")
	key := strings.Join(names, ",")
	if f := fixtures[key]; f != nil {
		return f
	}
	var users []testenv.User
	boxes := map[string]*bench.Mailbox{}
	for _, n := range names {
		boxes[n] = &bench.Mailbox{User: n, Password: "pw-" + n, Seen: true}
		users = append(users, testenv.User{Name: n, Password: "pw-" + n})
	}
	d, err := testenv.StartDovecotProcess(testenv.DovecotOptions{Users: users, ExtraConfig: bench.FastLoginConfig})
	if err != nil {
		tb.Fatal(err)
	}
	for _, n := range names {
		if err := bench.Seed(d, boxes[n], boxSpecs[n]...); err != nil {
			_ = d.Stop()
			tb.Fatal(err)
		}
	}
	b, err := Start(d.IMAPAddr, io.Discard)
	if err != nil {
		_ = d.Stop()
		tb.Fatal(err)
	}
	f := &fixture{dovecot: d, bridge: b, boxes: boxes}
	fixtures[key] = f
	return f
}

// TestInProcess proves the wiring: a poll and a verified download.
func TestInProcess(t *testing.T) {
	f := start(t, "tiny")
	box := f.boxes["tiny"]
	if err := bench.Poll(f.bridge.Addr, box); err != nil {
		t.Fatal(err)
	}
	n, err := bench.Download(f.bridge.Addr, box, false)
	if err != nil {
		t.Fatal(err)
	}
	if n != box.TotalSize() {
		t.Errorf("downloaded %d octets, seeded %d", n, box.TotalSize())
	}
}

// BenchmarkPoll is one device poll (login, STAT, UIDL, QUIT) per op.
func BenchmarkPoll(b *testing.B) {
	for _, name := range []string{"10k", "50k"} {
		b.Run(name, func(b *testing.B) {
			f := start(b, "poll"+name)
			box := f.boxes["poll"+name]
			if err := bench.Poll(f.bridge.Addr, box); err != nil { // warm the cache
				b.Fatal(err)
			}
			profileLoop(b)
			b.ResetTimer()
			for b.Loop() {
				if err := bench.Poll(f.bridge.Addr, box); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParallelPoll is BenchmarkPoll from many clients at once.
func BenchmarkParallelPoll(b *testing.B) {
	f := start(b, "poll10k")
	box := f.boxes["poll10k"]
	if err := bench.Poll(f.bridge.Addr, box); err != nil { // warm the cache
		b.Fatal(err)
	}
	b.SetParallelism(25) // 50 clients on 2 CPUs
	profileLoop(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := bench.Poll(f.bridge.Addr, box); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkDownload is one session fetching and verifying every message
// per op: RETR of 10,000 × 4 KiB ("small") or 20 × 1 MiB ("large"), or
// TOP n 0 of the 10,000 ("top").
func BenchmarkDownload(b *testing.B) {
	for _, c := range []struct {
		name, box string
		top       bool
	}{{"small", "small", false}, {"large", "large", false}, {"top", "small", true}} {
		b.Run(c.name, func(b *testing.B) {
			f := start(b, c.box)
			box := f.boxes[c.box]
			if !c.top {
				b.SetBytes(box.TotalSize())
			}
			if err := bench.Poll(f.bridge.Addr, box); err != nil { // warm the cache
				b.Fatal(err)
			}
			profileLoop(b)
			for b.Loop() {
				if _, err := bench.Download(f.bridge.Addr, box, c.top); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
