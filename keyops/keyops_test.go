package keyops

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/keyring"
)

func testKey(t testing.TB, typ keyring.KeyType, versions int) *keyring.Key {
	t.Helper()
	var vs []keyring.Version
	for i := 1; i <= versions; i++ {
		m, err := keyring.GenerateMaterial(typ, nil)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, keyring.Version{Number: uint32(i), Material: m})
	}
	k, err := keyring.NewKey("k1", typ, vs, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Destroy)
	return k
}

func code(err error) api.Code {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return "not an api.Error"
}

func TestRoundTripsAndErrors(t *testing.T) {
	k := testKey(t, keyring.AES256GCM, 2)
	ctx := []byte("tenant-1")
	enc, err := Encrypt(k, nil, []byte("hello"), ctx)
	if err != nil || enc.Version != 2 || !strings.HasPrefix(enc.Ciphertext, "keyd:v2:") {
		t.Fatalf("encrypt: %+v %v", enc, err)
	}
	dec, err := Decrypt(k, enc.Ciphertext, ctx)
	if err != nil || string(dec.Plaintext) != "hello" || dec.Version != 2 {
		t.Fatalf("decrypt: %+v %v", dec, err)
	}
	if _, err := Decrypt(k, enc.Ciphertext, []byte("tenant-2")); code(err) != api.CodeDecrypt {
		t.Fatalf("wrong context: %v", err)
	}
	if _, err := Decrypt(k, enc.Ciphertext[:len(enc.Ciphertext)-8], ctx); code(err) != api.CodeDecrypt {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := Encrypt(k, nil, make([]byte, api.MaxPlaintextBytes+1), nil); code(err) != api.CodeBadRequest {
		t.Fatalf("too large: %v", err)
	}
	if _, err := Sign(k, []byte("m")); code(err) != api.CodeUnsupported {
		t.Fatalf("sign with an AES key: %v", err)
	}
	re, err := Reencrypt(k, nil, enc.Ciphertext, ctx)
	if err != nil || re.Ciphertext == enc.Ciphertext {
		t.Fatalf("reencrypt: %+v %v", re, err)
	}
	dk, err := DataKey(k, nil, api.DataKeyRequest{Bytes: 16, WithoutPlaintext: true})
	if err != nil || dk.Plaintext != nil {
		t.Fatalf("datakey: %+v %v", dk, err)
	}
	if _, err := DataKey(k, nil, api.DataKeyRequest{Bytes: 17}); code(err) != api.CodeBadRequest {
		t.Fatalf("datakey 17 bytes: %v", err)
	}
	// A failing randomness source is an internal error, not a wire one.
	if _, err := Encrypt(k, bytes.NewReader(nil), []byte("x"), nil); err == nil || WireError(err) != nil {
		t.Fatalf("failing rand: %v", err)
	}
}

func TestVerifyBadSignatureIsNotAnError(t *testing.T) {
	for _, typ := range []keyring.KeyType{keyring.Ed25519, keyring.HMACSHA256} {
		k := testKey(t, typ, 1)
		mac := typ == keyring.HMACSHA256
		s, err := signLike(k, []byte("msg"), mac)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := verifyLike(k, []byte("msg"), s.Signature, mac); err != nil || !r.Valid {
			t.Fatalf("%s valid: %+v %v", typ, r, err)
		}
		if r, err := verifyLike(k, []byte("msh"), s.Signature, mac); err != nil || r.Valid {
			t.Fatalf("%s other message: %+v %v", typ, r, err)
		}
		if _, err := verifyLike(k, []byte("msg"), "keyd:v1:!!", mac); code(err) != api.CodeDecrypt {
			t.Fatalf("%s malformed: %v", typ, err)
		}
	}
}

func TestBatchItemsFailAlone(t *testing.T) {
	k := testKey(t, keyring.XChaCha20Poly1305, 1)
	enc, err := BatchEncrypt(k, nil, []api.EncryptRequest{{Plaintext: []byte("a")}, {Plaintext: make([]byte, api.MaxPlaintextBytes+1)}})
	if err != nil || enc.Results[0].Error != nil || enc.Results[1].Error == nil || enc.Results[1].Error.Code != api.CodeBadRequest {
		t.Fatalf("batch encrypt: %+v %v", enc, err)
	}
	dec, err := BatchDecrypt(k, []api.DecryptRequest{{Ciphertext: enc.Results[0].Ciphertext}, {Ciphertext: "keyd:v9:AAAA"}})
	if err != nil || string(dec.Results[0].Plaintext) != "a" || dec.Results[1].Error == nil {
		t.Fatalf("batch decrypt: %+v %v", dec, err)
	}
	if _, err := BatchDecrypt(k, nil); code(err) != api.CodeBadRequest {
		t.Fatalf("empty batch: %v", err)
	}
	if _, err := BatchSign(k, make([]api.SignRequest, api.MaxBatchItems+1), false); code(err) != api.CodeBadRequest {
		t.Fatalf("oversized batch: %v", err)
	}
	if it := ItemError(errors.New("disk on fire")); it.Code != api.CodeInternal || strings.Contains(it.Message, "fire") {
		t.Fatalf("internal item error leaks its text: %+v", it)
	}
}

// TestBatchEncryptMatchesEncrypt: the batch's shared buffer gives each
// item its own text, the same as Encrypt's (AES256SIV is deterministic),
// with failed items anywhere in the batch.
func TestBatchEncryptMatchesEncrypt(t *testing.T) {
	for _, typ := range []keyring.KeyType{keyring.AES256SIV, keyring.XChaCha20Poly1305} {
		k := testKey(t, typ, 2)
		items := []api.EncryptRequest{
			{Plaintext: make([]byte, api.MaxPlaintextBytes+1)},
			{Plaintext: []byte("first"), Context: []byte("c1")},
			{},
			{Plaintext: make([]byte, api.MaxPlaintextBytes+1)},
			{Plaintext: []byte(strings.Repeat("long ", 500))},
			{Plaintext: make([]byte, api.MaxPlaintextBytes+1)},
		}
		got, err := BatchEncrypt(k, nil, items)
		if err != nil {
			t.Fatal(err)
		}
		for i, it := range items {
			r := got.Results[i]
			want, werr := Encrypt(k, nil, it.Plaintext, it.Context)
			if werr != nil {
				if r.Error == nil || r.Error.Message != ItemError(werr).Message || r.Ciphertext != "" || r.Version != 0 {
					t.Fatalf("%s item %d: %+v, want error %v", typ, i, r, werr)
				}
				continue
			}
			if r.Error != nil || r.Version != want.Version {
				t.Fatalf("%s item %d: %+v", typ, i, r)
			}
			if typ == keyring.AES256SIV && r.Ciphertext != want.Ciphertext {
				t.Fatalf("%s item %d: %q, Encrypt gives %q", typ, i, r.Ciphertext, want.Ciphertext)
			}
			pt, err := Decrypt(k, r.Ciphertext, it.Context)
			if err != nil || string(pt.Plaintext) != string(it.Plaintext) {
				t.Fatalf("%s item %d does not decrypt to its plaintext: %v", typ, i, err)
			}
		}
	}
}

// BenchmarkBatchEncrypt: keyd-load's batch, 100 items of 64 bytes.
func BenchmarkBatchEncrypt(b *testing.B) {
	k := testKey(b, keyring.AES256GCM, 1)
	items := make([]api.EncryptRequest, 100)
	for i := range items {
		items[i].Plaintext = make([]byte, 64)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BatchEncrypt(k, nil, items); err != nil {
			b.Fatal(err)
		}
	}
}
