package main

import (
	"fmt"
	"time"

	"github.com/keyd/keyd/api"
)

// operatorRotateRoot runs the custodians' root rotation: a custodian runs
// `start` with the new custodians' age public keys and their own current
// share, which opens the session and counts as its first submission;
// other custodians run `submit -nonce N` with theirs; the submission that
// completes the quorum prints the new shares, each encrypted to its new
// custodian, once. Shares are read from stdin or -in and, with -identity,
// decrypted on the custodian's machine.
func (c *cli) operatorRotateRoot(args []string) error {
	return c.dispatch("operator rotate-root", `Usage: keyd operator rotate-root <start|submit|cancel|status> [flags]

  start -custodian-keys K1,...,KN -threshold T [-identity KEYFILE] [-in FILE] [-out-dir DIR]
                                     open a rotation session with your current share (read
                                     from stdin; it counts as the first submission) and print
                                     its nonce; the new shares are encrypted to these age
                                     public keys (age1... or files holding one)
  start -plaintext-shares -custodians N -threshold T
                                     rehearsals only: the new shares come back in the clear
  submit -nonce NONCE [-identity KEYFILE] [-in FILE] [-out-dir DIR]
                                     submit one current custodian share, read from stdin
                                     (decrypted here with -identity); the submission that
                                     completes the rotation prints the new encrypted shares
                                     (or writes DIR/share-N.age)
  cancel [-identity KEYFILE] [-in FILE]
                                     end the running session with a current share
  status                             show the session: progress, new keys, expiry
`, map[string]func([]string) error{
		"start":  c.rotateRootStart,
		"submit": c.rotateRootSubmit,
		"cancel": c.rotateRootCancel,
		"status": c.rotateRootStatus,
	}, args)
}

func (c *cli) rotateRootStart(args []string) error {
	const cmd = "operator rotate-root start"
	fs := c.flags(cmd, "-custodian-keys K1,K2,... -threshold T [-identity KEYFILE] [-in FILE] [-out-dir DIR] [-addr A]  (your current share on stdin)\n"+
		"       keyd operator rotate-root start -plaintext-shares -custodians N -threshold T   (rehearsals only)")
	var cf clientFlags
	cf.register(fs)
	var df dealFlags
	df.register(fs)
	var src shareSource
	src.register(fs)
	custodians := fs.Int("custodians", 5, "number of new custodian shares (with -custodian-keys: the number of keys)")
	threshold := fs.Int("threshold", 3, "new shares needed to unseal")
	pos, err := parseArgs(fs, args, -1)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("%s: a share is never accepted as an argument; type or pipe it on stdin", cmd)
	}
	keys, n, err := df.resolve(cmd, *custodians, flagSet(fs, "custodians"))
	if err != nil {
		return err
	}
	if *threshold < 1 || n < *threshold {
		return usagef("%s: need 1 <= -threshold <= the number of custodians (%d)", cmd, n)
	}
	if err := prepareOutDir(cmd, df.outDir); err != nil {
		return err
	}
	share, err := c.readShareFrom(cmd, src, "Your current share: ")
	if err != nil {
		return err
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.StartRootRotationWith(c.ctx, api.RotateRootStart{Custodians: n, Threshold: *threshold, CustodianKeys: keys, PlaintextShares: df.plaintext, Share: share})
	if err != nil {
		return err
	}
	if st.Complete {
		// One current share was the whole quorum.
		c.settle(cl, &cf, st.Index)
		return c.printRotated(cmd, st, keys, df.outDir)
	}
	w := &errWriter{w: c.stdout}
	w.printf("Rotation nonce: %s\n", st.Nonce)
	if len(keys) > 0 {
		w.printf("The %d new shares (%d needed to unseal) will be encrypted to:\n", n, *threshold)
		for i, k := range keys {
			w.printf("  share %d: %s\n", i+1, keyLabel(k))
		}
	} else {
		w.printf("WARNING: -plaintext-shares: whoever completes the rotation sees every new share in the clear.\n")
	}
	w.printf("Progress: %d of %d current shares (yours counted). Each other custodian runs\n"+
		"  keyd operator rotate-root submit -nonce %s -identity key.txt [-out-dir DIR] < share-N.age\n"+
		"(without -identity for a plaintext share on stdin).\n", st.Progress, st.Required, st.Nonce)
	return w.err
}

func (c *cli) rotateRootSubmit(args []string) error {
	const cmd = "operator rotate-root submit"
	fs := c.flags(cmd, "-nonce NONCE [-identity KEYFILE] [-in FILE] [-out-dir DIR] [-addr A]  (the share is read from stdin unless -in)")
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
		return usagef("%s: a share is never accepted as an argument; type or pipe it on stdin", cmd)
	}
	if *nonce == "" {
		return usagef("%s: -nonce is required", cmd)
	}
	if err := prepareOutDir(cmd, *outDir); err != nil {
		return err
	}
	share, err := c.readShareFrom(cmd, src, "Current share: ")
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
	if !st.Complete {
		_, err := fmt.Fprintf(c.stdout, "Rotation progress: %d of %d\n", st.Progress, st.Required)
		return err
	}
	// Let every node apply the new commitments first: until then a node
	// refuses the new shares.
	c.settle(cl, &cf, st.Index)
	return c.printRotated(cmd, st, nil, *outDir)
}

// printRotated prints the reply that completed a rotation: the new shares
// encrypted to the session's keys (keys, when the caller knows them, else
// the ones the reply names), or in the clear with a warning for a session
// opened with -plaintext-shares. Plaintext shares from a session that had
// custodian keys are refused unseen.
func (c *cli) printRotated(cmd string, st *api.RotateRootStatus, keys []string, outDir string) error {
	if len(keys) == 0 {
		keys = st.CustodianKeys
	}
	w := &errWriter{w: c.stdout}
	var emitErr error // -out-dir could not be written; all was printed instead
	if len(st.EncryptedShares) > 0 || len(keys) > 0 || len(st.Shares) == 0 {
		if err := checkSealedReply(cmd, st.Shares, st.EncryptedShares, st.Custodians); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "The root was rotated; old shares no longer work. Each new share below is encrypted to one new custodian's key\n"+
			"and shown once. Send share N to custodian N; %d are needed to unseal.\n", st.Threshold)
		emitErr = c.emitSealed(w, outDir, shareItems(st.EncryptedShares, keys))
	} else {
		if outDir != "" {
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
	if w.err != nil {
		return w.err
	}
	return emitErr
}

func (c *cli) rotateRootCancel(args []string) error {
	const cmd = "operator rotate-root cancel"
	fs := c.flags(cmd, "[-identity KEYFILE] [-in FILE] [-addr A]  (a current share on stdin)")
	var cf clientFlags
	cf.register(fs)
	var src shareSource
	src.register(fs)
	pos, err := parseArgs(fs, args, -1)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("%s: a share is never accepted as an argument; type or pipe it on stdin", cmd)
	}
	share, err := c.readShareFrom(cmd, src, "Current share: ")
	if err != nil {
		return err
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := cl.CancelRootRotation(c.ctx, share); err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.stdout, "Rotation cancelled")
	return err
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
	w := &errWriter{w: c.stdout}
	w.printf("Rotation: %d of %d shares; new dealing %d of %d\n", st.Progress, st.Required, st.Threshold, st.Custodians)
	if st.ExpiresAt != nil {
		w.printf("Expires: %s\n", st.ExpiresAt.UTC().Format(time.RFC3339))
	}
	switch {
	case len(st.CustodianKeys) > 0:
		w.printf("New shares will be encrypted to (check yours before you submit):\n")
		for i, k := range st.CustodianKeys {
			w.printf("  share %d: %s\n", i+1, keyLabel(k))
		}
	case st.PlaintextShares:
		w.printf("WARNING: the new shares will be shown in the clear to whoever completes the rotation (-plaintext-shares).\n")
	}
	return w.err
}
