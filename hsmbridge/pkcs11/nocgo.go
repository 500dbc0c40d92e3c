//go:build !cgo

package pkcs11

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/keyd/keyd/hsmbridge"
)

// ErrNoCgo means this binary was built with CGO_ENABLED=0 and cannot load a
// PKCS#11 module.
var ErrNoCgo = errors.New("hsmbridge/pkcs11: built without cgo")

// Open always fails in a binary built without cgo: PKCS#11 modules are C
// libraries loaded with dlopen. Rebuild with CGO_ENABLED=1, or use the soft
// HSM for development.
func (c Config) Open(ctx context.Context) (hsmbridge.HSM, error) {
	return nil, fmt.Errorf("%w: %s cannot load PKCS#11 module %s; rebuild with CGO_ENABLED=1",
		ErrNoCgo, os.Args[0], c.Module)
}
