package keyring

import "testing"

var benchTypes = []KeyType{AES256GCM, XChaCha20Poly1305}

func BenchmarkEncrypt64(b *testing.B) {
	for _, typ := range benchTypes {
		b.Run(string(typ), func(b *testing.B) {
			k, _ := newTestKey(b, "bench", typ, 3, 0)
			pt, ctx := make([]byte, 64), []byte("tenant=42")
			b.ReportAllocs()
			b.SetBytes(64)
			for b.Loop() {
				if _, err := k.Encrypt(nil, pt, ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncryptTo64(b *testing.B) {
	for _, typ := range benchTypes {
		b.Run(string(typ), func(b *testing.B) {
			k, _ := newTestKey(b, "bench", typ, 3, 0)
			pt, ctx := make([]byte, 64), []byte("tenant=42")
			buf := make([]byte, 0, k.EncryptedLen(len(pt), len(ctx)))
			b.ReportAllocs()
			b.SetBytes(64)
			for b.Loop() {
				if _, err := k.EncryptTo(buf, nil, pt, ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt64(b *testing.B) {
	for _, typ := range benchTypes {
		b.Run(string(typ), func(b *testing.B) {
			k, _ := newTestKey(b, "bench", typ, 3, 0)
			pt, ctx := make([]byte, 64), []byte("tenant=42")
			ct, err := k.Encrypt(nil, pt, ctx)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(64)
			for b.Loop() {
				if _, _, err := k.Decrypt(ct, ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSign(b *testing.B) {
	for _, typ := range []KeyType{Ed25519, ECDSAP256} {
		b.Run(string(typ), func(b *testing.B) {
			k, _ := newTestKey(b, "bench", typ, 1, 0)
			msg := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Sign(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHMAC64(b *testing.B) {
	k, _ := newTestKey(b, "bench", HMACSHA256, 1, 0)
	msg := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.HMAC(msg); err != nil {
			b.Fatal(err)
		}
	}
}
