package main

import (
	"fmt"
)

// operatorRotateRoot runs the custodians' root rotation: `start` opens a
// session for a new dealing, each custodian runs `submit -nonce N` and
// pastes a current share on stdin, and the submission that completes the
// quorum prints the new shares, once.
func (c *cli) operatorRotateRoot(args []string) error {
	return c.dispatch("operator rotate-root", `Usage: keyd operator rotate-root <start|submit|status> [flags]

  start -custodians N -threshold T   open a rotation session (prints its nonce)
  submit -nonce NONCE                submit one current custodian share, read from stdin
  status                             show the session's progress
`, map[string]func([]string) error{
		"start":  c.rotateRootStart,
		"submit": c.rotateRootSubmit,
		"status": c.rotateRootStatus,
	}, args)
}

func (c *cli) rotateRootStart(args []string) error {
	fs := c.flags("operator rotate-root start", "-custodians N -threshold T [-addr A]")
	var cf clientFlags
	cf.register(fs)
	custodians := fs.Int("custodians", 5, "number of new custodian shares")
	threshold := fs.Int("threshold", 3, "new shares needed to unseal")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *threshold < 1 || *custodians < *threshold {
		return usagef("operator rotate-root start: need 1 <= -threshold <= -custodians")
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.StartRootRotation(c.ctx, *custodians, *threshold)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "Rotation nonce: %s\n%d current custodian shares are needed: each custodian runs\n  keyd operator rotate-root submit -nonce %s\nand pastes a share on stdin.\n", st.Nonce, st.Required, st.Nonce)
	return err
}

func (c *cli) rotateRootSubmit(args []string) error {
	fs := c.flags("operator rotate-root submit", "-nonce NONCE [-addr A]  (the share is read from stdin)")
	var cf clientFlags
	cf.register(fs)
	nonce := fs.String("nonce", "", "the session nonce printed by start")
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
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	fmt.Fprint(c.stderr, "Current share: ")
	share, err := readLine(c.stdin, maxShareLine)
	fmt.Fprintln(c.stderr)
	if err != nil || share == "" {
		return usagef("operator rotate-root submit: no share on stdin")
	}
	st, err := cl.SubmitRotationShare(c.ctx, *nonce, share)
	if err != nil {
		return err
	}
	w := &errWriter{w: c.stdout}
	if !st.Complete {
		w.printf("Rotation progress: %d of %d\n", st.Progress, st.Required)
		return w.err
	}
	fmt.Fprintf(c.stderr, "WARNING: the root was rotated. The %d new shares below are shown once; old shares no longer work.\n"+
		"Give each to a different custodian now; %d are needed to unseal.\n", st.Custodians, st.Threshold)
	for i, sh := range st.Shares {
		w.printf("Share %d: %s\n", i+1, sh)
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
