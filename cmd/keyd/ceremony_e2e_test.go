package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/internal/testcluster"
)

// TestCustodianCeremonyEndToEnd runs the issue 9 ceremony against a real
// in-process 3-node cluster through the CLI code paths: init with 5
// custodian public keys (as strings and as files) and an admin key; the
// operator's output holds no share in the clear; each custodian decrypts
// only their own block; any 3 custodians unseal with `operator unseal
// -identity` sent to exactly the node named by -addr; a duplicate share
// and a share sent to an unsealed node are reported as ignored. Then a
// root rotation to 5 new custodian keys: the completing submitter sees
// only ciphertexts, and after a seal the new custodians unseal with any 3.
func TestCustodianCeremonyEndToEnd(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, testcluster.Options{Nodes: 3})
	cl.WaitLeader(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, cl.CA.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := cl.Addrs()
	env := map[string]string{envAddr: strings.Join(addrs, ","), envCACert: ca}
	keys := newCustodians(t, 11)
	cust, admin, next := keys[:5], keys[5], keys[6:]

	// Init: the operator relays ciphertexts only.
	specs := []string{cust[0].pub, cust[1].pubFile, cust[2].pub, cust[3].pubFile, cust[4].pub}
	out, errOut, err := runCmdErr(t, env, "", "operator", "init", "-custodian-keys", strings.Join(specs, ","), "-threshold", "3", "-admin-key", admin.pub)
	if err != nil {
		t.Fatalf("operator init: %v\n%s", err, errOut)
	}
	if strings.Contains(out+errOut, sharePrefix) || strings.Contains(out, "Admin token: kd_") {
		t.Fatalf("the init output holds a secret in the clear:\n%s\n%s", out, errOut)
	}
	blocks := armoredBlocks(t, out)
	for i, k := range cust {
		if _, ok := blocks["Share "+strconv.Itoa(i+1)+" for custodian "+k.pub]; !ok {
			t.Fatalf("no block for custodian %d:\n%s", i+1, out)
		}
	}
	checkOwnBlocksOnly(t, cust, byShareNumber(t, blocks))
	tok, err := admin.identity.Decrypt(blocks["Admin token for "+admin.pub])
	if err != nil || !strings.HasPrefix(string(tok), "kd_") {
		t.Fatalf("admin token block: %v", err)
	}
	env[envToken] = string(tok)
	// Each custodian keeps their message as the file they were sent.
	files := make([]string, len(cust))
	dir := t.TempDir()
	for i, b := range byShareNumber(t, blocks) {
		files[i-1] = filepath.Join(dir, "share-"+strconv.Itoa(i)+".age")
		if err := os.WriteFile(files[i-1], []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Unseal with custodians 2, 4 and 5, each through n2 by -addr while
	// KEYD_ADDR lists n1 first.
	target := addrs[1]
	unseal := func(k custodianKey, file string) (string, string, error) {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return runCmdErr(t, env, string(b), "operator", "unseal", "-identity", k.idFile, "-addr", target)
	}
	out, errOut, err = unseal(cust[1], files[1])
	if err != nil || !strings.Contains(out, "Node n2 ") || !strings.Contains(out, "progress 1 of 3") {
		t.Fatalf("unseal 1: %q, %v\n%s", out, err, errOut)
	}
	// The same custodian again: ignored, said so, exit 3.
	out, errOut, err = unseal(cust[1], files[1])
	if exitCode(err) != exitShareIgnored || !strings.Contains(errorLine(err), "share ignored") || !strings.Contains(out, "progress 1 of 3") {
		t.Fatalf("duplicate share: exit %d (%v), out %q\n%s", exitCode(err), err, out, errOut)
	}
	// Someone else's file with custodian 4's key: refused locally.
	if _, _, err := unseal(cust[3], files[2]); !errors.Is(err, errNotForIdentity) {
		t.Fatalf("someone else's share: got %v", err)
	}
	if out, errOut, err = unseal(cust[3], files[3]); err != nil || !strings.Contains(out, "progress 2 of 3") {
		t.Fatalf("unseal 2: %q, %v\n%s", out, err, errOut)
	}
	if out, errOut, err = unseal(cust[4], files[4]); err != nil || !strings.Contains(out, "Node n2 ") || !strings.Contains(out, "Unsealed") {
		t.Fatalf("unseal 3: %q, %v\n%s", out, err, errOut)
	}
	cl.WaitUnsealed(t)
	// A share sent to an unsealed node: a note, exit 0.
	if out, errOut, err = unseal(cust[0], files[0]); err != nil || !strings.Contains(errOut, "share ignored") || !strings.Contains(out, "Unsealed") {
		t.Fatalf("share to an unsealed node: %q, %v\n%s", out, err, errOut)
	}
	if _, err := runCmd(t, env, "", "key", "create", "k1"); err != nil {
		t.Fatalf("key create with the decrypted admin token: %v", err)
	}
	ct, err := runCmd(t, env, "kept across the rotation", "key", "encrypt", "k1")
	if err != nil {
		t.Fatalf("key encrypt: %v", err)
	}

	// Root rotation to 5 new custodians: custodian 1 starts, 3 and 5
	// submit; the completing submitter sees ciphertexts only.
	nextSpecs := make([]string, len(next))
	for i, k := range next {
		nextSpecs[i] = k.pub
		if i%2 == 1 {
			nextSpecs[i] = k.pubFile
		}
	}
	b0, _ := os.ReadFile(files[0])
	out, errOut, err = runCmdErr(t, env, string(b0), "operator", "rotate-root", "start", "-custodian-keys", strings.Join(nextSpecs, ","), "-threshold", "3", "-identity", cust[0].idFile)
	if err != nil {
		t.Fatalf("rotate-root start: %v\n%s", err, errOut)
	}
	nonce, digest := outputValue(t, out, "Rotation nonce: "), outputValue(t, out, "Rotation digest: ")
	b2, _ := os.ReadFile(files[2])
	if out, errOut, err = runCmdErr(t, env, string(b2), "operator", "rotate-root", "submit", "-nonce", nonce, "-approve", digest, "-identity", cust[2].idFile); err != nil || !strings.Contains(out, "progress") {
		t.Fatalf("rotate-root submit: %q, %v\n%s", out, err, errOut)
	}
	b4, _ := os.ReadFile(files[4])
	outDir := filepath.Join(t.TempDir(), "new")
	out, errOut, err = runCmdErr(t, env, string(b4), "operator", "rotate-root", "submit", "-nonce", nonce, "-approve", digest, "-identity", cust[4].idFile, "-out-dir", outDir)
	if err != nil {
		t.Fatalf("completing submit: %v\n%s", err, errOut)
	}
	if strings.Contains(out+errOut, sharePrefix) {
		t.Fatalf("the completing submitter saw a share in the clear:\n%s\n%s", out, errOut)
	}
	newBlocks := map[int]string{}
	for i := range next {
		p := filepath.Join(outDir, "share-"+strconv.Itoa(i+1)+".age")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (output %q)", err, out)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v", p, fi.Mode().Perm())
		}
		newBlocks[i+1] = string(b)
	}
	checkOwnBlocksOnly(t, next, newBlocks)

	// Seal, then the new custodians 1, 3 and 4 unseal through n1.
	if _, err := runCmd(t, env, "", "operator", "seal"); err != nil {
		t.Fatalf("operator seal: %v", err)
	}
	cl.Eventually(t, 15*time.Second, func() error {
		for i := range addrs {
			if n := cl.Node(i); n != nil && !n.Sealed() {
				return os.ErrExist
			}
		}
		return nil
	})
	target = addrs[0]
	for j, i := range []int{0, 2, 3} {
		out, errOut, err = runCmdErr(t, env, newBlocks[i+1], "operator", "unseal", "-identity", next[i].idFile, "-addr", target)
		if err != nil {
			t.Fatalf("unseal with new share %d: %v\n%s", i+1, err, errOut)
		}
		if j == 2 && !strings.Contains(out, "Unsealed") {
			t.Fatalf("after 3 new shares: %q", out)
		}
	}
	cl.WaitUnsealed(t)
	if got, err := runCmd(t, env, ct, "key", "decrypt", "k1"); err != nil || got != "kept across the rotation" {
		t.Fatalf("decrypt after rotation and unseal: %q, %v", got, err)
	}
}

// outputValue returns the rest of the output line that starts with
// prefix.
func outputValue(t *testing.T, out, prefix string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok && v != "" {
			return v
		}
	}
	t.Fatalf("no %q line in %q", prefix, out)
	return ""
}
