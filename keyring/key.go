package keyring

import (
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/keyd/keyd/fpe"
	"github.com/tink-crypto/tink-go/v2/daead/subtle"
	"golang.org/x/crypto/chacha20poly1305"
)

// encryptAADPrefix starts the AAD of every customer-key encryption:
// "keyd:" + name + "\x00" + version (uint32 BE) + context. The name has no
// NUL (NewKey enforces it) and the version is fixed-width, so for one key the
// context is exactly the remainder and a ciphertext cannot be moved between
// keys or versions.
const encryptAADPrefix = "keyd:"

// Version is one usable version of a customer key, as input to NewKey.
type Version struct {
	// Number is the version, 1 or more.
	Number uint32
	// Material is the version's secret material. NewKey copies it; the
	// caller keeps ownership.
	Material *KeyMaterial
}

// keyVersion holds the objects precomputed for one version, so the hot path
// only looks them up.
type keyVersion struct {
	num      uint32
	material *KeyMaterial // NewKey's private copy
	aad      []byte       // "keyd:" + name + "\x00" + num (BE); read-only
	aead     cipher.AEAD  // encryption types
	edPriv   ed25519.PrivateKey
	edPub    ed25519.PublicKey
	ec       *ecdsa.PrivateKey
	// macs pools keyed HMAC-SHA256 states (HMACSHA256 only): Reset returns
	// an HMAC to its keyed initial state, so reuse skips re-deriving the
	// pads and about eight allocations per call.
	macs *sync.Pool
	// siv (AES256SIV), ff1 (FF1AES256) and pseudo (HMACSHA256: the
	// pseudonym subkey) are set up by initPII, see pii.go.
	siv       *subtle.AESSIV
	ff1       *fpe.FF1
	pseudo    *sync.Pool
	pseudoKey []byte // the pseudonym subkey, zeroed by Destroy
}

// Key is an immutable, unwrapped, in-memory customer key with all its usable
// versions. It is safe for concurrent use, except Destroy, which must run
// only after no other goroutine uses the key. The zero value is unusable:
// its operations return [ErrUnsupported] (it has no type); a destroyed key's
// return [ErrDestroyed].
//
// Rotation builds a new Key with NewKey; a Key never changes after
// construction, so it can be published through an atomic.Pointer.
type Key struct {
	_        [0]func()
	name     string
	typ      KeyType
	min      uint32
	versions []keyVersion // ascending by num; the last is the latest
}

// NewKey builds a key named name of type t from versions (in any order). The
// latest version is the highest Number. Versions below minDecryptionVersion
// are held but refuse Decrypt and Verify; 0 means no minimum.
//
// NewKey copies every Material, so the caller keeps ownership of versions
// and may destroy them afterwards. It returns an error wrapping
// [ErrUnknownKeyType] for an unknown t and [ErrInvalidKey] for an empty name
// or one containing NUL, no versions, a zero or duplicate Number, material of
// the wrong length or an invalid P-256 scalar, or minDecryptionVersion above
// the latest version.
func NewKey(name string, t KeyType, versions []Version, minDecryptionVersion uint32) (*Key, error) {
	if !t.valid() {
		return nil, fmt.Errorf("keyring: new key: type %q: %w", string(t), ErrUnknownKeyType)
	}
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("keyring: new key: empty name or name containing NUL: %w", ErrInvalidKey)
	}
	if len(versions) == 0 {
		return nil, fmt.Errorf("keyring: new key %q: no versions: %w", name, ErrInvalidKey)
	}
	sorted := slices.Clone(versions)
	slices.SortFunc(sorted, func(a, b Version) int {
		switch {
		case a.Number < b.Number:
			return -1
		case a.Number > b.Number:
			return 1
		}
		return 0
	})
	if latest := sorted[len(sorted)-1].Number; minDecryptionVersion > latest {
		return nil, fmt.Errorf("keyring: new key %q: min decryption version %d above latest %d: %w",
			name, minDecryptionVersion, latest, ErrInvalidKey)
	}
	k := &Key{name: name, typ: t, min: minDecryptionVersion, versions: make([]keyVersion, 0, len(sorted))}
	for i, v := range sorted {
		if v.Number == 0 || (i > 0 && v.Number == sorted[i-1].Number) {
			k.Destroy()
			return nil, fmt.Errorf("keyring: new key %q: zero or duplicate version %d: %w", name, v.Number, ErrInvalidKey)
		}
		kv, err := newKeyVersion(name, t, v)
		if err != nil {
			k.Destroy()
			return nil, fmt.Errorf("keyring: new key %q: version %d: %w", name, v.Number, err)
		}
		k.versions = append(k.versions, kv)
	}
	return k, nil
}

func newKeyVersion(name string, t KeyType, v Version) (keyVersion, error) {
	if err := checkMaterial(t, v.Material); err != nil {
		return keyVersion{}, err
	}
	kv := keyVersion{num: v.Number, material: v.Material.Clone()}
	aad := make([]byte, 0, len(encryptAADPrefix)+len(name)+1+4)
	aad = append(aad, encryptAADPrefix...)
	aad = append(aad, name...)
	aad = append(aad, 0)
	kv.aad = binary.BigEndian.AppendUint32(aad, v.Number)
	m := kv.material.bytes()
	switch t {
	case AES256GCM:
		kv.aead = mustAESGCM(m)
	case XChaCha20Poly1305:
		aead, err := chacha20poly1305.NewX(m)
		if err != nil { // unreachable: length already checked
			return keyVersion{}, fmt.Errorf("xchacha20-poly1305: %w", ErrInvalidKey)
		}
		kv.aead = aead
	case Ed25519:
		kv.edPriv = ed25519.NewKeyFromSeed(m)
		kv.edPub = kv.edPriv.Public().(ed25519.PublicKey)
	case ECDSAP256:
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), m)
		if err != nil { // unreachable: checkMaterial parsed it
			return keyVersion{}, fmt.Errorf("p-256 scalar: %w", ErrInvalidKey)
		}
		kv.ec = priv
	case HMACSHA256:
		kv.macs = &sync.Pool{New: func() any { return hmac.New(sha256.New, m) }}
	}
	if err := kv.initPII(t, m); err != nil {
		return keyVersion{}, err
	}
	return kv, nil
}

// Name returns the key's name.
func (k *Key) Name() string { return k.name }

// Type returns the key's type.
func (k *Key) Type() KeyType { return k.typ }

// Latest returns the highest version, used by Encrypt, Sign and HMAC; 0 after
// Destroy.
func (k *Key) Latest() uint32 {
	if len(k.versions) == 0 {
		return 0
	}
	return k.versions[len(k.versions)-1].num
}

// MinDecryptionVersion returns the lowest version Decrypt, Verify and
// VerifyHMAC accept (0: no minimum).
func (k *Key) MinDecryptionVersion() uint32 { return k.min }

// Versions returns the held version numbers in ascending order, in a new
// slice.
func (k *Key) Versions() []uint32 {
	vs := make([]uint32, len(k.versions))
	for i := range k.versions {
		vs[i] = k.versions[i].num
	}
	return vs
}

// latest returns the latest version or ErrDestroyed.
func (k *Key) latest(op string) (*keyVersion, error) {
	if len(k.versions) == 0 {
		return nil, fmt.Errorf("keyring: %s: %w", op, ErrDestroyed)
	}
	return &k.versions[len(k.versions)-1], nil
}

// version returns version v for a decrypt-side operation. The minimum is
// checked first so that a retired version reports ErrVersionTooOld whether or
// not it is still held.
func (k *Key) version(op string, v uint32) (*keyVersion, error) {
	if v < k.min {
		return nil, fmt.Errorf("keyring: %s: key %q version %d below minimum %d: %w", op, k.name, v, k.min, ErrVersionTooOld)
	}
	i, ok := slices.BinarySearchFunc(k.versions, v, func(kv keyVersion, v uint32) int {
		switch {
		case kv.num < v:
			return -1
		case kv.num > v:
			return 1
		}
		return 0
	})
	if !ok {
		return nil, fmt.Errorf("keyring: %s: key %q version %d: %w", op, k.name, v, ErrUnknownVersion)
	}
	return &k.versions[i], nil
}

func (k *Key) unsupported(op string) error {
	return fmt.Errorf("keyring: %s: key type %s: %w", op, k.typ, ErrUnsupported)
}

// Encrypt encrypts plaintext under the latest version, binding context (which
// Decrypt must repeat; nil and empty are the same), and returns the text
// "keyd:v<N>:<base64(nonce||sealed)>". Nonces come from rand
// (crypto/rand.Reader if nil). It returns [ErrUnsupported] for types that
// cannot encrypt and a wrapped read error if rand fails.
func (k *Key) Encrypt(rand io.Reader, plaintext, context []byte) (string, error) {
	b, err := k.EncryptTo(nil, rand, plaintext, context)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// EncryptTo is Encrypt that appends the text to dst and returns the extended
// slice; for the AEAD types it allocates nothing when cap(dst)-len(dst) is
// at least EncryptedLen(len(plaintext), len(context)) (AES256SIV, whose
// library returns a new slice, always allocates). The spare capacity past the
// returned length is used as scratch (it ends up holding the raw nonce,
// ciphertext and AAD, none of them secret). plaintext and context must not
// overlap dst's capacity. On error dst is returned unchanged.
func (k *Key) EncryptTo(dst []byte, rand io.Reader, plaintext, context []byte) ([]byte, error) {
	if !k.typ.CanEncrypt() {
		return dst, k.unsupported("encrypt")
	}
	kv, err := k.latest("encrypt")
	if err != nil {
		return dst, err
	}
	if kv.siv != nil {
		return kv.sivEncryptTo(dst, plaintext, context)
	}
	ns, ov := kv.aead.NonceSize(), kv.aead.Overhead()
	r := ns + len(plaintext) + ov
	e := b64.EncodedLen(r)
	a := 0
	if len(context) > 0 {
		a = len(kv.aad) + len(context)
	}
	out := slices.Grow(dst, textHeaderLen(kv.num)+e+r+a)
	out = appendTextHeader(out, kv.num)
	encStart := len(out)
	// Layout of the spare capacity: [encoded text e][raw r][aad a]. The raw
	// payload is built after the text's final position and encoded forwards
	// into it, so no second buffer is needed.
	buf := out[:encStart+e+r+a]
	rawStart := encStart + e
	raw := buf[rawStart : rawStart+r : rawStart+r]
	aad := kv.aad
	if a > 0 {
		aad = buf[rawStart+r:]
		copy(aad, kv.aad)
		copy(aad[len(kv.aad):], context)
	}
	if err := readRandom(rand, raw[:ns]); err != nil {
		return dst, fmt.Errorf("keyring: encrypt: read nonce: %w", err)
	}
	kv.aead.Seal(raw[ns:ns], raw[:ns], plaintext, aad)
	b64.Encode(buf[encStart:rawStart], raw)
	return out[:rawStart], nil
}

// EncryptedLen returns the buffer size EncryptTo needs for a plaintext and a
// context of the given lengths under the latest version, so that it does not
// allocate; the text itself is shorter. It returns 0 for types that cannot
// encrypt.
func (k *Key) EncryptedLen(plaintextLen, contextLen int) int {
	if !k.typ.CanEncrypt() || len(k.versions) == 0 {
		return 0
	}
	kv := &k.versions[len(k.versions)-1]
	if kv.siv != nil {
		return textHeaderLen(kv.num) + b64.EncodedLen(sivTagLen+plaintextLen)
	}
	r := kv.aead.NonceSize() + plaintextLen + kv.aead.Overhead()
	n := textHeaderLen(kv.num) + b64.EncodedLen(r) + r
	if contextLen > 0 {
		n += len(kv.aad) + contextLen
	}
	return n
}

// Decrypt authenticates and decrypts a text produced by Encrypt with the same
// context, and returns the plaintext (a new slice owned by the caller) and
// the version that encrypted it. Errors wrap, in the order checked:
// [ErrUnsupported] (type cannot decrypt), [ErrMalformed] (bad text, or a
// payload shorter than nonce+tag), [ErrVersionTooOld] (below the minimum
// decryption version), [ErrUnknownVersion] (version not held), and
// [ErrDecrypt] (wrong context, another key's ciphertext, or tampering).
func (k *Key) Decrypt(ciphertext string, context []byte) (plaintext []byte, version uint32, err error) {
	if !k.typ.CanEncrypt() {
		return nil, 0, k.unsupported("decrypt")
	}
	if k.typ == AES256SIV {
		return k.sivDecrypt(ciphertext, context)
	}
	v, enc, err := parseTextHeader(ciphertext)
	if err != nil {
		return nil, 0, err
	}
	ns, ov := nonceSize(k.typ), gcmOverhead // both AEADs have a 16-byte tag
	maxN := b64.DecodedLen(len(enc))
	if maxN < ns+ov {
		return nil, 0, errTextShort
	}
	a := 0
	if len(context) > 0 {
		a = len(encryptAADPrefix) + len(k.name) + 1 + 4 + len(context)
	}
	// One buffer: [payload maxN][aad a]; the plaintext is opened in place.
	buf := make([]byte, maxN+a)
	n, err := decodePayload(buf[:maxN], enc)
	if err != nil {
		return nil, 0, err
	}
	if n < ns+ov {
		return nil, 0, errTextShort
	}
	kv, err := k.version("decrypt", v)
	if err != nil {
		return nil, 0, err
	}
	aad := kv.aad
	if a > 0 {
		aad = buf[maxN:]
		copy(aad, kv.aad)
		copy(aad[len(kv.aad):], context)
	}
	pt, err := kv.aead.Open(buf[ns:ns], buf[:ns], buf[ns:n], aad)
	if err != nil {
		return nil, 0, fmt.Errorf("keyring: decrypt: key %q version %d: %w", k.name, v, ErrDecrypt)
	}
	return pt[:len(pt):len(pt)], v, nil
}

func nonceSize(t KeyType) int {
	if t == XChaCha20Poly1305 {
		return chacha20poly1305.NonceSizeX
	}
	return gcmNonceSize
}

// Sign signs message with the latest version and returns
// "keyd:v<N>:<base64(signature)>": pure Ed25519 over message, or ECDSA P-256
// over SHA-256(message) with an ASN.1 DER signature. It returns
// [ErrUnsupported] for types that cannot sign.
func (k *Key) Sign(message []byte) (string, error) {
	if !k.typ.CanSign() {
		return "", k.unsupported("sign")
	}
	kv, err := k.latest("sign")
	if err != nil {
		return "", err
	}
	var sig []byte
	switch k.typ {
	case Ed25519:
		sig = ed25519.Sign(kv.edPriv, message)
	case ECDSAP256:
		h := sha256.Sum256(message)
		sig, err = ecdsa.SignASN1(cryptorand.Reader, kv.ec, h[:])
		if err != nil {
			return "", fmt.Errorf("keyring: sign: %w", err)
		}
	}
	return FormatText(kv.num, sig), nil
}

// Verify checks a signature produced by Sign. It returns nil if it is valid,
// and otherwise an error wrapping [ErrUnsupported], [ErrMalformed] (bad text,
// or an Ed25519 signature that is not 64 bytes), [ErrVersionTooOld],
// [ErrUnknownVersion] or [ErrBadSignature].
func (k *Key) Verify(message []byte, signature string) error {
	if !k.typ.CanSign() {
		return k.unsupported("verify")
	}
	v, sig, err := ParseText(signature)
	if err != nil {
		return err
	}
	kv, err := k.version("verify", v)
	if err != nil {
		return err
	}
	ok := false
	switch k.typ {
	case Ed25519:
		if len(sig) != ed25519.SignatureSize {
			return fmt.Errorf("keyring: verify: signature length: %w", ErrMalformed)
		}
		ok = ed25519.Verify(kv.edPub, message, sig)
	case ECDSAP256:
		h := sha256.Sum256(message)
		ok = ecdsa.VerifyASN1(&kv.ec.PublicKey, h[:], sig)
	}
	if !ok {
		return fmt.Errorf("keyring: verify: key %q version %d: %w", k.name, v, ErrBadSignature)
	}
	return nil
}

// HMAC returns "keyd:v<N>:<base64(HMAC-SHA256(message))>" with the latest
// version. It returns [ErrUnsupported] for types other than HMACSHA256.
func (k *Key) HMAC(message []byte) (string, error) {
	if !k.typ.CanHMAC() {
		return "", k.unsupported("hmac")
	}
	kv, err := k.latest("hmac")
	if err != nil {
		return "", err
	}
	var sum [sha256.Size]byte
	return FormatText(kv.num, kv.mac(sum[:0], message)), nil
}

// VerifyHMAC checks, in constant time, a MAC produced by HMAC. It returns nil
// if it is valid, and otherwise an error wrapping [ErrUnsupported],
// [ErrMalformed] (bad text or a tag that is not 32 bytes),
// [ErrVersionTooOld], [ErrUnknownVersion] or [ErrBadSignature].
func (k *Key) VerifyHMAC(message []byte, mac string) error {
	if !k.typ.CanHMAC() {
		return k.unsupported("verify hmac")
	}
	v, tag, err := ParseText(mac)
	if err != nil {
		return err
	}
	kv, err := k.version("verify hmac", v)
	if err != nil {
		return err
	}
	if len(tag) != sha256.Size {
		return fmt.Errorf("keyring: verify hmac: tag length: %w", ErrMalformed)
	}
	var sum [sha256.Size]byte
	if !hmac.Equal(kv.mac(sum[:0], message), tag) {
		return fmt.Errorf("keyring: verify hmac: key %q version %d: %w", k.name, v, ErrBadSignature)
	}
	return nil
}

func (kv *keyVersion) mac(dst, message []byte) []byte {
	h := kv.macs.Get().(hash.Hash)
	h.Write(message)
	dst = h.Sum(dst)
	h.Reset()
	kv.macs.Put(h)
	return dst
}

// PublicKey returns the PKIX DER public key of version (0: the latest) for
// signing keys. It returns [ErrUnsupported] for other types and
// [ErrUnknownVersion] for a version not held. The minimum decryption version
// does not apply: a retired version's public key is not secret.
func (k *Key) PublicKey(version uint32) ([]byte, error) {
	if !k.typ.CanSign() {
		return nil, k.unsupported("public key")
	}
	if version == 0 {
		version = k.Latest()
	}
	i := slices.IndexFunc(k.versions, func(kv keyVersion) bool { return kv.num == version })
	if i < 0 {
		return nil, fmt.Errorf("keyring: public key: key %q version %d: %w", k.name, version, ErrUnknownVersion)
	}
	var pub any = k.versions[i].edPub
	if k.typ == ECDSAP256 {
		pub = &k.versions[i].ec.PublicKey
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("keyring: public key: %w", err)
	}
	return der, nil
}

// Destroy zeroes every version's material and drops the precomputed
// objects; later operations return [ErrDestroyed]. It is idempotent and must
// run only after no other goroutine uses k.
//
// Limitation: AES key schedules, XChaCha20 keys, ECDSA scalars and pooled
// HMAC pads inside the standard library and x/crypto cannot be zeroed from
// outside; they become garbage once dropped.
func (k *Key) Destroy() {
	if k == nil {
		return
	}
	for i := range k.versions {
		kv := &k.versions[i]
		kv.material.Destroy()
		clear(kv.edPriv)
		clear(kv.pseudoKey)
		*kv = keyVersion{}
	}
	k.versions = nil
}

// String describes the key without secrets, e.g.
// `Key("payments", aes256-gcm, latest v3, min v1)`.
func (k Key) String() string {
	var latest uint32
	if len(k.versions) > 0 {
		latest = k.versions[len(k.versions)-1].num
	}
	b := append([]byte("Key("), strconv.Quote(k.name)...)
	b = append(b, ", "...)
	b = append(b, k.typ...)
	b = append(b, ", latest v"...)
	b = strconv.AppendUint(b, uint64(latest), 10)
	b = append(b, ", min v"...)
	b = strconv.AppendUint(b, uint64(k.min), 10)
	return string(append(b, ')'))
}

// GoString is String, so %#v cannot reach key material.
func (k Key) GoString() string { return k.String() }

// Format writes String for every verb.
func (k Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue implements [slog.LogValuer] with name, type and versions only.
func (k Key) LogValue() slog.Value {
	var latest uint32
	if len(k.versions) > 0 {
		latest = k.versions[len(k.versions)-1].num
	}
	return slog.GroupValue(
		slog.String("name", k.name),
		slog.String("type", string(k.typ)),
		slog.Any("latest", latest),
		slog.Any("min_decryption_version", k.min),
	)
}
