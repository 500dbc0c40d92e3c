package main

import (
	"fmt"

	"github.com/keyd/keyd/api"
)

// operatorRotateRoot runs the custodians' root rotation: `start` opens a
// session for a new dealing (with the new custodians' age public keys),
// each custodian runs `submit -nonce N` with a current share on stdin
// (decrypted locally with -identity), and the submission that completes
// the quorum prints the new shares, each encrypted to its new custodian,
// once.
func (c *cli) operatorRotateRoot(args []string) error {
	return c.dispatch("operator rotate-root", `Usage: keyd operator rotate-root <start|submit|status> [flags]

  start -custodian-keys K1,...,KN -threshold T
                                     open a rotation session (prints its nonce); the new
                                     shares are encrypted to these age public keys
  start -plaintext-shares -custodians N -threshold T
                                     rehearsals only: the new shares come back in the clear
  submit -nonce NONCE [-identity KEYFILE] [-in FILE] [-out-dir DIR]
                                     submit one current custodian share, read from stdin
                                     (decrypted here with -identity); the submission that
                                     completes the rotation prints the new encrypted shares
  status                             show the session's progress
`, map[string]func([]string) error{
		"start":  c.rotateRootStart,
		"submit": c.rotateRootSubmit,
		"status": c.rotateRootStatus,
	}, args)
}

func (c *cli) rotateRootStart(args []string) error {
	fs := c.flags("operator rotate-root start", "-custodian-keys K1,K2,... -threshold T [-addr A]\n"+
		"       keyd operator rotate-root start -plaintext-shares -custodians N -threshold T   (rehearsals only)")
	var cf clientFlags
	cf.register(fs)
	var df dealFlags
	fs.StringVar(&df.keys, "custodian-keys", "", "comma-separated age public keys (age1...) or files holding one, one per new custodian in share order; each new share is encrypted to its custodian")
	fs.BoolVar(&df.plaintext, "plaintext-shares", false, "deal the new shares in the clear to whoever completes the rotation (dev and rehearsals only)")
	custodians := fs.Int("custodians", 5, "number of new custodian shares (default: the number of -custodian-keys)")
	threshold := fs.Int("threshold", 3, "new shares needed to unseal")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	keys, n, err := df.resolve("operator rotate-root start", *custodians, flagSet(fs, "custodians"))
	if err != nil {
		return err
	}
	if *threshold < 1 || n < *threshold {
		return usagef("operator rotate-root start: need 1 <= -threshold <= the number of custodians (%d)", n)
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.StartRootRotationWith(c.ctx, api.RotateRootStart{Custodians: n, Threshold: *threshold, CustodianKeys: keys, PlaintextShares: df.plaintext})
	if err != nil {
		return err
	}
	w := &errWriter{w: c.stdout}
	w.printf("Rotation nonce: %s\n", st.Nonce)
	if len(keys) > 0 {
		w.printf("The %d new shares (%d needed to unseal) will be encrypted to:\n", n, *threshold)
		for i, k := range keys {
			w.printf("  share %d: %s\n", i+1, k)
		}
	} else {
		w.printf("WARNING: -plaintext-shares: whoever completes the rotation sees every new share in the clear.\n")
	}
	w.printf("%d current custodian shares are needed: each custodian runs\n"+
		"  keyd operator rotate-root submit -nonce %s -identity key.txt [-out-dir DIR] < share-N.age\n"+
		"(without -identity for a plaintext share on stdin).\n", st.Required, st.Nonce)
	return w.err
}

func (c *cli) rotateRootSubmit(args []string) error {
	fs := c.flags("operator rotate-root submit", "-nonce NONCE [-identity KEYFILE] [-in FILE] [-out-dir DIR] [-addr A]  (the share is read from stdin unless -in)")
	var cf clientFlags
	cf.register(fs)
	var src shareSource
	src.register(fs)
	nonce := fs.String("nonce", "", "the session nonce printed by start")
	outDir := fs.String("out-dir", "", "if this submission completes the rotation, write each new encrypted share to DIR/share-N.age (mode 0600) instead of printing it")
	pos, err := parseArgs(fs, args, -1)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("operator rotate-root submit: a share is never accepted as an argument; type or pipe it on stdin")
	}
	if *nonce == "" {
		return usagef("operator rotate-root submit: -nonce is required")
	}
	if err := prepareOutDir("operator rotate-root submit", *outDir); err != nil {
		return err
	}
	share, err := c.readShareFrom("operator rotate-root submit", src, "Current share: ")
	if err != nil {
		return err
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.SubmitRotationShare(c.ctx, *nonce, share)
	if err != nil {
		return err
	}
	w := &errWriter{w: c.stdout}
	if !st.Complete {
		w.printf("Rotation progress: %d of %d\n", st.Progress, st.Required)
		return w.err
	}
	switch {
	case len(st.EncryptedShares) > 0 || len(st.Shares) == 0:
		if err := checkSealedReply("operator rotate-root submit", st.Shares, st.EncryptedShares, st.Custodians); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "The root was rotated; old shares no longer work. Each new share below is encrypted to one new custodian's key\n"+
			"(in the order given to rotate-root start) and shown once. Send share N to custodian N; %d are needed to unseal.\n", st.Threshold)
		if err := c.emitSealed(w, *outDir, shareItems(st.EncryptedShares, nil)); err != nil {
			return err
		}
	default:
		if *outDir != "" {
			fmt.Fprintln(c.stderr, "note: the rotation was started with -plaintext-shares; -out-dir holds encrypted shares only, so the shares are printed")
		}
		fmt.Fprint(c.stderr, plaintextWarning)
		fmt.Fprintf(c.stderr, "The root was rotated. The %d new shares below are shown once; old shares no longer work.\n"+
			"Give each to a different custodian now; %d are needed to unseal.\n", st.Custodians, st.Threshold)
		for i, sh := range st.Shares {
			w.printf("Share %d: %s\n", i+1, sh)
		}
	}
	w.printf("Commitments fingerprint: %s\n", st.Fingerprint)
	return w.err
}

func (c *cli) rotateRootStatus(args []string) error {
	fs := c.flags("operator rotate-root status", "[-addr A]")
	var cf clientFlags
	cf.register(fs)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.RotateRootStatus(c.ctx)
	if err != nil {
		return err
	}
	if !st.Started {
		_, err = fmt.Fprintf(c.stdout, "No root rotation in progress (%d current shares needed to start one).\n", st.Required)
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "Rotation %s: %d of %d shares; new dealing %d of %d\n", st.Nonce, st.Progress, st.Required, st.Threshold, st.Custodians)
	return err
}
