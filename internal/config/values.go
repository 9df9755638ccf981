package config

import (
	"github.com/popbridge/popbridge/store"

	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

// insecureUpstream reports whether u is plaintext to a host that is not
// a loopback address.
func insecureUpstream(u *upstream.URL) bool {
	return u != nil && u.Scheme == upstream.SchemeInsecure && !u.Loopback()
}

// checkAddr accepts "" (disabled) or host:port; port 0 picks a free port.
func checkAddr(v string) error {
	if v == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("invalid address %q (want host:port)", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid address %q: bad port %q", v, port)
	}
	return nil
}

// checkMailbox rejects names no IMAP command could carry safely.
func checkMailbox(v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("mailbox name is empty")
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("mailbox name %q contains a control character", v)
	}
	return nil
}

// checkStoreURL accepts the store URLs of store.Open (without showing a
// password in its error); the rest (a file that cannot be opened, a
// database that is down) shows when the store is opened.
func checkStoreURL(v string) error { return store.CheckURL(v, "") }

// checkDeviceSeparator: a separator must not be something a login name
// needs ('@', '.') nor whitespace or a control character.
func checkDeviceSeparator(v string) error {
	if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '@' || r == '.' }) {
		return fmt.Errorf("device separator %q: no '@', '.', spaces or control characters", v)
	}
	return nil
}

// splitList splits a comma-separated value, dropping empty items so that
// a trailing comma in a variable is harmless.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func setWorkarounds(c *Config, v string) (err error) {
	c.ClientWorkarounds, err = pop3server.ParseWorkarounds(splitList(v))
	return err
}

func setProxyProtocol(c *Config, v string) error {
	var out []netip.Prefix
	for _, item := range splitList(v) {
		p, err := parsePrefix(item)
		if err != nil {
			return err
		}
		out = append(out, p)
	}
	c.ProxyProtocol = out
	return nil
}

// parsePrefix accepts a CIDR or a single address (as a host prefix).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid network %q (want a CIDR like 10.0.0.0/8 or an address)", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("invalid network %q: zones are not allowed", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid network %q (want a CIDR like 10.0.0.0/8 or an address)", s)
	}
	return p.Masked(), nil
}
