package oauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/crypto/argon2"
)

// HashParams are Argon2id's cost parameters. Verification reads them from
// the stored hash, so raising them affects new passwords only.
type HashParams struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultHashParams is OWASP's Argon2id floor: 19 MiB, two passes, one lane.
var DefaultHashParams = HashParams{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

const (
	saltLen = 16
	hashLen = 32
)

var errBadHash = errors.New("not an argon2id PHC hash")

// HashPassword returns password as a PHC string:
// $argon2id$v=19$m=19456,t=2,p=1$SALT$HASH (unpadded base64).
func HashPassword(password string, p HashParams) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	sum := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, hashLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, enc.EncodeToString(salt), enc.EncodeToString(sum)), nil
}

// checkHash reports whether password matches the PHC string phc.
func checkHash(phc, password string) (bool, error) {
	f := strings.Split(phc, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return false, errBadHash
	}
	var v int
	if _, err := fmt.Sscanf(f[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, errBadHash
	}
	var p HashParams
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil ||
		p.Time == 0 || p.Threads == 0 || p.MemoryKiB > 4<<20 {
		return false, errBadHash
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(f[4])
	want, err2 := enc.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// GeneratePassword returns a random device password: 20 base32 letters
// and digits (100 bits) in groups of four, easy to type on a device's
// keypad or web form.
func GeneratePassword() (string, error) {
	b := make([]byte, 13)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	s := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))[:20]
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20], nil
}

// Verifier checks device passwords against their stored hashes.
//
// Argon2id is deliberately expensive (19 MiB and tens of milliseconds per
// check), so two things keep it affordable:
//   - at most MaxConcurrent checks run at once; a login waits for a slot
//     (bounded by its context), which caps the memory a flood of logins
//     can take;
//   - a password that was verified recently is recognised from an
//     in-memory cache, for devices that poll every minute. The cache key
//     is HMAC-SHA256 under a random key that lives only in this process,
//     of (mailbox, password); the value is the device name and the hash it
//     matched. A hit still needs the right password (a different password
//     is a different key), and counts only while that device still has
//     that very hash in the store, so revoking or changing a device takes
//     effect at once. Entries live for CacheTTL at most.
type Verifier struct {
	sem    chan struct{}
	pepper [32]byte
	cache  *expirable.LRU[[32]byte, cacheEntry]
}

type cacheEntry struct {
	device, phc string
}

// VerifierOptions configures NewVerifier; zero values mean the defaults.
type VerifierOptions struct {
	// MaxConcurrent bounds concurrent Argon2id checks (default 4: under
	// 80 MiB at the default parameters).
	MaxConcurrent int
	// CacheTTL bounds how long a verified password is remembered (default
	// 15 minutes); negative disables the cache.
	CacheTTL time.Duration
	// CacheSize bounds the remembered passwords (default 10000).
	CacheSize int
}

// NewVerifier returns a Verifier.
func NewVerifier(o VerifierOptions) *Verifier {
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 4
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = 15 * time.Minute
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 10000
	}
	v := &Verifier{sem: make(chan struct{}, o.MaxConcurrent)}
	rand.Read(v.pepper[:]) // never returns an error since Go 1.24
	if o.CacheTTL > 0 {
		v.cache = expirable.NewLRU[[32]byte, cacheEntry](o.CacheSize, nil, o.CacheTTL)
	}
	return v
}

// errNoDevice is a login whose password matches none of the mailbox's
// devices (or a mailbox without devices).
var errNoDevice = errors.New("no device of this mailbox has this password")

// Check returns the device of creds whose password is password, or
// errNoDevice. Other errors are temporary (ctx ended while waiting for a
// slot). Hashes that do not parse are skipped.
func (v *Verifier) Check(ctx context.Context, mailbox, password string, creds []DeviceCredential) (string, error) {
	key := v.key(mailbox, password)
	if v.cache != nil {
		if e, ok := v.cache.Get(key); ok {
			for _, c := range creds {
				if c.Device == e.device && c.Hash == e.phc {
					return c.Device, nil
				}
			}
			v.cache.Remove(key)
		}
	}
	for _, c := range creds {
		ok, err := v.checkOne(ctx, c.Hash, password)
		if err != nil {
			if errors.Is(err, errBadHash) {
				continue
			}
			return "", err
		}
		if ok {
			if v.cache != nil {
				v.cache.Add(key, cacheEntry{device: c.Device, phc: c.Hash})
			}
			return c.Device, nil
		}
	}
	return "", errNoDevice
}

func (v *Verifier) checkOne(ctx context.Context, phc, password string) (bool, error) {
	select {
	case v.sem <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("waiting to check a device password: %w", context.Cause(ctx))
	}
	defer func() { <-v.sem }()
	return checkHash(phc, password)
}

func (v *Verifier) key(mailbox, password string) [32]byte {
	m := hmac.New(sha256.New, v.pepper[:])
	m.Write([]byte(mailbox))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var k [32]byte
	m.Sum(k[:0])
	return k
}
