// Package fdlimit raises the process's open-file limit at startup and says
// whether it is enough.
//
// Every POP3 session holds two file descriptors (the client's socket and
// the upstream's); the admin listener, the store and the logs need a few
// more. Running out is an outage: accept fails with EMFILE for everyone.
// Like most Go servers, popbridge raises the soft RLIMIT_NOFILE to the
// hard limit at start (Go itself does so since 1.19; doing it here makes
// it explicit, works whatever runtime default, and gives the log line).
package fdlimit

import (
	"fmt"
	"syscall"

	"github.com/rs/zerolog"
)

// perSession is the file descriptors one POP3 session holds; reserve is
// for everything else (listeners, admin connections, store, logs).
const (
	perSession = 2
	reserve    = 128
)

// Raise sets the soft open-file limit to the hard limit and returns the
// limits before and after.
func Raise() (before, after syscall.Rlimit, err error) {
	if err = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &before); err != nil {
		return before, before, fmt.Errorf("getrlimit: %w", err)
	}
	after = before
	if after.Cur < after.Max {
		after.Cur = after.Max
		if err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &after); err != nil {
			return before, before, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return before, after, nil
}

// Needed is how many file descriptors maxSessions sessions need.
func Needed(maxSessions int) uint64 {
	return uint64(perSession*maxSessions + reserve)
}

// RaiseAndLog raises the limit and logs it, with a warning when it is
// below what maxSessions sessions need.
func RaiseAndLog(log zerolog.Logger, maxSessions int) {
	before, after, err := Raise()
	if err != nil {
		log.Warn().Err(err).Msg("could not raise the open-file limit")
		return
	}
	ev := log.Info()
	msg := "open-file limit"
	if after.Cur != before.Cur {
		msg = "open-file limit raised to the hard limit"
	}
	if need := Needed(maxSessions); after.Cur < need {
		ev = log.Warn()
		msg += fmt.Sprintf(": below the %d that --max-sessions %d needs; raise the hard limit (LimitNOFILE= in systemd, ulimit -n)", need, maxSessions)
	}
	ev.Uint64("soft_before", before.Cur).Uint64("soft", after.Cur).Uint64("hard", after.Max).Msg(msg)
}
