package membership_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyd/keyd/membership"
)

func TestMetaRoundTrip(t *testing.T) {
	t.Parallel()
	full := membership.Meta{
		NodeID: "node-with-a-long-identifier-0123456789", Region: "eu-central-1",
		APIAddr: "[2001:db8::1234:5678]:8200", RaftAddr: "[2001:db8::1234:5678]:8201",
		Sealed: true, Voter: true, Applied: ^uint64(0), HSMOK: true, Version: "1.2.3-rc.1+abcdef0",
	}
	tests := []struct {
		name string
		m    membership.Meta
	}{
		{"minimal", membership.Meta{NodeID: "n1"}},
		{"full", full},
		{"html chars", membership.Meta{NodeID: "a<b>&c", Region: "ü-region"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := tt.m.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if len(b) > membership.MaxMetaSize {
				t.Fatalf("got %d bytes, want <= %d", len(b), membership.MaxMetaSize)
			}
			got, err := membership.DecodeMeta(b)
			if err != nil {
				t.Fatalf("DecodeMeta(%s): %v", b, err)
			}
			if got != tt.m {
				t.Fatalf("got %+v, want %+v", got, tt.m)
			}
		})
	}
	b, _ := full.Encode()
	t.Logf("full meta encodes to %d bytes: %s", len(b), b)
}

func TestMetaEncodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    membership.Meta
		want error
	}{
		{"empty id", membership.Meta{Region: "r"}, membership.ErrMetaInvalid},
		{"control char", membership.Meta{NodeID: "n1", Region: "a\x1b[31m"}, membership.ErrMetaInvalid},
		{"bad utf8", membership.Meta{NodeID: "n\xff"}, membership.ErrMetaInvalid},
		{"too large", membership.Meta{NodeID: "n1", Version: strings.Repeat("v", membership.MaxMetaSize)}, membership.ErrMetaTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.m.Encode()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	// Nearly all of the limit is usable: grow a field until it no longer fits.
	var largest int
	for n := 1; ; n++ {
		b, err := membership.Meta{NodeID: "n1", Version: strings.Repeat("v", n)}.Encode()
		if errors.Is(err, membership.ErrMetaTooLarge) {
			break
		}
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		largest = len(b)
	}
	if largest > membership.MaxMetaSize || largest < membership.MaxMetaSize-16 {
		t.Fatalf("largest encoding: got %d bytes, want within 16 of %d", largest, membership.MaxMetaSize)
	}
}

func TestDecodeMetaInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"null", "null"},
		{"not json", "n1"},
		{"no version", `{"id":"n1"}`},
		{"future version", `{"v":2,"id":"n1"}`},
		{"no id", `{"v":1,"rg":"r"}`},
		{"trailing data", `{"v":1,"id":"n1"}x`},
		{"wrong type", `{"v":1,"id":"n1","ai":-1}`},
		{"bad utf8", "{\"v\":1,\"id\":\"n\xff\"}"},
		{"escaped control", `{"v":1,"id":"n1","rg":"\u0007"}`},
		{"too long", `{"v":1,"id":"n1","ver":"` + strings.Repeat("v", membership.MaxMetaSize) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := membership.DecodeMeta([]byte(tt.in))
			if !errors.Is(err, membership.ErrMetaInvalid) {
				t.Fatalf("got %+v, %v; want %v", got, err, membership.ErrMetaInvalid)
			}
		})
	}
}

func TestDecodeMetaIgnoresUnknownFields(t *testing.T) {
	t.Parallel()
	got, err := membership.DecodeMeta([]byte(`{"v":1,"id":"n1","s":true,"future":{"x":1}}`))
	if err != nil {
		t.Fatalf("DecodeMeta: %v", err)
	}
	if want := (membership.Meta{NodeID: "n1", Sealed: true}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []membership.Meta{{NodeID: "n1"}, metaFor(1), {NodeID: "x", Sealed: true, Applied: 1 << 63}} {
		b, err := m.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"id":"\u2028"}`))
	f.Add([]byte(`{"v":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := membership.DecodeMeta(b)
		if err != nil {
			if !errors.Is(err, membership.ErrMetaInvalid) {
				t.Fatalf("got %v, want ErrMetaInvalid", err)
			}
			return
		}
		enc, err := m.Encode()
		if errors.Is(err, membership.ErrMetaTooLarge) {
			return // escaping (e.g. U+2028 -> \u2028) can grow a valid input
		}
		if err != nil {
			t.Fatalf("re-Encode of decoded %+v: %v", m, err)
		}
		again, err := membership.DecodeMeta(enc)
		if err != nil || again != m {
			t.Fatalf("round trip: got %+v, %v; want %+v", again, err, m)
		}
	})
}
