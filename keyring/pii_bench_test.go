package keyring

import (
	"testing"

	"github.com/keyd/keyd/fpe"
)

func BenchmarkPII(b *testing.B) {
	siv, _ := newTestKey(b, "siv", AES256SIV, 1, 0)
	gcm, _ := newTestKey(b, "gcm", AES256GCM, 1, 0)
	hm, _ := newTestKey(b, "hm", HMACSHA256, 1, 0)
	ff, _ := newTestKey(b, "ff", FF1AES256, 1, 0)
	pt := []byte("alice.smith@example.com")
	ct, _ := siv.Encrypt(nil, pt, nil)
	b.Run("aes256-gcm-encrypt-23B(baseline)", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = gcm.Encrypt(nil, pt, nil)
		}
	})
	b.Run("aes256-siv-encrypt-23B", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = siv.Encrypt(nil, pt, nil)
		}
	})
	b.Run("aes256-siv-decrypt-23B", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := siv.Decrypt(ct, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pseudonym-23B", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _, _ = hm.Pseudonym(pt, []byte("analytics"), 0)
		}
	})
	b.Run("ff1-card", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ff.FPEEncrypt(fpe.Card, "4111 1111 1111 1111", nil, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
