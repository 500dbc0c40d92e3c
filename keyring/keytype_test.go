package keyring

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"testing"
)

func TestParseKeyType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in                 string
		want               KeyType
		wantErr            error
		enc, sign, hmacCap bool
	}{
		{"aes256-gcm", AES256GCM, nil, true, false, false},
		{"xchacha20-poly1305", XChaCha20Poly1305, nil, true, false, false},
		{"hmac-sha256", HMACSHA256, nil, false, false, true},
		{"ed25519", Ed25519, nil, false, true, false},
		{"ecdsa-p256", ECDSAP256, nil, false, true, false},
		{"AES256-GCM", "", ErrUnknownKeyType, false, false, false},
		{"", "", ErrUnknownKeyType, false, false, false},
		{"rsa-2048", "", ErrUnknownKeyType, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseKeyType(tt.in)
			wantErr(t, "ParseKeyType", err, tt.wantErr)
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if got.CanEncrypt() != tt.enc || got.CanSign() != tt.sign || got.CanHMAC() != tt.hmacCap {
				t.Fatalf("got capabilities enc=%v sign=%v hmac=%v, want %v %v %v",
					got.CanEncrypt(), got.CanSign(), got.CanHMAC(), tt.enc, tt.sign, tt.hmacCap)
			}
		})
	}
}

func TestGenerateMaterial(t *testing.T) {
	t.Parallel()
	for _, typ := range allTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			seed := bytes.Repeat([]byte{0x42}, typ.materialLen())
			m, err := GenerateMaterial(typ, bytes.NewReader(seed))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.bytes(), seed) {
				t.Fatalf("got material not equal to the rand bytes")
			}
			if err := checkMaterial(typ, m); err != nil {
				t.Fatalf("generated material invalid: %v", err)
			}
			_, err = GenerateMaterial(typ, bytes.NewReader(seed[:len(seed)-1]))
			if err == nil {
				t.Fatalf("short rand: got nil error, want read error")
			}
		})
	}
	// An out-of-range P-256 scalar is redrawn.
	r := bytes.NewReader(append(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0x01}, 32)...))
	m, err := GenerateMaterial(ECDSAP256, r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.bytes(), bytes.Repeat([]byte{0x01}, 32)) {
		t.Fatalf("got first (invalid) scalar, want the redrawn one")
	}
	_, err = GenerateMaterial("rsa", nil)
	wantErr(t, "GenerateMaterial unknown", err, ErrUnknownKeyType)
}

func TestPublicKey(t *testing.T) {
	t.Parallel()
	for _, typ := range allTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			m, _ := GenerateMaterial(typ, nil)
			der, err := PublicKey(typ, m)
			if !typ.CanSign() {
				wantErr(t, "PublicKey", err, ErrUnsupported)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			pub, err := x509.ParsePKIXPublicKey(der)
			if err != nil {
				t.Fatalf("ParsePKIXPublicKey: %v", err)
			}
			switch typ {
			case Ed25519:
				want := ed25519.NewKeyFromSeed(m.bytes()).Public()
				if !want.(ed25519.PublicKey).Equal(pub) {
					t.Fatalf("got a different Ed25519 public key")
				}
			case ECDSAP256:
				if _, ok := pub.(*ecdsa.PublicKey); !ok {
					t.Fatalf("got %T, want *ecdsa.PublicKey", pub)
				}
			}
		})
	}
	tests := []struct {
		name    string
		typ     KeyType
		m       *KeyMaterial
		wantErr error
	}{
		{"unknown type", "rsa", NewKeyMaterial(make([]byte, 32)), ErrUnknownKeyType},
		{"short seed", Ed25519, NewKeyMaterial(make([]byte, 31)), ErrInvalidKey},
		{"nil material", Ed25519, nil, ErrInvalidKey},
		{"zero scalar", ECDSAP256, NewKeyMaterial(make([]byte, 32)), ErrInvalidKey},
		{"scalar above order", ECDSAP256, NewKeyMaterial(bytes.Repeat([]byte{0xff}, 32)), ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := PublicKey(tt.typ, tt.m)
			wantErr(t, "PublicKey", err, tt.wantErr)
		})
	}
}
