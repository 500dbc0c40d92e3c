package fpe

import (
	"bytes"
	"testing"
)

func BenchmarkFF1(b *testing.B) {
	ff, _ := NewFF1(bytes.Repeat([]byte{1}, 32))
	for _, c := range []struct {
		name  string
		radix int
		n     int
	}{{"radix10-len16", 10, 16}, {"radix62-len12", 62, 12}, {"radix10-len100", 10, 100}} {
		x := make([]uint16, c.n)
		for i := range x {
			x[i] = uint16(i % c.radix)
		}
		b.Run("encrypt-"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ff.Encrypt(c.radix, x, []byte("t")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFormats(b *testing.B) {
	ff, _ := NewFF1(bytes.Repeat([]byte{1}, 32))
	for _, c := range []struct {
		f Format
		v string
	}{{Card, "4111 1111 1111 1111"}, {Phone, "+1 (415) 555-0132"}, {EmailLocal, "john.doe@example.com"}} {
		b.Run(string(c.f), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.f.Encrypt(ff, c.v, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
