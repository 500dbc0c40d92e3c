package testcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/hsmbridge/pkcs11"
	"github.com/keyd/keyd/hsmbridge/soft"
	"github.com/keyd/keyd/hsmbridge/softhsm"
)

// HSM kinds for Options.HSM.
const (
	HSMNone     = ""
	HSMSoft     = "soft"     // a software HSM per node, in the node's slot directory
	HSMSoftHSM2 = "softhsm2" // a SoftHSM2 token per node slot, through PKCS#11
)

// SoftHSM2 reads its configuration once per process, and tokens created
// after that are not seen. So the first cluster that asks for SoftHSM2
// creates a fixed pool of tokens in one process-wide directory; clusters
// share tokens but use their own key labels.
const softHSMTokens = 7

const softHSMPIN = "1234"

var softHSMOnce struct {
	sync.Once
	module string
	err    error
}

func softHSMSetup() (string, error) {
	softHSMOnce.Do(func() {
		module, err := softhsm.ModulePath()
		if err != nil {
			softHSMOnce.err = err
			return
		}
		dir, err := os.MkdirTemp("", "keyd-testcluster-softhsm-")
		if err != nil {
			softHSMOnce.err = err
			return
		}
		conf, err := softhsm.WriteConfig(dir)
		if err != nil {
			softHSMOnce.err = err
			return
		}
		for i := 1; i <= softHSMTokens; i++ {
			if err := softhsm.InitToken(context.Background(), conf, fmt.Sprintf("keyd-slot-%d", i), softHSMPIN, "5678"); err != nil {
				softHSMOnce.err = err
				return
			}
		}
		softHSMOnce.err = os.Setenv(softhsm.ConfEnv, conf)
		softHSMOnce.module = module
	})
	return softHSMOnce.module, softHSMOnce.err
}

// hsmFor returns the HSM configuration and key label for slot i.
func (c *Cluster) hsmFor(t testing.TB, i int, dir string) (hsmbridge.Config, string) {
	switch c.opts.HSM {
	case HSMSoft:
		return soft.Config{Path: filepath.Join(dir, "hsm")}, "keyd-node-share"
	case HSMSoftHSM2:
		module, err := softHSMSetup()
		if err != nil {
			if os.Getenv("KEYD_SOFTHSM") != "" {
				t.Fatalf("SoftHSM2 required (KEYD_SOFTHSM set): %v", err)
			}
			t.Skipf("SoftHSM2 not available: %v", err)
		}
		if i >= softHSMTokens {
			t.Fatalf("at most %d nodes with SoftHSM2", softHSMTokens)
		}
		return pkcs11.Config{Module: module, TokenLabel: fmt.Sprintf("keyd-slot-%d", i+1), PIN: softHSMPIN}, "keyd-" + c.id + "-" + fmt.Sprint(i)
	}
	return nil, ""
}

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
