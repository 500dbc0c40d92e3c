package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/hsmbridge/pkcs11"
	"github.com/keyd/keyd/hsmbridge/soft"
	"github.com/keyd/keyd/hsmbridge/softhsm"
)

// Dev HSM kinds for `keyd dev -hsm`.
const (
	devHSMSoft     = "soft"
	devHSMSoftHSM2 = "softhsm2"
	devHSMNone     = "none"
)

// devHSMs returns one HSM configuration per dev node. "soft" keeps a key
// file per node under its data directory; "softhsm2" gives each node its
// own SoftHSM2 token under DIR/softhsm, reached through PKCS#11, so node
// shares and warm rejoin run on a real PKCS#11 module. The dev PIN is
// random, kept in DIR/softhsm/pin (0600): dev only.
func devHSMs(ctx context.Context, kind, dir string, ids []string) ([]hsmbridge.Config, error) {
	out := make([]hsmbridge.Config, len(ids))
	switch kind {
	case devHSMNone:
		return out, nil
	case "", devHSMSoft:
		for i, id := range ids {
			out[i] = soft.Config{Path: filepath.Join(dir, id, "hsm")}
		}
		return out, nil
	case devHSMSoftHSM2:
	default:
		return nil, usagef("unknown -hsm %q (soft, softhsm2 or none)", kind)
	}
	module, err := softhsm.ModulePath()
	if err != nil {
		return nil, fmt.Errorf("dev: -hsm softhsm2: %w (install it with scripts/setup-softhsm.sh)", err)
	}
	hsmDir := filepath.Join(dir, "softhsm")
	conf, err := softhsm.WriteConfig(hsmDir)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	pin, err := devPIN(filepath.Join(hsmDir, "pin"))
	if err != nil {
		return nil, err
	}
	for i, id := range ids {
		label := "keyd-dev-" + id
		if err := softhsm.InitToken(ctx, conf, label, pin, pin); err != nil && !errors.Is(err, softhsm.ErrTokenExists) {
			return nil, fmt.Errorf("dev: %w", err)
		}
		out[i] = pkcs11.Config{Module: module, TokenLabel: label, PIN: pin}
	}
	// SoftHSM2 reads its configuration once, when the module is first
	// initialised in this process, which happens after this.
	if err := os.Setenv(softhsm.ConfEnv, conf); err != nil {
		return nil, err
	}
	return out, nil
}

func devPIN(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	pin := hex.EncodeToString(b[:])
	if err := os.WriteFile(path, []byte(pin+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("dev: %w", err)
	}
	return pin, nil
}

// devHSMLine tells, for the dev banner, which HSM holds each node's share
// of the root.
func devHSMLine(kind, dir string) string {
	switch kind {
	case devHSMNone:
		return "HSM: none: node shares are off, so a restarted node needs custodian shares."
	case devHSMSoftHSM2:
		return "HSM: SoftHSM2 via PKCS#11, one token per node (keyd-dev-<node id>) under " + filepath.Join(dir, "softhsm") + "."
	}
	return "HSM: software (a key file per node, " + filepath.Join(dir, "<node id>", "hsm") + "): a stand-in for a real HSM."
}
