package bench

import (
	"io"
	"time"
)

// Config is what a run seeds and measures. FullConfig is the issue's
// benchmark; QuickConfig the same scenarios at sizes a CI test can afford.
type Config struct {
	// Reps is the number of measured rounds of each scenario; each round
	// runs every server once, in the order of Servers. Medians are
	// reported.
	Reps int
	// PollDuration is how long each poll measurement lasts; each client
	// finishes its session in progress, and at least PollMinSessions
	// sessions are run in all.
	PollDuration    time.Duration
	PollMinSessions int
	// PollCounts are the mailbox sizes polled, PollMsgSize their messages'
	// size, PollClients the concurrency levels.
	PollCounts  []int
	PollMsgSize int64
	PollClients []int
	// Small is the mailbox downloaded message by message and read with
	// TOP n 0; Large the big-attachment mailbox.
	Small BoxSpec
	Large []BoxSpec
	// IdleSessions are held logged in at once, each on a user of its own
	// with IdleMessages messages.
	IdleSessions int
	IdleMessages int
	// HugeSize is the one message RETR'd for popbridge's peak memory.
	HugeSize int64
	// Scenarios, when not empty, selects scenarios by name (see
	// ScenarioNames).
	Scenarios []string

	// ProcessPerSession keeps Dovecot's default of one process per IMAP
	// and POP3 session; by default one process serves up to 32, on both
	// Dovecots (see fastLoginConfig).
	ProcessPerSession bool
	// BridgeBinary is a popbridge binary to run; empty builds
	// ./cmd/popbridge of ModuleRoot.
	BridgeBinary string
	ModuleRoot   string
	// BridgeArgs are appended to popbridge's command line.
	BridgeArgs []string
	// WorkDir receives the binary and popbridge's log; empty means a
	// temporary directory, removed at the end.
	WorkDir string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// FullConfig is the benchmark of issues 5 and 11 (docs/benchmarks.md).
func FullConfig() Config {
	return Config{
		Reps:            3,
		PollDuration:    10 * time.Second,
		PollMinSessions: 20,
		PollCounts:      []int{10_000, 50_000},
		PollMsgSize:     2 << 10,
		PollClients:     []int{1, 50},
		Small:           BoxSpec{Count: 10_000, Size: 4 << 10},
		Large:           []BoxSpec{{Count: 200, Size: 1 << 20}, {Count: 5, Size: 25 << 20}},
		IdleSessions:    2000,
		IdleMessages:    3,
		HugeSize:        100 << 20,
	}
}

// QuickConfig runs every scenario once at small sizes: it proves the
// program and the byte checks work, not how fast anything is.
func QuickConfig() Config {
	return Config{
		Reps:            1,
		PollDuration:    200 * time.Millisecond,
		PollMinSessions: 3,
		PollCounts:      []int{200, 1000},
		PollMsgSize:     2 << 10,
		PollClients:     []int{1, 4},
		Small:           BoxSpec{Count: 200, Size: 4 << 10},
		Large:           []BoxSpec{{Count: 4, Size: 256 << 10}, {Count: 1, Size: 2 << 20}},
		IdleSessions:    20,
		IdleMessages:    3,
		HugeSize:        8 << 20,
	}
}
