package keyring

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"testing"
)

func testRoot(t testing.TB, b byte) *RootKey {
	t.Helper()
	k, err := DeriveRootKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyringRotate(t *testing.T) {
	t.Parallel()
	r1, err := NewKeyring(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := r1.Active(); got != 1 {
		t.Fatalf("got Active %d, want 1", got)
	}
	r2, err := r1.Rotate(nil)
	if err != nil {
		t.Fatal(err)
	}
	r3, err := r2.Rotate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r3.Versions(), []uint32{3, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("got Versions %v, want %v", got, want)
	}
	if got, want := r1.Versions(), []uint32{1}; !slices.Equal(got, want) {
		t.Fatalf("old keyring changed: got Versions %v, want %v", got, want)
	}
	vs := r3.Versions()
	vs[0] = 99
	if got := r3.Active(); got != 3 {
		t.Fatalf("Versions aliased internal state: got Active %d, want 3", got)
	}
	if !bytes.Equal(r1.keys[0].b[:], r3.lookup(1).b[:]) {
		t.Fatalf("rotated keyring lost version 1's key")
	}
	if bytes.Equal(r3.lookup(3).b[:], r3.lookup(2).b[:]) {
		t.Fatalf("got equal keys for versions 3 and 2, want fresh key")
	}

	// Material wrapped under v1 still unwraps after rotation, and destroying
	// the old keyring does not affect the new one (no shared buffers).
	m, _ := GenerateMaterial(AES256GCM, nil)
	bv, blob, err := r1.WrapMaterial("k", 1, m)
	if err != nil || bv != 1 {
		t.Fatalf("WrapMaterial: got %d, %v, want 1, nil", bv, err)
	}
	r1.Destroy()
	if r1.Active() != 0 {
		t.Fatalf("got Active %d after Destroy, want 0", r1.Active())
	}
	got, err := r3.UnwrapMaterial("k", 1, bv, blob)
	if err != nil || !got.Equal(m) {
		t.Fatalf("UnwrapMaterial after rotation: got %v, want original material", err)
	}
	bv, _, err = r3.WrapMaterial("k", 2, m)
	if err != nil || bv != 3 {
		t.Fatalf("WrapMaterial on rotated: got barrier version %d, %v, want 3, nil", bv, err)
	}
	_, err = r1.Rotate(nil)
	wantErr(t, "Rotate destroyed", err, ErrDestroyed)
	_, _, err = r1.WrapMaterial("k", 1, m)
	wantErr(t, "WrapMaterial destroyed", err, ErrDestroyed)

	maxRing := &Keyring{keys: []barrierKey{newBarrierKey(math.MaxUint32, make([]byte, 32))}}
	_, err = maxRing.Rotate(nil)
	wantErr(t, "Rotate at max version", err, ErrVersionExhausted)

	_, err = NewKeyring(bytes.NewReader(make([]byte, 10)))
	if err == nil {
		t.Fatalf("NewKeyring with short rand: got nil error, want read error")
	}
}

func TestKeyringSealOpen(t *testing.T) {
	t.Parallel()
	root := testRoot(t, 1)
	r, _ := NewKeyring(nil)
	r, _ = r.Rotate(nil)
	r, _ = r.Rotate(nil)
	aad := []byte("cluster-a")
	blob, err := r.Seal(root, aad)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range r.keys {
		if bytes.Contains(blob, k.b[:]) {
			t.Fatalf("sealed blob contains barrier key %d in the clear", k.version)
		}
	}
	opened, err := OpenKeyring(root, blob, aad)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := opened.Versions(), r.Versions(); !slices.Equal(got, want) {
		t.Fatalf("got Versions %v, want %v", got, want)
	}
	for _, k := range r.keys {
		if !bytes.Equal(opened.lookup(k.version).b[:], k.b[:]) {
			t.Fatalf("version %d: opened key differs", k.version)
		}
	}
	// A blob wrapped by the original opens with the reopened ring.
	m, _ := GenerateMaterial(HMACSHA256, nil)
	bv, wb, _ := r.WrapMaterial("k", 1, m)
	got, err := opened.UnwrapMaterial("k", 1, bv, wb)
	if err != nil || !got.Equal(m) {
		t.Fatalf("UnwrapMaterial via reopened ring: got %v, want original material", err)
	}

	tests := []struct {
		name string
		root *RootKey
		blob []byte
		aad  []byte
	}{
		{"wrong root", testRoot(t, 2), blob, aad},
		{"wrong aad", root, blob, []byte("cluster-b")},
		{"no aad", root, blob, nil},
		{"truncated", root, blob[:len(blob)-1], aad},
		{"empty", root, nil, aad},
		// A blob the root key wrapped for another purpose is not a keyring.
		{"other purpose", root, mustWrap(t, root, blob, aad), aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := OpenKeyring(tt.root, tt.blob, tt.aad)
			wantErr(t, "OpenKeyring", err, ErrUnwrap)
		})
	}
	t.Run("flipped bits", func(t *testing.T) {
		t.Parallel()
		for i := range len(blob) * 8 {
			b := bytes.Clone(blob)
			b[i/8] ^= 1 << (i % 8)
			_, err := OpenKeyring(root, b, aad)
			wantErr(t, "OpenKeyring flipped", err, ErrUnwrap)
		}
	})
}

func mustWrap(t testing.TB, root *RootKey, pt, aad []byte) []byte {
	t.Helper()
	b, err := root.Wrap(pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serialise builds a keyring plaintext with the given header fields and
// versions, for structure tests past authentication.
func serialise(format byte, count uint32, versions ...uint32) []byte {
	b := []byte{format}
	b = binary.BigEndian.AppendUint32(b, count)
	for _, v := range versions {
		b = binary.BigEndian.AppendUint32(b, v)
		b = append(b, bytes.Repeat([]byte{byte(v) | 1}, 32)...)
	}
	return b
}

func TestOpenKeyringMalformed(t *testing.T) {
	t.Parallel()
	root := testRoot(t, 1)
	aad := []byte("c")
	tests := []struct {
		name    string
		pt      []byte
		wantErr error
	}{
		{"valid", serialise(1, 2, 5, 2), nil},
		{"empty", nil, ErrMalformed},
		{"header only short", []byte{1, 0, 0}, ErrMalformed},
		{"unknown format", serialise(2, 1, 1), ErrMalformed},
		{"zero count", serialise(1, 0), ErrMalformed},
		{"count too high", serialise(1, 3, 2, 1), ErrMalformed},
		{"count too low", serialise(1, 1, 2, 1), ErrMalformed},
		{"huge count", serialise(1, math.MaxUint32, 1), ErrMalformed},
		{"trailing byte", append(serialise(1, 1, 1), 0), ErrMalformed},
		{"version zero", serialise(1, 1, 0), ErrMalformed},
		{"duplicate", serialise(1, 2, 3, 3), ErrMalformed},
		{"ascending", serialise(1, 2, 1, 2), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			blob := mustWrap(t, root, tt.pt, barrierAAD(aad))
			r, err := OpenKeyring(root, blob, aad)
			wantErr(t, "OpenKeyring", err, tt.wantErr)
			if err == nil && r.Active() != 5 {
				t.Fatalf("got Active %d, want 5", r.Active())
			}
		})
	}
}

func TestWrapMaterial(t *testing.T) {
	t.Parallel()
	r, _ := NewKeyring(nil)
	m, _ := GenerateMaterial(Ed25519, nil)
	bv, blob, err := r.WrapMaterial("payments", 3, m)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, m.bytes()) {
		t.Fatalf("wrapped blob contains the material in the clear")
	}
	got, err := r.UnwrapMaterial("payments", 3, bv, blob)
	if err != nil || !got.Equal(m) {
		t.Fatalf("round trip: got %v, want original material", err)
	}
	other, _ := NewKeyring(nil)
	tests := []struct {
		name    string
		ring    *Keyring
		keyName string
		version uint32
		bv      uint32
		blob    []byte
		wantErr error
	}{
		{"wrong name", r, "payment", 3, bv, blob, ErrUnwrap},
		{"name with version suffix", r, "payments\x00", 3, bv, blob, ErrUnwrap},
		{"wrong version", r, "payments", 4, bv, blob, ErrUnwrap},
		{"unknown barrier version", r, "payments", 3, 2, blob, ErrUnknownBarrierVersion},
		{"barrier version zero", r, "payments", 3, 0, blob, ErrUnknownBarrierVersion},
		{"other keyring", other, "payments", 3, bv, blob, ErrUnwrap},
		{"truncated", r, "payments", 3, bv, blob[:20], ErrUnwrap},
		{"empty", r, "payments", 3, bv, nil, ErrUnwrap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.ring.UnwrapMaterial(tt.keyName, tt.version, tt.bv, tt.blob)
			wantErr(t, "UnwrapMaterial", err, tt.wantErr)
		})
	}
	_, _, err = r.WrapMaterial("x", 1, NewKeyMaterial(nil))
	wantErr(t, "WrapMaterial empty", err, ErrInvalidKey)
}
