package sharex

import (
	"crypto/rand"
	"errors"
	"testing"

	"github.com/keyd/keyd/shamir"
)

func TestDeliverySealOpen(t *testing.T) {
	t.Parallel()
	shares, commits := dealing(t)
	sh := shares[0]
	recv, err := NewDeliveryKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewDeliveryKey()
	if err != nil {
		t.Fatal(err)
	}
	d := Delivery{Kind: NodeShare, Receiver: "n2", Dealer: "n1", Epoch: 3, Fingerprint: commits.Fingerprint()}
	eph, sealed, err := SealDelivery(recv.PublicKey().Bytes(), d, sh)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenDelivery(recv, d, eph, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if err := commits.Verify(got); err != nil || got.Index != sh.Index {
		t.Fatalf("opened share %d does not verify: %v", got.Index, err)
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name   string
		d      Delivery
		eph    []byte
		sealed []byte
		want   error
	}{
		{"another key (a certificate without the HSM)", d, eph, sealed, ErrOpen},
		{"another receiver", Delivery{NodeShare, "n3", "n1", 3, d.Fingerprint}, eph, sealed, ErrOpen},
		{"another dealer", Delivery{NodeShare, "n2", "n3", 3, d.Fingerprint}, eph, sealed, ErrOpen},
		{"another epoch", Delivery{NodeShare, "n2", "n1", 4, d.Fingerprint}, eph, sealed, ErrOpen},
		{"another dealing", Delivery{NodeShare, "n2", "n1", 3, "ff"}, eph, sealed, ErrOpen},
		{"another kind (a node share opened as a relay)", Delivery{CustodianRelay, "n2", "n1", 3, d.Fingerprint}, eph, sealed, ErrOpen},
		{"tampered", d, eph, tampered, ErrOpen},
		{"truncated", d, eph, sealed[:20], ErrOpen},
		{"empty", d, eph, nil, ErrOpen},
		{"short ephemeral", d, eph[:31], sealed, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			priv := recv
			if tc.name == "another key (a certificate without the HSM)" {
				priv = other
			}
			_, err := OpenDelivery(priv, tc.d, tc.eph, tc.sealed)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, _, err := SealDelivery([]byte("short"), d, sh); !errors.Is(err, ErrMalformed) {
		t.Fatalf("seal to a short key: %v", err)
	}
}

func FuzzOpenDelivery(f *testing.F) {
	recv, err := NewDeliveryKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(make([]byte, 32), []byte("sealed"), uint64(1))
	f.Fuzz(func(t *testing.T, eph, sealed []byte, epoch uint64) {
		d := Delivery{Kind: NodeShare, Receiver: "n2", Dealer: "n1", Epoch: epoch, Fingerprint: "fp"}
		if _, err := OpenDelivery(recv, d, eph, sealed); err == nil {
			t.Fatal("opened a delivery nobody sealed")
		}
	})
}

// BenchmarkDelivery: what sealing a share to a delivery key and opening it
// cost (the HSM unwrap of the private key comes on top when opening).
func BenchmarkDelivery(b *testing.B) {
	s, err := shamir.NewSecret(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	shares, c, err := shamir.Split(s, 2, 3, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	recv, err := NewDeliveryKey()
	if err != nil {
		b.Fatal(err)
	}
	d := Delivery{Kind: NodeShare, Receiver: "n2", Dealer: "n1", Epoch: 1, Fingerprint: c.Fingerprint()}
	pub := recv.PublicKey().Bytes()
	b.Run("seal", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := SealDelivery(pub, d, shares[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	eph, sealed, err := SealDelivery(pub, d, shares[0])
	if err != nil {
		b.Fatal(err)
	}
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			if _, err := OpenDelivery(recv, d, eph, sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
}
