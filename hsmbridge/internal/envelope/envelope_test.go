package envelope

import (
	"bytes"
	"errors"
	"testing"

	"github.com/keyd/keyd/hsmbridge"
)

func TestParse(t *testing.T) {
	t.Parallel()
	iv := bytes.Repeat([]byte{7}, IVSize)
	sealed := bytes.Repeat([]byte{9}, TagSize+3)
	good := Marshal(iv, sealed)
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"good", good, nil},
		{"tag only", Marshal(iv, sealed[:TagSize]), nil},
		{"nil", nil, hsmbridge.ErrUnwrap},
		{"one short", good[:Overhead-1], hsmbridge.ErrUnwrap},
		{"version 0", append([]byte{0}, good[1:]...), hsmbridge.ErrUnwrap},
		{"version 2", append([]byte{2}, good[1:]...), hsmbridge.ErrUnwrap},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gotIV, gotSealed, err := Parse(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Parse: got err %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(gotIV, iv) {
				t.Errorf("iv: got %x, want %x", gotIV, iv)
			}
			if !bytes.Equal(gotSealed, tc.in[1+IVSize:]) {
				t.Errorf("sealed: got %x, want %x", gotSealed, tc.in[1+IVSize:])
			}
		})
	}
}

func TestAADBindsVersion(t *testing.T) {
	t.Parallel()
	if got, want := AAD([]byte("n1")), []byte{Version, 'n', '1'}; !bytes.Equal(got, want) {
		t.Fatalf("AAD: got %x, want %x", got, want)
	}
	if got := AAD(nil); len(got) != 1 || got[0] != Version {
		t.Fatalf("AAD(nil): got %x, want [%x]", got, Version)
	}
}

func TestNewIVFresh(t *testing.T) {
	t.Parallel()
	a, err := NewIV()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewIV()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != IVSize {
		t.Fatalf("len: got %d, want %d", len(a), IVSize)
	}
	if bytes.Equal(a, b) {
		t.Fatalf("two IVs are equal: %x", a)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{Version})
	f.Add(Marshal(make([]byte, IVSize), make([]byte, TagSize)))
	f.Add(append([]byte{2}, make([]byte, 40)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		iv, sealed, err := Parse(b)
		if err != nil {
			if !errors.Is(err, hsmbridge.ErrUnwrap) {
				t.Fatalf("Parse: got err %v, want ErrUnwrap", err)
			}
			return
		}
		if len(iv) != IVSize || len(sealed) < TagSize {
			t.Fatalf("Parse accepted iv %d bytes, sealed %d bytes", len(iv), len(sealed))
		}
		if got := Marshal(iv, sealed); !bytes.Equal(got, b) {
			t.Fatalf("Marshal(Parse(b)): got %x, want %x", got, b)
		}
	})
}
