// Package custodian encrypts secrets handed out in custodian ceremonies
// (root shares at init and root rotation, the initial admin token) to each
// custodian's own age X25519 public key, and decrypts them on the
// custodian's machine. The operator who runs a ceremony relays only
// ciphertexts: the leader encrypts each secret before it leaves the node,
// so no single person ever sees more than their own share.
//
// Messages are standard ASCII-armored age files, so a custodian can also
// read theirs with the age tool: `age -d -i key.txt share-3.age`.
package custodian

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// Limits on what this package parses, so a hostile or mistaken input
// cannot make it allocate without bound.
const (
	// MaxMessageSize bounds an armored message (a share is ~100 bytes; age
	// and armor overhead is a few hundred).
	MaxMessageSize = 16 << 10
	// MaxPlaintextSize bounds a decrypted secret.
	MaxPlaintextSize = 4 << 10
	// maxKeyFileSize bounds a recipient or identity file.
	maxKeyFileSize = 64 << 10
)

// Sentinel errors callers branch on. Messages never contain key or share
// material.
var (
	ErrBadRecipient = errors.New("custodian: not an age X25519 recipient (age1...)")
	ErrBadIdentity  = errors.New("custodian: no age X25519 identity (AGE-SECRET-KEY-1...) found")
	ErrNotForYou    = errors.New("custodian: message is not encrypted to this identity")
	ErrMalformed    = errors.New("custodian: message is not an armored age file")
	ErrTooLarge     = errors.New("custodian: message too large")
)

// Recipient is one custodian's public key: an age X25519 recipient or an
// OpenPGP public key. The zero value is invalid.
type Recipient struct {
	r   *age.X25519Recipient
	pgp *pgpRecipient
}

// ParseRecipient parses an age X25519 recipient string ("age1...") or an
// ASCII-armored OpenPGP public key holding one key. Surrounding white
// space is ignored.
func ParseRecipient(s string) (Recipient, error) {
	s = strings.TrimSpace(s)
	if isPGPKey(s) {
		p, err := parsePGPRecipient(s)
		if err != nil {
			return Recipient{}, err
		}
		return Recipient{pgp: p}, nil
	}
	if strings.HasPrefix(strings.ToUpper(s), "AGE-SECRET-KEY-") {
		// Never echo a private key back.
		return Recipient{}, fmt.Errorf("%w: that is a private key; pass the public key (age-keygen -y)", ErrBadRecipient)
	}
	r, err := age.ParseX25519Recipient(s)
	if err != nil {
		return Recipient{}, fmt.Errorf("%w: %q", ErrBadRecipient, abbreviate(s))
	}
	return Recipient{r: r}, nil
}

// ParseRecipients parses one recipient per custodian, in share order, and
// refuses a list that names the same key twice (one custodian would then
// hold two shares).
func ParseRecipients(specs []string) ([]Recipient, error) {
	out := make([]Recipient, 0, len(specs))
	seen := map[string]int{}
	for i, s := range specs {
		r, err := ParseRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("custodian key %d: %w", i+1, err)
		}
		if j, dup := seen[r.id()]; dup {
			return nil, fmt.Errorf("custodian keys %d and %d are the same key: each custodian needs their own", j+1, i+1)
		}
		seen[r.id()] = i
		out = append(out, r)
	}
	return out, nil
}

// LoadRecipient accepts either a recipient string ("age1...") or the path
// of a file holding one (the first non-comment line, as age-keygen -y
// writes it or as a recipients file lists it), or a file holding an
// ASCII-armored OpenPGP public key (gpg --export --armor). It returns the
// recipient as a string. It is meant for the CLI: servers accept only
// strings.
func LoadRecipient(spec string) (string, error) {
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(strings.ToUpper(spec), "AGE-SECRET-KEY-") {
		// A private key pasted where a public key belongs: never echo it
		// (not even as a file name).
		return "", fmt.Errorf("%w: that is a private key; pass the public key (age-keygen -y)", ErrBadRecipient)
	}
	if strings.HasPrefix(spec, "age1") {
		r, err := ParseRecipient(spec)
		if err != nil {
			return "", err
		}
		return r.String(), nil
	}
	if isPGPKey(spec) {
		r, err := ParseRecipient(spec)
		if err != nil {
			return "", err
		}
		return r.String(), nil
	}
	b, err := readLimited(spec, maxKeyFileSize)
	if err != nil {
		return "", fmt.Errorf("custodian key %s: %w", spec, err)
	}
	if t := strings.TrimSpace(string(b)); isPGPKey(t) {
		r, err := ParseRecipient(t)
		if err != nil {
			return "", fmt.Errorf("custodian key %s: %w", spec, err)
		}
		return r.String(), nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "AGE-SECRET-KEY-") {
			return "", fmt.Errorf("custodian key %s holds a private key: pass the public key (age-keygen -y)", spec)
		}
		r, err := ParseRecipient(line)
		if err != nil {
			return "", fmt.Errorf("custodian key %s: %w", spec, err)
		}
		return r.String(), nil
	}
	return "", fmt.Errorf("custodian key %s: %w", spec, ErrBadRecipient)
}

// String returns the recipient in its "age1..." form, or the armored
// OpenPGP public key.
func (r Recipient) String() string {
	switch {
	case r.pgp != nil:
		return r.pgp.armor
	case r.r != nil:
		return r.r.String()
	}
	return ""
}

// Kind is "age" or "openpgp" ("" for the zero value).
func (r Recipient) Kind() string {
	switch {
	case r.pgp != nil:
		return "openpgp"
	case r.r != nil:
		return "age"
	}
	return ""
}

// Label is a short, one-line name of the recipient for output: the age
// recipient, or "openpgp:" and the primary key fingerprint.
func (r Recipient) Label() string {
	if r.pgp != nil {
		return "openpgp:" + strings.ToUpper(r.pgp.fpr)
	}
	return r.String()
}

// id identifies the key for duplicate detection.
func (r Recipient) id() string {
	if r.pgp != nil {
		return "openpgp:" + r.pgp.fpr
	}
	return r.String()
}

// Encrypt encrypts secret to r and returns an ASCII-armored age message
// (an armored OpenPGP message for an OpenPGP recipient). secret is not
// retained.
func Encrypt(r Recipient, secret []byte) (string, error) {
	if r.r == nil && r.pgp == nil {
		return "", ErrBadRecipient
	}
	if len(secret) > MaxPlaintextSize {
		return "", ErrTooLarge
	}
	if r.pgp != nil {
		return encryptPGP(r.pgp, secret)
	}
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, r.r)
	if err != nil {
		return "", fmt.Errorf("custodian: encrypt: %w", err)
	}
	if _, err := w.Write(secret); err != nil {
		return "", fmt.Errorf("custodian: encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("custodian: encrypt: %w", err)
	}
	if err := aw.Close(); err != nil {
		return "", fmt.Errorf("custodian: encrypt: %w", err)
	}
	return buf.String(), nil
}

// Identity is a custodian's private key. It never leaves the custodian's
// machine: only the CLI's `operator unseal -identity` uses it.
type Identity struct {
	ids []age.Identity
}

// LoadIdentity reads an age identity file (as age-keygen writes it).
func LoadIdentity(path string) (*Identity, error) {
	b, err := readLimited(path, maxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("custodian identity %s: %w", path, err)
	}
	return ParseIdentity(b)
}

// ParseIdentity parses the contents of an age identity file. Only X25519
// identities are used.
func ParseIdentity(b []byte) (*Identity, error) {
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		return nil, ErrBadIdentity
	}
	var x []age.Identity
	for _, id := range ids {
		if _, ok := id.(*age.X25519Identity); ok {
			x = append(x, id)
		}
	}
	if len(x) == 0 {
		return nil, ErrBadIdentity
	}
	return &Identity{ids: x}, nil
}

// Decrypt opens an armored age message with id. The plaintext belongs to
// the caller, who should clear it after use.
func (id *Identity) Decrypt(armored string) ([]byte, error) {
	if len(armored) > MaxMessageSize {
		return nil, ErrTooLarge
	}
	armored = strings.TrimSpace(armored)
	if !strings.HasPrefix(armored, armor.Header) {
		return nil, ErrMalformed
	}
	r, err := age.Decrypt(armor.NewReader(strings.NewReader(armored+"\n")), id.ids...)
	if err != nil {
		var none *age.NoIdentityMatchError
		if errors.As(err, &none) {
			return nil, ErrNotForYou
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	out, err := io.ReadAll(io.LimitReader(r, MaxPlaintextSize+1))
	if err != nil {
		clear(out)
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(out) > MaxPlaintextSize {
		clear(out)
		return nil, ErrTooLarge
	}
	return out, nil
}

// Extract returns every armored age message found in text, in order, so a
// custodian can paste the whole block an operator forwarded, surrounding
// lines included.
func Extract(text string) []string {
	var out []string
	for {
		i := strings.Index(text, armor.Header)
		if i < 0 {
			return out
		}
		text = text[i:]
		j := strings.Index(text, armor.Footer)
		if j < 0 {
			return out
		}
		out = append(out, text[:j+len(armor.Footer)]+"\n")
		text = text[j+len(armor.Footer):]
	}
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, ErrTooLarge
	}
	return b, nil
}

// abbreviate shortens a public value for an error message.
func abbreviate(s string) string {
	if len(s) > 16 {
		return s[:12] + "..."
	}
	return s
}
