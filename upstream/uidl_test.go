package upstream

import (
	"strconv"
	"strings"
	"testing"
)

func TestFormatUIDL(t *testing.T) {
	tests := []struct {
		format      string
		uid, uidVal uint32
		want        string
	}{
		// Dovecot's default; m_str_hex prints lower-case.
		{DefaultUIDLFormat, 1, 0x5f3e1a2b, "000000015f3e1a2b"},
		{DefaultUIDLFormat, 0xffffffff, 0xffffffff, "ffffffffffffffff"},
		{DefaultUIDLFormat, 0x123456789 & 0xffffffff, 1, "2345678900000001"},
		{"%u", 42, 7, "42"},
		{"%v.%u", 42, 7, "7.42"},
		{"%Xu", 255, 7, "ff"},
		{"%XUu", 255, 7, "FF"},
		{"%08XUu%08XUv", 1, 0x5f3e1a2b, "000000015F3E1A2B"},
		{"%UXu", 255, 7, "ff"}, // modifiers apply in order, as in Dovecot
		{"%05u", 42, 7, "00042"},
		{"%02u", 12345, 7, "12345"}, // zero padding never truncates
		{"%{uid}-%{uidvalidity}", 3, 9, "3-9"},
		{"%08X{uid}%08X{uidvalidity}", 1, 0x5f3e1a2b, "000000015f3e1a2b"},
		{"a%%b%u", 1, 1, "a%b1"},
	}
	for _, tt := range tests {
		got, err := FormatUIDL(tt.format, tt.uid, tt.uidVal)
		if err != nil {
			t.Errorf("FormatUIDL(%q, %d, %d): %v", tt.format, tt.uid, tt.uidVal, err)
			continue
		}
		if got != tt.want {
			t.Errorf("FormatUIDL(%q, %d, %d) = %q, want %q", tt.format, tt.uid, tt.uidVal, got, tt.want)
		}
	}
}

func TestParseUIDLFormat(t *testing.T) {
	bad := []string{
		"",
		"%v",                    // not unique
		"%m",                    // header MD5: not unique (docs/design.md)
		"%f",                    // file name
		"%g",                    // GUID
		"%{md5}",                // long form of %m
		"%3u",                   // Dovecot truncates
		"%-3u",                  // offset from the end
		"%1.2u",                 // offset
		"%u %v",                 // space is not allowed in a UIDL
		"%u\x7f",                // DEL
		"%u%",                   // dangling %
		"%08X",                  // dangling modifier
		"%{uid",                 // unterminated
		"%071u",                 // too long
		strings.Repeat("%u", 8), // 8*10 > 70
		"%XXXXXXXXXXXu",         // more modifiers than Dovecot parses
	}
	for _, f := range bad {
		if _, err := ParseUIDLFormat(f); err == nil {
			t.Errorf("ParseUIDLFormat(%q) = nil, want error", f)
		}
	}
	good := []string{DefaultUIDLFormat, "%u", "%u.%v", "%070u", "%Lu", "%{uid}"}
	for _, f := range good {
		p, err := ParseUIDLFormat(f)
		if err != nil || p.String() != f {
			t.Errorf("ParseUIDLFormat(%q) = %v, %v", f, p, err)
		}
	}
}

// TestUIDLFastPath: the allocation-free formatting gives what applying
// Dovecot's modifiers to the decimal text gives, for every width and
// modifier combination the parser accepts.
func TestUIDLFastPath(t *testing.T) {
	values := []uint32{0, 1, 9, 10, 15, 16, 255, 256, 0xabcdef, 0x5f3e1a2b, 99999999, 1<<31 - 1, 0xffffffff}
	for _, mods := range []string{"", "X", "XL", "XU", "U", "L", "UX", "LX", "XX"} {
		for _, width := range []string{"", "01", "02", "03", "07", "08", "09", "012", "020"} {
			format := "%" + width + mods + "u-%" + width + mods + "v"
			f, err := parseUIDLFormat(format)
			if err != nil {
				t.Fatalf("%q: %v", format, err)
			}
			for _, u := range values {
				for _, v := range []uint32{1, 0x5f3e1a2b} {
					var want strings.Builder
					for _, p := range f {
						if p.variable == 0 {
							want.WriteString(p.text)
							continue
						}
						n := u
						if p.variable == 'v' {
							n = v
						}
						s := applyModifiers(strconv.FormatUint(uint64(n), 10), p.modifiers)
						want.WriteString(strings.Repeat("0", max(p.width-len(s), 0)) + s)
					}
					if got := string(f.append(nil, u, v)); got != want.String() {
						t.Errorf("%q with %d, %d: %q, want %q", format, u, v, got, want.String())
					}
				}
			}
		}
	}
}
