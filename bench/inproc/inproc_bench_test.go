package inproc

import (
	"io"
	"testing"

	"github.com/popbridge/popbridge/bench"
	"github.com/popbridge/popbridge/internal/testenv"
)

// fixture is a seeded Dovecot and an in-process popbridge in front of it.
type fixture struct {
	bridge *Bridge
	boxes  map[string]*bench.Mailbox
}

var boxSpecs = map[string][]bench.BoxSpec{
	"poll10k": {{Count: 10_000, Size: 2 << 10}},
	"poll50k": {{Count: 50_000, Size: 2 << 10}},
	"small":   {{Count: 10_000, Size: 4 << 10}},
	"large":   {{Count: 20, Size: 1 << 20}},
	"tiny":    {{Count: 20, Size: 4 << 10}},
}

// start seeds the named mailboxes and starts popbridge.
func start(tb testing.TB, names ...string) *fixture {
	tb.Helper()
	var users []testenv.User
	boxes := map[string]*bench.Mailbox{}
	for _, n := range names {
		boxes[n] = &bench.Mailbox{User: n, Password: "pw-" + n, Seen: true}
		users = append(users, testenv.User{Name: n, Password: "pw-" + n})
	}
	d := testenv.StartDovecot(tb, testenv.DovecotOptions{Users: users, ExtraConfig: bench.FastLoginConfig})
	for _, n := range names {
		if err := bench.Seed(d, boxes[n], boxSpecs[n]...); err != nil {
			tb.Fatal(err)
		}
	}
	b, err := Start(d.IMAPAddr, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return &fixture{bridge: b, boxes: boxes}
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
			b.ResetTimer()
			for b.Loop() {
				if err := bench.Poll(f.bridge.Addr, box); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPollParallel is BenchmarkPoll from many clients at once.
func BenchmarkPollParallel(b *testing.B) {
	f := start(b, "poll10k")
	box := f.boxes["poll10k"]
	b.SetParallelism(25) // 50 clients on 2 CPUs
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
			for b.Loop() {
				if _, err := bench.Download(f.bridge.Addr, box, c.top); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
