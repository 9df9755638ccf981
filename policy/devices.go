package policy

import (
	"slices"
	"strings"
	"time"
)

// DefaultDeviceSeparator and DefaultDeviceExpiry are the defaults of
// --device-separator and --device-expiry (docs/policy.md, "Devices").
const (
	DefaultDeviceSeparator = "#"
	DefaultDeviceExpiry    = 30 * 24 * time.Hour
)

// SplitDevice splits a POP3 login name into the upstream user and the
// device: "alice@example.com#phone" is the user "alice@example.com" and
// the device "phone" with separator "#". The last separator counts, so a
// local part that happens to contain it still works when a device is
// named. An empty separator disables devices: the whole name is the user.
// Device names are folded to lower case, like override keys, so "Phone"
// and "phone" are one device. A name without a device (or with an empty
// one) is the device "".
func SplitDevice(username, sep string) (user, device string) {
	if sep == "" {
		return username, ""
	}
	i := strings.LastIndex(username, sep)
	if i <= 0 {
		return username, ""
	}
	return username[:i], strings.ToLower(username[i+len(sep):])
}

// DeviceSeen is one device of a mailbox and when it last logged in.
type DeviceSeen struct {
	Name     string
	LastSeen time.Time
}

// Ledger says which UIDs each device has done (deleted, or downloaded
// where the policy counts downloads), for one UIDVALIDITY. A device that
// has done nothing may be missing.
type Ledger map[string][]uint32

// Devices is the shared-mailbox state one session decides with: who it is,
// which devices the mailbox has, and what they have done.
//
// With device views every device of a mailbox has its own view: what it
// has done is hidden from it only, and the policy's action is applied
// upstream once every active device (seen within Expiry of Now, the
// session's own device always) has done it. A device that stops logging
// in stops holding messages back after Expiry.
type Devices struct {
	// Device is this session's device ("" for a login without one).
	Device string
	// Known lists the mailbox's devices; this session's device need not be
	// among them (its first login).
	Known []DeviceSeen
	// Done is the ledger for the snapshot's UIDVALIDITY.
	Done Ledger
	// Now and Expiry decide which devices are active; Expiry 0 means
	// DefaultDeviceExpiry.
	Now    time.Time
	Expiry time.Duration
}

// Hidden returns the UIDs this device must not see: the ones it has done
// already. Under leave this is what keeps a client that deleted a message
// from downloading it again; under honor and on-download it hides what
// the device is done with while other devices still hold it upstream.
func (d Devices) Hidden() []uint32 { return uniqueSorted(d.Done[d.Device]) }

// DevicePlan is a Plan plus what this session adds to its device's
// ledger.
type DevicePlan struct {
	Plan
	// Done are the UIDs to record as done by this session's device
	// (before Apply is carried out).
	Done []uint32
}

// Empty reports whether the plan changes nothing, upstream or in the
// ledger.
func (dp DevicePlan) Empty() bool { return dp.Plan.Empty() && len(dp.Done) == 0 }

// MakeDevicePlan is MakePlan for a session with device views. present
// are the UIDs of the snapshot (hidden ones included): only those can be
// applied, so nothing outside the session's own view of the mailbox is
// ever touched. A message some device did earlier is applied in this
// session once the last active device is done with it, for example after
// the device holding it back has expired.
//
// Which session actions count as done: DELE under honor and leave, DELE
// and full downloads under on-download. Leave never applies anything.
func MakeDevicePlan(p Policy, d Devices, present, deleted, retrieved []uint32) DevicePlan {
	base := MakePlan(p, deleted, retrieved)
	dp := DevicePlan{Plan: Plan{Seen: base.Seen, Action: p.Action}}
	switch p.Delete {
	case Honor, Leave:
		dp.Done = uniqueSorted(deleted)
	case OnDownload:
		dp.Done = base.Apply
	}
	if p.Delete == Leave {
		return dp
	}
	mine := uniqueSorted(append(slices.Clone(d.Done[d.Device]), dp.Done...))
	others := make([][]uint32, 0, len(d.Known))
	for _, dev := range d.active() {
		others = append(others, uniqueSorted(d.Done[dev]))
	}
	for _, uid := range uniqueSorted(present) {
		if contains(mine, uid) && !slices.ContainsFunc(others, func(done []uint32) bool { return !contains(done, uid) }) {
			dp.Apply = append(dp.Apply, uid)
		}
	}
	return dp
}

// active returns the other devices seen within the expiry.
func (d Devices) active() []string {
	exp := d.Expiry
	if exp <= 0 {
		exp = DefaultDeviceExpiry
	}
	var out []string
	for _, k := range d.Known {
		if k.Name == d.Device || slices.Contains(out, k.Name) {
			continue
		}
		if d.Now.Sub(k.LastSeen) <= exp {
			out = append(out, k.Name)
		}
	}
	return out
}

func contains(sorted []uint32, v uint32) bool {
	_, ok := slices.BinarySearch(sorted, v)
	return ok
}
