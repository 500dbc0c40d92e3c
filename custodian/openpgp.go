package custodian

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// OpenPGP recipients are for custodians who already keep an OpenPGP key
// (as Vault's PGP-encrypted unseal keys expect). Their share is an
// ASCII-armored OpenPGP message, which they decrypt with their own tool
// (`gpg -d share-3.asc`) and pipe into `keyd operator unseal`. keyd never
// handles an OpenPGP private key.

const (
	pgpPublicHeader  = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
	pgpPrivateHeader = "-----BEGIN PGP PRIVATE KEY BLOCK-----"
	pgpPublicFooter  = "-----END PGP PUBLIC KEY BLOCK-----"
	// PGPMessageHeader starts an armored OpenPGP message.
	PGPMessageHeader = "-----BEGIN PGP MESSAGE-----"
	// PGPMessageFooter ends an armored OpenPGP message.
	PGPMessageFooter = "-----END PGP MESSAGE-----"
	// maxPGPKeySize bounds an armored OpenPGP public key (an RSA-4096 key
	// with a few user ids and subkeys is well under it).
	maxPGPKeySize = 16 << 10
)

// ErrPrivateKey is a private key given where a public key belongs. The
// key is never echoed.
var ErrPrivateKey = errors.New("custodian: that is a private key; pass the public key (age-keygen -y, gpg --export --armor)")

// pgpRecipient is one OpenPGP public key (one entity).
type pgpRecipient struct {
	entity *openpgp.Entity
	armor  string // the armored public key as given, trimmed
	fpr    string // primary key fingerprint, hex
}

// isPGPKey reports whether s starts like an armored OpenPGP key.
func isPGPKey(s string) bool {
	return strings.HasPrefix(s, pgpPublicHeader) || strings.HasPrefix(s, pgpPrivateHeader)
}

// parsePGPRecipient parses an armored OpenPGP public key holding exactly
// one entity that can encrypt now.
func parsePGPRecipient(s string) (*pgpRecipient, error) {
	if strings.HasPrefix(s, pgpPrivateHeader) {
		return nil, ErrPrivateKey
	}
	if len(s) > maxPGPKeySize {
		return nil, fmt.Errorf("%w: OpenPGP key larger than %d bytes", ErrBadRecipient, maxPGPKeySize)
	}
	// One armored block and nothing after it: the parser would read the
	// first block only and silently drop a second key.
	end := strings.Index(s, pgpPublicFooter)
	if end < 0 || strings.TrimSpace(s[end+len(pgpPublicFooter):]) != "" {
		return nil, fmt.Errorf("%w: give exactly one armored OpenPGP public key block per custodian", ErrBadRecipient)
	}
	el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(s))
	if err != nil {
		return nil, fmt.Errorf("%w: OpenPGP key: %v", ErrBadRecipient, err)
	}
	if len(el) != 1 {
		return nil, fmt.Errorf("%w: an OpenPGP key block must hold exactly one key, not %d", ErrBadRecipient, len(el))
	}
	e := el[0]
	if e.PrivateKey != nil {
		return nil, ErrPrivateKey
	}
	if _, ok := e.EncryptionKey(time.Now()); !ok {
		return nil, fmt.Errorf("%w: OpenPGP key %s has no usable encryption subkey (expired or revoked?)", ErrBadRecipient, strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint)))
	}
	return &pgpRecipient{entity: e, armor: s, fpr: hex.EncodeToString(e.PrimaryKey.Fingerprint)}, nil
}

// encryptPGP encrypts secret to p as an armored OpenPGP message.
func encryptPGP(p *pgpRecipient, secret []byte) (string, error) {
	var buf bytes.Buffer
	aw, err := armor.Encode(&buf, "PGP MESSAGE", nil)
	if err != nil {
		return "", fmt.Errorf("custodian: encrypt: %w", err)
	}
	// Rand nil: crypto/rand.
	cfg := &packet.Config{DefaultCipher: packet.CipherAES256}
	w, err := openpgp.Encrypt(aw, []*openpgp.Entity{p.entity}, nil, &openpgp.FileHints{IsBinary: true}, cfg)
	if err != nil {
		return "", fmt.Errorf("custodian: encrypt to OpenPGP key: %w", err)
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
	return buf.String() + "\n", nil
}
