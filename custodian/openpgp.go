package custodian

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
	if err := checkPGPAlgorithms(s); err != nil {
		return nil, err
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

// maxRSABits bounds an RSA key's modulus.
const maxRSABits = 8192

// checkPGPAlgorithms reads the key block's packets without verifying
// anything and refuses keys whose use would cost the leader unbounded
// work: DSA and ElGamal (legacy; their operations exponentiate with
// attacker-sized exponents) and RSA moduli over maxRSABits. Signatures are
// verified only afterwards, by openpgp.ReadArmoredKeyRing.
func checkPGPAlgorithms(s string) error {
	blk, err := armor.Decode(strings.NewReader(s))
	if err != nil {
		return fmt.Errorf("%w: OpenPGP key: %v", ErrBadRecipient, err)
	}
	if blk.Type != "PGP PUBLIC KEY BLOCK" {
		return fmt.Errorf("%w: not an OpenPGP public key block", ErrBadRecipient)
	}
	pr := packet.NewReader(blk.Body)
	keys := 0
	for {
		p, err := pr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: OpenPGP key: %v", ErrBadRecipient, err)
		}
		pk, ok := p.(*packet.PublicKey)
		if !ok {
			continue
		}
		keys++
		switch pk.PubKeyAlgo {
		case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly:
			if bits, err := pk.BitLength(); err != nil || bits > maxRSABits {
				return fmt.Errorf("%w: OpenPGP RSA keys over %d bits are not accepted", ErrBadRecipient, maxRSABits)
			}
		case packet.PubKeyAlgoECDH, packet.PubKeyAlgoECDSA, packet.PubKeyAlgoEdDSA,
			packet.PubKeyAlgoX25519, packet.PubKeyAlgoX448, packet.PubKeyAlgoEd25519, packet.PubKeyAlgoEd448:
		default:
			return fmt.Errorf("%w: OpenPGP key algorithm %d is not accepted (use RSA or a Curve25519/448 key)", ErrBadRecipient, pk.PubKeyAlgo)
		}
		if keys > 16 {
			return fmt.Errorf("%w: OpenPGP key block with more than 16 keys", ErrBadRecipient)
		}
	}
	if keys == 0 {
		return fmt.Errorf("%w: no public key in the OpenPGP key block", ErrBadRecipient)
	}
	return nil
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
