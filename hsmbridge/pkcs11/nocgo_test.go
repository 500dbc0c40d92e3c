//go:build !cgo

package pkcs11

import (
	"errors"
	"testing"
)

func TestOpenWithoutCgo(t *testing.T) {
	t.Parallel()
	h, err := Config{Module: "/x.so", TokenLabel: "t", PIN: "1234"}.Open(t.Context())
	if !errors.Is(err, ErrNoCgo) || h != nil {
		t.Fatalf("Open: got (%v, %v), want (nil, ErrNoCgo)", h, err)
	}
}
