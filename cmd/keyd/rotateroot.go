package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/keyd/keyd/api"
)

// operatorRotateRoot runs the custodians' root rotation: a custodian runs
// `start` with the new custodians' age public keys and their own current
// share, which opens the session and counts as its first submission;
// other custodians run `submit -nonce N` with theirs, after checking the
// session's dealing (new keys, N, T, plaintext flag) and approving its
// digest; the submission that completes the quorum prints the new shares,
// each encrypted to its new custodian, once. Shares are read from stdin
// or -in and, with -identity, decrypted on the custodian's machine.
func (c *cli) operatorRotateRoot(args []string) error {
	return c.dispatch("operator rotate-root", `Usage: keyd operator rotate-root <start|submit|cancel|status> [flags]

  start -custodian-keys K1,...,KN -threshold T [-identity KEYFILE] [-in FILE] [-out-dir DIR]
                                     open a rotation session with your current share (read
                                     from stdin; it counts as the first submission) and print
                                     its nonce and digest; the new shares are encrypted to these age
                                     public keys (age1... or files holding one)
  start -plaintext-shares -custodians N -threshold T
                                     rehearsals only: the new shares come back in the clear
  submit -nonce NONCE [-approve DIGEST] [-identity KEYFILE] [-in FILE] [-out-dir DIR]
                                     show the session's dealing (N, T, each new custodian
                                     key, the plaintext flag) and its digest, then submit one
                                     current custodian share, read from stdin (decrypted here
                                     with -identity), approving exactly that dealing: with
                                     -approve DIGEST, or on a terminal by typing the digest's
                                     first 8 hex characters. Compare the keys with the list
                                     agreed out of band first. The submission that completes
                                     the rotation prints the new encrypted shares (or writes
                                     DIR/share-N.age)
  cancel [-identity KEYFILE] [-in FILE]
                                     end the running session with a current share
  status                             show the session: progress, new keys, expiry, digest
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
	// The starter approves the dealing they ask for: its digest covers the
	// current root, so it is computed from the server's fingerprint.
	cur, err := cl.RotateRootStatus(c.ctx)
	if err != nil {
		return err
	}
	if cur.PrevFingerprint == "" {
		return fmt.Errorf("%s: the server does not report its commitments fingerprint, so the rotation cannot be approved (a keyd without rotation approvals?); nothing was sent", cmd)
	}
	req := api.RotateRootStart{Custodians: n, Threshold: *threshold, CustodianKeys: keys, PlaintextShares: df.plaintext, Share: share}
	digest := api.RotationDigest(cur.PrevFingerprint, req.Custodians, req.Threshold, req.CustodianKeys, req.PlaintextShares)
	req.Approve = digest
	st, err := cl.StartRootRotationWith(c.ctx, req)
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
	w.printf("Rotation digest: %s\n", digest)
	w.printf("Progress: %d of %d current shares (yours counted). Each other custodian checks the new keys\n"+
		"against the list agreed out of band, then runs\n"+
		"  keyd operator rotate-root submit -nonce %s -approve %s -identity key.txt [-out-dir DIR] < share-N.age\n"+
		"(without -identity for a plaintext share on stdin; without -approve on a terminal to confirm interactively).\n", st.Progress, st.Required, st.Nonce, digest)
	return w.err
}

func (c *cli) rotateRootSubmit(args []string) error {
	const cmd = "operator rotate-root submit"
	fs := c.flags(cmd, "-nonce NONCE [-approve DIGEST] [-identity KEYFILE] [-in FILE] [-out-dir DIR] [-addr A]  (the share is read from stdin unless -in)")
	var cf clientFlags
	cf.register(fs)
	var src shareSource
	src.register(fs)
	nonce := fs.String("nonce", "", "the session nonce printed by start")
	approve := fs.String("approve", "", "the session digest you approve, after checking its new custodian keys, N, T and plaintext flag (without it, a terminal asks for the digest's first 8 hex characters)")
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
	interactive := *approve == "" && c.stdinIsTerminal()
	if *approve == "" && !interactive {
		return usagef("%s: -approve DIGEST is required when stdin is not a terminal: run `keyd operator rotate-root status`, check the new custodian keys against the list agreed out of band, and pass the digest it shows", cmd)
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	// Review before the share is read: the custodian approves exactly the
	// dealing shown here, and the server counts the share only for it.
	cur, err := cl.RotateRootStatus(c.ctx)
	if err != nil {
		return err
	}
	digest, err := c.reviewRotation(cmd, cur)
	if err != nil {
		return err
	}
	if interactive {
		if err := confirmDigest(c.stdin, c.stderr, digest); err != nil {
			return fmt.Errorf("%s: %w; nothing was sent", cmd, err)
		}
	} else if !api.SameRotationDigest(*approve, digest) {
		return fmt.Errorf("%s: -approve %s does not match the running session's digest %s: this is not the dealing you approved (compare the keys above with the agreed list); nothing was sent", cmd, *approve, digest)
	}
	share, err := c.readShareFrom(cmd, src, "Current share: ")
	if err != nil {
		return err
	}
	st, err := cl.SubmitRotationShare(c.ctx, api.RotateRootSubmit{Nonce: *nonce, Share: share, Approve: digest})
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
	// The digest custodians approve, computed here from what is shown.
	digest := api.RotationDigest(st.PrevFingerprint, st.Custodians, st.Threshold, st.CustodianKeys, st.PlaintextShares)
	w.printf("Rotating from commitments: %s\n", st.PrevFingerprint)
	w.printf("Digest: %s\n", digest)
	if st.Digest != digest {
		w.printf("WARNING: the server reports digest %q for this session, not the digest of what it shows: do not submit.\n", st.Digest)
	}
	return w.err
}

// reviewRotation prints the running session's dealing for a custodian to
// check (to stderr): N, T, each new custodian key (with its OpenPGP
// fingerprint where it is one), the plaintext flag and the digest. The
// digest is computed here from what is printed, never taken from the
// server: a server reporting another digest for these parameters is
// refused.
func (c *cli) reviewRotation(cmd string, st *api.RotateRootStatus) (string, error) {
	if !st.Started {
		return "", fmt.Errorf("%s: no root rotation is in progress; nothing was sent", cmd)
	}
	if st.PrevFingerprint == "" {
		return "", fmt.Errorf("%s: the server does not report its commitments fingerprint, so the rotation cannot be approved (a keyd without rotation approvals?); nothing was sent", cmd)
	}
	digest := api.RotationDigest(st.PrevFingerprint, st.Custodians, st.Threshold, st.CustodianKeys, st.PlaintextShares)
	if st.Digest != digest {
		return "", fmt.Errorf("%s: the server's session digest %q is not the digest of the parameters it shows (%s); nothing was sent", cmd, st.Digest, digest)
	}
	w := &errWriter{w: c.stderr}
	w.printf("Root rotation to approve (rotating from commitments %s):\n", st.PrevFingerprint)
	w.printf("  new custodians (N): %d\n  new threshold (T):  %d\n", st.Custodians, st.Threshold)
	if st.Threshold == 1 && st.Custodians > 1 {
		w.printf("  WARNING: threshold 1: each new custodian alone can unseal the cluster.\n")
	}
	if st.PlaintextShares {
		w.printf("  plaintext_shares: true\n  WARNING: the new shares will be shown in the clear to whoever completes the rotation.\n")
	} else {
		w.printf("  plaintext_shares: false\n  new shares will be encrypted to, in share order:\n")
		for i, k := range st.CustodianKeys {
			w.printf("    share %d: %s\n", i+1, keyLabel(k))
		}
	}
	if st.ExpiresAt != nil {
		w.printf("  session expires: %s\n", st.ExpiresAt.UTC().Format(time.RFC3339))
	}
	w.printf("  digest: %s\n", digest)
	w.printf("Check every key against the list the new custodians gave you out of band before you approve.\n")
	return digest, w.err
}

// stdinIsTerminal reports whether stdin is an interactive terminal.
func (c *cli) stdinIsTerminal() bool {
	f, ok := c.stdin.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// approvePrefix is how many hex characters of the digest a custodian
// types to approve a rotation interactively.
const approvePrefix = 8

// confirmDigest asks on prompt for the first approvePrefix hex characters
// of digest and reads one line from r, a byte at a time so that the share
// that follows on the same input is left unread.
func confirmDigest(r io.Reader, prompt io.Writer, digest string) error {
	fmt.Fprintf(prompt, "Type the first %d characters of the digest to approve this rotation: ", approvePrefix)
	var line []byte
	var b [1]byte
	for len(line) <= 4*approvePrefix {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("read approval: %w", err)
		}
	}
	got := strings.ToLower(strings.TrimSpace(string(line)))
	if len(got) != approvePrefix || got != digest[:approvePrefix] {
		return errors.New("the rotation was not approved (the characters typed are not the digest's first " + fmt.Sprint(approvePrefix) + ")")
	}
	return nil
}
