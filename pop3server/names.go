package pop3server

import (
	"fmt"
	"strings"
)

// The names of PlaintextAuth values and Workarounds in configuration
// (--plaintext-auth, --client-workarounds), so that the configuration
// parses straight into this package's types.

var plaintextNames = [...]string{PlaintextLocal: "local", PlaintextAlways: "always", PlaintextNever: "never"}

// PlaintextAuthNames lists the names ParsePlaintextAuth accepts.
func PlaintextAuthNames() []string { return plaintextNames[:] }

// String is the configuration name: local, always or never.
func (p PlaintextAuth) String() string {
	if int(p) < len(plaintextNames) {
		return plaintextNames[p]
	}
	return fmt.Sprintf("PlaintextAuth(%d)", int(p))
}

// ParsePlaintextAuth parses local, always or never.
func ParsePlaintextAuth(s string) (PlaintextAuth, error) {
	for i, n := range plaintextNames {
		if s == n {
			return PlaintextAuth(i), nil
		}
	}
	return 0, fmt.Errorf("unknown value %q (want %s)", s, strings.Join(plaintextNames[:], ", "))
}

// Workaround names.
const (
	WorkaroundOutlookNoNULs = "outlook-no-nuls" // Workarounds.OutlookNoNULs
	WorkaroundOENSEOH       = "oe-ns-eoh"       // Workarounds.OENSEOH
)

// ParseWorkarounds turns workaround names into Workarounds; a name may
// repeat.
func ParseWorkarounds(names []string) (Workarounds, error) {
	var w Workarounds
	for _, n := range names {
		switch n {
		case WorkaroundOutlookNoNULs:
			w.OutlookNoNULs = true
		case WorkaroundOENSEOH:
			w.OENSEOH = true
		default:
			return Workarounds{}, fmt.Errorf("unknown client workaround %q (want %s or %s)", n, WorkaroundOutlookNoNULs, WorkaroundOENSEOH)
		}
	}
	return w, nil
}

// Names lists the workarounds switched on, in ParseWorkarounds' terms.
func (w Workarounds) Names() []string {
	var out []string
	if w.OutlookNoNULs {
		out = append(out, WorkaroundOutlookNoNULs)
	}
	if w.OENSEOH {
		out = append(out, WorkaroundOENSEOH)
	}
	return out
}
