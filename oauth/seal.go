package oauth

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// Sealing (docs/oauth2.md, "What is stored"): a grant is sealed with a
// random per-mailbox data key (XChaCha20-Poly1305, the mailbox name as
// associated data, so a sealed grant copied onto another mailbox's row
// does not open), and that data key is itself sealed with the server key
// from --secret-key-file. A copy of the store alone therefore opens
// nothing, while the bridge can still refresh tokens with no user present.
// A fresh data key is drawn at every seal: there is nothing to rotate.

const (
	// KeySize is the size of the server key and of each data key.
	KeySize = chacha20poly1305.KeySize
	// sealMagic versions the sealed format: magic, wrapped data key
	// (nonce + ciphertext of the key), nonce, ciphertext of the grant.
	sealMagic = "pbs1"
	// keyFileHeader starts a key file so that a wrong file (a PEM key, a
	// client secret) is recognised rather than used.
	keyFileHeader = "popbridge-secret-key-v1:"
)

var (
	// ErrBadKeyFile is a key file that is missing, malformed or readable
	// by others.
	ErrBadKeyFile = errors.New("bad secret key file")
	// ErrUnseal is a sealed grant that does not open with this server key
	// for this mailbox: another key, another mailbox, or corruption.
	ErrUnseal = errors.New("sealed grant does not open with this secret key")
)

// ServerKey wraps the per-mailbox data keys. Its zero value is unusable.
type ServerKey struct {
	key [KeySize]byte
}

// NewServerKey returns a random key (for tests and keygen).
func NewServerKey() (*ServerKey, error) {
	k := &ServerKey{}
	if _, err := rand.Read(k.key[:]); err != nil {
		return nil, err
	}
	return k, nil
}

// GenerateKeyFile writes a new random key to path with mode 0600. It never
// overwrites an existing file: losing the old key loses every grant.
func GenerateKeyFile(path string) error {
	k, err := NewServerKey()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists; refusing to overwrite a secret key (every enrolled mailbox would need enrolling again)", path)
		}
		return err
	}
	_, err = f.WriteString(keyFileHeader + base64.StdEncoding.EncodeToString(k.key[:]) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// LoadKeyFile reads a key written by GenerateKeyFile. The file must not be
// readable or writable by group or others.
func LoadKeyFile(path string) (*ServerKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKeyFile, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; it must be 0600 (chmod 600 %s)", ErrBadKeyFile, path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKeyFile, err)
	}
	s, ok := strings.CutPrefix(strings.TrimSpace(string(data)), keyFileHeader)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a popbridge secret key (create one with: popbridge oauth keygen --secret-key-file %s)", ErrBadKeyFile, path, path)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != KeySize {
		return nil, fmt.Errorf("%w: %s is damaged", ErrBadKeyFile, path)
	}
	k := &ServerKey{}
	copy(k.key[:], raw)
	return k, nil
}

// Seal encrypts plaintext for mailbox.
func (k *ServerKey) Seal(mailbox string, plaintext []byte) ([]byte, error) {
	var dek [KeySize]byte
	if _, err := rand.Read(dek[:]); err != nil {
		return nil, err
	}
	wrapped, err := seal(k.key[:], []byte("dek\x00"+mailbox), dek[:])
	if err != nil {
		return nil, err
	}
	body, err := seal(dek[:], []byte("grant\x00"+mailbox), plaintext)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(sealMagic)+len(wrapped)+len(body))
	out = append(out, sealMagic...)
	out = append(out, wrapped...)
	return append(out, body...), nil
}

// Open decrypts what Seal returned for the same mailbox.
func (k *ServerKey) Open(mailbox string, sealed []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(sealed, []byte(sealMagic))
	wrappedLen := chacha20poly1305.NonceSizeX + KeySize + chacha20poly1305.Overhead
	if !ok || len(rest) < wrappedLen {
		return nil, ErrUnseal
	}
	dek, err := open(k.key[:], []byte("dek\x00"+mailbox), rest[:wrappedLen])
	if err != nil {
		return nil, ErrUnseal
	}
	pt, err := open(dek, []byte("grant\x00"+mailbox), rest[wrappedLen:])
	if err != nil {
		return nil, ErrUnseal
	}
	return pt, nil
}

// seal returns nonce || ciphertext.
func seal(key, ad, plaintext []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, plaintext, ad), nil
}

func open(key, ad, sealed []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, ErrUnseal
	}
	return aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], ad)
}
