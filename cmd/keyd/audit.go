package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/keyd/keyd/audit"
)

const auditHelp = `Usage: keyd audit <subcommand> [flags]

  verify FILE -pubkey P   check an audit log offline: the hash chain, the seq
                          order and every checkpoint signature. P is the
                          audit public key as 64 hex digits, or a file
                          holding it in hex or PEM.

verify prints "OK: ..." and exits 0, or "TAMPERED: line L (seq S): reason",
naming the first bad line, and exits 1.
`

// maxKeyFile bounds a -pubkey file; a PEM public key is far shorter.
const maxKeyFile = 64 << 10

// errAuditTampered is returned after a TAMPERED line is printed.
var errAuditTampered = errors.New("audit log failed verification")

func (c *cli) audit(args []string) error {
	return c.dispatch("audit", auditHelp, map[string]func([]string) error{
		"verify": c.auditVerify,
	}, args)
}

// auditVerify needs no cluster: an auditor verifies a copied file.
func (c *cli) auditVerify(args []string) error {
	fs := c.flags("audit verify", "FILE -pubkey HEX_OR_FILE")
	pubArg := fs.String("pubkey", "", "audit public key: 64 hex digits, or a file holding hex or PEM (required)")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if *pubArg == "" {
		return usagef("audit verify: -pubkey is required")
	}
	pub, err := loadAuditKey(*pubArg)
	if err != nil {
		return err
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := audit.Verify(f, pub)
	var ve *audit.VerifyError
	if errors.As(err, &ve) {
		fmt.Fprintf(c.stdout, "TAMPERED: line %d (seq %d): %s\n", ve.Line, ve.Seq, ve.Reason)
		return errAuditTampered
	}
	if err != nil {
		return fmt.Errorf("audit verify %s: %w", pos[0], err)
	}
	w := &errWriter{w: c.stdout}
	w.printf("OK: %d records, %d checkpoints, last seq %d\n", rep.Records, rep.Checkpoints, rep.LastSeq)
	if rep.Warning != "" {
		fmt.Fprintf(c.stderr, "WARNING: %s\n", rep.Warning)
	}
	return w.err
}

// loadAuditKey reads -pubkey: a file if one exists at that path, else
// the value itself as hex.
func loadAuditKey(arg string) ([]byte, error) {
	st, err := os.Stat(arg)
	if err != nil || !st.Mode().IsRegular() {
		pub, err := audit.ParsePublicKey([]byte(arg))
		if err != nil {
			return nil, usagef("audit verify: -pubkey is neither a key file nor 64 hex digits")
		}
		return pub, nil
	}
	f, err := os.Open(arg)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read -pubkey file: %w", err)
	}
	pub, err := audit.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("-pubkey file %s: %w", arg, err)
	}
	return pub, nil
}
