package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestRotateRootApprovalEndToEnd is the one-custodian attacker through
// the CLI on a real cluster: custodian 1 starts a rotation whose three
// new keys are all their own. Custodian 2 was told of three honest keys
// and approves that dealing: the CLI shows the session's real keys and
// digest and sends nothing; the server, asked directly, refuses the share
// (conflict) and does not count it; without -approve off a terminal
// nothing is sent. Only approving the session's own digest adds a share.
func TestRotateRootApprovalEndToEnd(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, testcluster.Options{Nodes: 1})
	cl.Init(t, 5, 3)
	cl.Unseal(t, 3)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, cl.CA.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{envAddr: strings.Join(cl.Addrs(), ","), envCACert: ca}
	keys := newCustodians(t, 6)
	attacker, honest := keys[:3], keys[3:]
	specs := func(ks []custodianKey) []string {
		var out []string
		for _, k := range ks {
			out = append(out, k.pub)
		}
		return out
	}

	out, errOut, err := runCmdErr(t, env, cl.Shares[0], "operator", "rotate-root", "start", "-custodian-keys", strings.Join(specs(attacker), ","), "-threshold", "2")
	if err != nil {
		t.Fatalf("start: %v\n%s", err, errOut)
	}
	nonce, sessionDigest := outputValue(t, out, "Rotation nonce: "), outputValue(t, out, "Rotation digest: ")
	status, err := runCmd(t, env, "", "operator", "rotate-root", "status")
	if err != nil {
		t.Fatal(err)
	}
	prev := outputValue(t, status, "Rotating from commitments: ")
	if outputValue(t, status, "Digest: ") != sessionDigest {
		t.Fatalf("status digest differs from the start's:\n%s", status)
	}
	told := api.RotationDigest(prev, 3, 2, specs(honest), false)

	// Custodian 2 approves the honest list: refused before anything is
	// sent, and the review shows the attacker's keys.
	_, errOut, err = runCmdErr(t, env, cl.Shares[1], "operator", "rotate-root", "submit", "-nonce", nonce, "-approve", told)
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("submit approving the honest list: %v", err)
	}
	for _, k := range attacker {
		if !strings.Contains(errOut, k.pub) {
			t.Fatalf("the review does not show the session's key %s:\n%s", k.pub, errOut)
		}
	}
	// Without -approve, off a terminal: a usage error, nothing sent.
	if _, _, err := runCmdErr(t, env, cl.Shares[1], "operator", "rotate-root", "submit", "-nonce", nonce); exitCode(err) != 2 {
		t.Fatalf("submit without -approve: %v", err)
	}
	// A client that skips the CLI's check is refused by the server and
	// its share is not counted.
	c := cl.Client(t)
	if _, err := c.SubmitRotationShare(t.Context(), api.RotateRootSubmit{Nonce: nonce, Share: cl.Shares[1], Approve: told}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("server, share approving the honest list: got %v", err)
	}
	if _, err := c.SubmitRotationShare(t.Context(), api.RotateRootSubmit{Nonce: nonce, Share: cl.Shares[2]}); err == nil {
		t.Fatal("server accepted a share without an approval")
	}
	if st, err := c.RotateRootStatus(t.Context()); err != nil || st.Progress != 1 {
		t.Fatalf("refused shares were counted: %+v, %v", st, err)
	}
	// Approving the session's exact dealing counts the share.
	if out, errOut, err = runCmdErr(t, env, cl.Shares[1], "operator", "rotate-root", "submit", "-nonce", nonce, "-approve", sessionDigest); err != nil || !strings.Contains(out, "progress: 2 of 3") {
		t.Fatalf("approved submit: %q, %v\n%s", out, err, errOut)
	}
}

// TestConfirmDigest: the interactive approval takes the digest's first 8
// hex characters (any case) and nothing else, and leaves the input after
// its line unread (the share follows on the same terminal).
func TestConfirmDigest(t *testing.T) {
	t.Parallel()
	digest := api.RotationDigest("fp", 3, 2, []string{"k"}, false)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{digest[:8] + "\nshare", true},
		{strings.ToUpper(digest[:8]) + "\r\n", true},
		{"  " + digest[:8] + "  \n", true},
		{digest[:7] + "\n", false},
		{digest[:9] + "\n", false},
		{digest + "\n", false},
		{"yes\n", false},
		{"", false},
		{strings.Repeat("a", 10000), false},
	} {
		r := strings.NewReader(tc.in)
		var prompt strings.Builder
		err := confirmDigest(r, &prompt, digest)
		if (err == nil) != tc.ok {
			t.Fatalf("input %.20q: err %v, want ok=%v", tc.in, err, tc.ok)
		}
		if !strings.Contains(prompt.String(), "first 8") {
			t.Fatalf("prompt %q", prompt.String())
		}
		if tc.ok && strings.HasSuffix(tc.in, "share") {
			rest := make([]byte, 16)
			n, _ := r.Read(rest)
			if string(rest[:n]) != "share" {
				t.Fatalf("the confirmation consumed the share: rest %q", rest[:n])
			}
		}
	}
}
