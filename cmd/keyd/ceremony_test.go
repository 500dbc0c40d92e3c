package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"filippo.io/age"
	"github.com/ProtonMail/go-crypto/openpgp"
	pgparmor "github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/custodian"
)

// custodianKey is one test custodian: an age identity, its identity file
// and a file holding its public key.
type custodianKey struct {
	id       *age.X25519Identity
	pub      string // age1...
	idFile   string // AGE-SECRET-KEY-1... file, as age-keygen writes it
	pubFile  string // age1... file, as age-keygen -y writes it
	identity *custodian.Identity
}

func newCustodians(t *testing.T, n int) []custodianKey {
	t.Helper()
	dir := t.TempDir()
	out := make([]custodianKey, n)
	for i := range out {
		x, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		k := custodianKey{id: x, pub: x.Recipient().String()}
		k.idFile = filepath.Join(dir, "key"+string(rune('1'+i))+".txt")
		k.pubFile = filepath.Join(dir, "key"+string(rune('1'+i))+".pub")
		if err := os.WriteFile(k.idFile, []byte("# created: test\n# public key: "+k.pub+"\n"+x.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(k.pubFile, []byte(k.pub+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if k.identity, err = custodian.LoadIdentity(k.idFile); err != nil {
			t.Fatal(err)
		}
		out[i] = k
	}
	return out
}

// ceremonyStub is a TLS node stub that follows the custodian-key contract
// of the server (a local stand-in for the real leader): init and
// rotate-root encrypt each share to the request's keys, refuse a request
// without keys unless plaintext shares are asked for, and unseal records
// the shares it gets.
type ceremonyStub struct {
	srv *httptest.Server
	// plaintextAnyway makes init reply with plaintext shares whatever the
	// request says (a server that ignores custodian keys).
	plaintextAnyway bool
	requests        atomic.Int64
	mu              sync.Mutex
	shares          []string // dealt by init or the rotation
	lastInit        api.InitRequest
	rotation        api.RotateRootStart
	submitted       []string // unseal and rotation submissions
	submitCalls     int      // rotation submissions received, refused or not
}

func newCeremonyStub(t *testing.T) *ceremonyStub {
	t.Helper()
	s := &ceremonyStub{}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *ceremonyStub) addr() string { return strings.TrimPrefix(s.srv.URL, "https://") }

func (s *ceremonyStub) env(t *testing.T) map[string]string {
	return map[string]string{envAddr: s.addr(), envCACert: caFile(t, s.srv)}
}

func stubError(w http.ResponseWriter, code api.Code, msg string) {
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(&api.Error{Code: code, Message: msg})
}

// deal returns n fresh shares, encrypted to keys when given.
func (s *ceremonyStub) deal(n int, keys []string, plaintext bool) (plain, enc []string, err error) {
	s.shares = nil
	for i := range n {
		s.shares = append(s.shares, testShare+string(rune('A'+i))+randomTag())
	}
	if len(keys) == 0 || plaintext {
		return append([]string(nil), s.shares...), nil, nil
	}
	rs, err := custodian.ParseRecipients(keys)
	if err != nil {
		return nil, nil, err
	}
	for i, r := range rs {
		m, err := custodian.Encrypt(r, []byte(s.shares[i]))
		if err != nil {
			return nil, nil, err
		}
		enc = append(enc, m)
	}
	return nil, enc, nil
}

// stubFingerprint is the stand-in's current commitments fingerprint.
const stubFingerprint = "fp0"

// stubDigest is the digest a rotation started with in is approved by.
func stubDigest(in api.RotateRootStart) string {
	return api.RotationDigest(stubFingerprint, in.Custodians, in.Threshold, in.CustodianKeys, in.PlaintextShares)
}

func randomTag() string {
	x, _ := age.GenerateX25519Identity()
	return x.Recipient().String()[5:15]
}

func (s *ceremonyStub) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case api.PathStatus:
		json.NewEncoder(w).Encode(&api.SealStatus{NodeID: "n1", Initialized: true, Sealed: true, Threshold: 3, Applied: 1 << 40})
	case api.PathInit:
		var in api.InitRequest
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			stubError(w, api.CodeBadRequest, "bad json")
			return
		}
		s.lastInit = in
		if len(in.CustodianKeys) == 0 && !in.PlaintextShares {
			stubError(w, api.CodeBadRequest, "custodian_keys required")
			return
		}
		plain, enc, err := s.deal(in.Custodians, in.CustodianKeys, in.PlaintextShares || s.plaintextAnyway)
		if err != nil {
			stubError(w, api.CodeBadRequest, err.Error())
			return
		}
		res := api.InitResponse{Shares: plain, EncryptedShares: enc, AdminToken: "kd_stubadmintoken", Fingerprint: "fp", Index: 7}
		if in.AdminKey != "" {
			rc, _ := custodian.ParseRecipient(in.AdminKey)
			res.EncryptedAdminToken, _ = custodian.Encrypt(rc, []byte(res.AdminToken))
			res.AdminToken = ""
		}
		json.NewEncoder(w).Encode(&res)
	case api.PathUnseal:
		var in api.UnsealRequest
		json.NewDecoder(r.Body).Decode(&in)
		s.submitted = append(s.submitted, in.Share)
		json.NewEncoder(w).Encode(&api.SealStatus{NodeID: "n1", Initialized: true, Sealed: true, Progress: len(s.submitted), Threshold: 3})
	case api.PathRotateRootStart:
		var in api.RotateRootStart
		json.NewDecoder(r.Body).Decode(&in)
		if len(in.CustodianKeys) == 0 && !in.PlaintextShares {
			stubError(w, api.CodeBadRequest, "custodian_keys required")
			return
		}
		if !strings.HasPrefix(in.Share, sharePrefix) {
			stubError(w, api.CodeBadRequest, "a current share is required")
			return
		}
		if in.Approve != stubDigest(in) {
			stubError(w, api.CodeConflict, "approve does not match")
			return
		}
		s.rotation = in
		s.submitted = append(s.submitted, in.Share)
		json.NewEncoder(w).Encode(&api.RotateRootStatus{Started: true, Nonce: "nonce1", Progress: 1, Required: 2, Custodians: in.Custodians, Threshold: in.Threshold,
			Digest: in.Approve, PrevFingerprint: stubFingerprint})
	case api.PathRotateRoot:
		st := api.RotateRootStatus{Required: 2, PrevFingerprint: stubFingerprint}
		if in := s.rotation; in.Share != "" {
			st.Started, st.Progress, st.Custodians, st.Threshold = true, 1, in.Custodians, in.Threshold
			st.CustodianKeys, st.PlaintextShares, st.Digest = in.CustodianKeys, in.PlaintextShares, stubDigest(in)
		}
		json.NewEncoder(w).Encode(&st)
	case api.PathRotateRootCancel:
		var in api.RotateRootCancel
		json.NewDecoder(r.Body).Decode(&in)
		s.submitted = append(s.submitted, in.Share)
		json.NewEncoder(w).Encode(&api.RotateRootStatus{Required: 2})
	case api.PathRotateRootSubmit:
		var in api.RotateRootSubmit
		json.NewDecoder(r.Body).Decode(&in)
		s.submitCalls++
		if s.rotation.Share == "" || in.Approve != stubDigest(s.rotation) {
			stubError(w, api.CodeConflict, "approve does not match")
			return
		}
		s.submitted = append(s.submitted, in.Share)
		plain, enc, err := s.deal(s.rotation.Custodians, s.rotation.CustodianKeys, s.rotation.PlaintextShares)
		if err != nil {
			stubError(w, api.CodeBadRequest, err.Error())
			return
		}
		json.NewEncoder(w).Encode(&api.RotateRootStatus{Started: true, Complete: true, Progress: 2, Required: 2, Custodians: s.rotation.Custodians,
			Threshold: s.rotation.Threshold, Shares: plain, EncryptedShares: enc, Fingerprint: "fp2"})
	default:
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(&api.Error{Code: api.CodeNotFound, Message: "no route"})
	}
}

// TestOperatorInitRefusals: init without custodian keys (and without the
// explicit plaintext flag), or with keys that cannot be right, is refused
// before anything is sent; no key material is echoed.
func TestOperatorInitRefusals(t *testing.T) {
	t.Parallel()
	ks := newCustodians(t, 3)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "share-1.age"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := ks[0].pub + "," + ks[1].pub + "," + ks[2].pub
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{name: "no keys", args: []string{"-custodians", "3", "-threshold", "2"}, want: "-custodian-keys"},
		{name: "both", args: []string{"-custodian-keys", keys, "-plaintext-shares"}, want: "exclude each other"},
		{name: "count mismatch", args: []string{"-custodian-keys", keys, "-custodians", "5"}, want: "lists 3 keys"},
		{name: "threshold too high", args: []string{"-custodian-keys", keys, "-threshold", "4"}, want: "threshold"},
		{name: "duplicate key", args: []string{"-custodian-keys", ks[0].pub + "," + ks[0].pubFile + "," + ks[1].pub}, want: "same key"},
		{name: "private key file", args: []string{"-custodian-keys", ks[0].idFile + "," + ks[1].pub + "," + ks[2].pub}, want: "private key"},
		{name: "private key string", args: []string{"-custodian-keys", ks[0].id.String() + "," + ks[1].pub + "," + ks[2].pub}, want: "private key"},
		{name: "not a key", args: []string{"-custodian-keys", "age1nope," + ks[1].pub + "," + ks[2].pub}, want: "custodian key 1"},
		{name: "missing file", args: []string{"-custodian-keys", filepath.Join(full, "nope.pub") + "," + ks[1].pub + "," + ks[2].pub}, want: "custodian key 1"},
		{name: "bad admin key", args: []string{"-custodian-keys", keys, "-threshold", "2", "-admin-key", ks[0].idFile}, want: "-admin-key"},
		{name: "out-dir with plaintext", args: []string{"-plaintext-shares", "-out-dir", t.TempDir()}, want: "-out-dir"},
		{name: "out-dir not empty", args: []string{"-custodian-keys", keys, "-threshold", "2", "-out-dir", full}, want: "share-1.age"},
		{name: "json and out-dir", args: []string{"-custodian-keys", keys, "-threshold", "2", "-json", "-out-dir", t.TempDir()}, want: "-json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newCeremonyStub(t)
			c, out, errb := testCLI(t.Context(), s.env(t), failReader{t})
			err := c.run(append([]string{"operator", "init"}, tt.args...))
			if got := exitCode(err); got != 2 {
				t.Fatalf("got exit code %d (err %v), want 2", got, err)
			}
			line := errorLine(err)
			if !strings.Contains(line, tt.want) {
				t.Fatalf("got %q, want it to mention %q", line, tt.want)
			}
			if n := s.requests.Load(); n != 0 {
				t.Fatalf("the server got %d requests, want none", n)
			}
			for _, k := range ks {
				if strings.Contains(line+out.String()+errb.String(), strings.TrimPrefix(k.id.String(), "AGE-SECRET-KEY-1")) {
					t.Fatal("a private key was echoed")
				}
			}
		})
	}
}

// TestOperatorRotateRootStartRefusals: the same rules for a rotation.
func TestOperatorRotateRootStartRefusals(t *testing.T) {
	t.Parallel()
	ks := newCustodians(t, 2)
	for _, args := range [][]string{
		{"-custodians", "3", "-threshold", "2"},
		{"-custodian-keys", ks[0].pub + "," + ks[1].pub, "-plaintext-shares"},
		{"-custodian-keys", ks[0].pub + "," + ks[0].pub},
	} {
		s := newCeremonyStub(t)
		c, _, _ := testCLI(t.Context(), s.env(t), failReader{t})
		err := c.run(append([]string{"operator", "rotate-root", "start"}, args...))
		if got := exitCode(err); got != 2 {
			t.Fatalf("%q: got exit code %d (err %v), want 2", args, got, err)
		}
		if n := s.requests.Load(); n != 0 {
			t.Fatalf("%q: the server got %d requests, want none", args, n)
		}
	}
}

// armoredBlocks maps each "Share N for custodian age1...:" label of an
// init output to the armored block under it.
func armoredBlocks(t *testing.T, out string) map[string]string {
	t.Helper()
	blocks := map[string]string{}
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); i++ {
		label, ok := strings.CutSuffix(lines[i], ":")
		if !ok || i+1 >= len(lines) || lines[i+1] != "-----BEGIN AGE ENCRYPTED FILE-----" {
			continue
		}
		var b strings.Builder
		for i++; i < len(lines); i++ {
			b.WriteString(lines[i] + "\n")
			if lines[i] == "-----END AGE ENCRYPTED FILE-----" {
				break
			}
		}
		blocks[label] = b.String()
	}
	return blocks
}

// byShareNumber keys armored blocks labelled "Share N" or "Share N for
// custodian age1..." by N (from 1).
func byShareNumber(t *testing.T, blocks map[string]string) map[int]string {
	t.Helper()
	out := map[int]string{}
	for label, b := range blocks {
		rest, ok := strings.CutPrefix(label, "Share ")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, " ")
		n, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("bad label %q", label)
		}
		out[n] = b
	}
	return out
}

// checkOwnBlocksOnly asserts that custodian i decrypts share block i+1
// into a share and no other block, and returns the shares.
func checkOwnBlocksOnly(t *testing.T, ks []custodianKey, blocks map[int]string) []string {
	t.Helper()
	if len(blocks) != len(ks) {
		t.Fatalf("got %d share blocks, want %d", len(blocks), len(ks))
	}
	shares := make([]string, len(ks))
	for i, k := range ks {
		for n, b := range blocks {
			pt, err := k.identity.Decrypt(b)
			if n == i+1 {
				if err != nil || !strings.HasPrefix(string(pt), sharePrefix) {
					t.Fatalf("custodian %d cannot open their own block: %v", i+1, err)
				}
				shares[i] = string(pt)
				continue
			}
			if !errors.Is(err, custodian.ErrNotForYou) {
				t.Fatalf("custodian %d opened share block %d: err %v", i+1, n, err)
			}
		}
	}
	return shares
}

// TestOperatorInitEncryptedShares (against the stand-in): keys given as
// strings or files reach the server as age1... strings; the output holds
// one armored block per custodian, labelled with the share number and
// the recipient, no share in the clear; each custodian opens only their
// own; the admin token is encrypted to -admin-key.
func TestOperatorInitEncryptedShares(t *testing.T) {
	t.Parallel()
	ks := newCustodians(t, 6)
	cust, admin := ks[:5], ks[5]
	specs := []string{cust[0].pub, cust[1].pubFile, cust[2].pub, cust[3].pubFile, cust[4].pub}
	s := newCeremonyStub(t)
	out, errOut, err := runCmdErr(t, s.env(t), "", "operator", "init", "-custodian-keys", strings.Join(specs, ","), "-threshold", "3", "-admin-key", admin.pubFile)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, errOut)
	}
	for i, k := range s.lastInit.CustodianKeys {
		if k != cust[i].pub {
			t.Fatalf("custodian key %d sent as %q, want %q", i+1, k, cust[i].pub)
		}
	}
	if s.lastInit.Custodians != 5 || s.lastInit.Threshold != 3 || s.lastInit.PlaintextShares || s.lastInit.AdminKey != admin.pub {
		t.Fatalf("got request %+v", s.lastInit)
	}
	if strings.Contains(out+errOut, sharePrefix) || strings.Contains(out+errOut, "kd_stubadmintoken") {
		t.Fatalf("a secret is in the clear in the output:\n%s\n%s", out, errOut)
	}
	blocks := armoredBlocks(t, out)
	if len(blocks) != 6 {
		t.Fatalf("got %d armored blocks, want 6:\n%s", len(blocks), out)
	}
	for i, k := range cust {
		if _, ok := blocks["Share "+strconv.Itoa(i+1)+" for custodian "+k.pub]; !ok {
			t.Fatalf("no block labelled with share %d and its recipient:\n%s", i+1, out)
		}
	}
	shares := checkOwnBlocksOnly(t, cust, byShareNumber(t, blocks))
	for i, sh := range shares {
		if sh != s.shares[i] {
			t.Fatalf("custodian %d got share %d of the dealing? mismatch", i+1, i+1)
		}
	}
	tok, err := admin.identity.Decrypt(blocks["Admin token for "+admin.pub])
	if err != nil || string(tok) != "kd_stubadmintoken" {
		t.Fatalf("admin token block: %v", err)
	}
}

// TestOperatorInitOutDir: -out-dir writes share-N.age (0600) and
// admin-token.age, prints their names, and never overwrites.
func TestOperatorInitOutDir(t *testing.T) {
	t.Parallel()
	ks := newCustodians(t, 3)
	dir := filepath.Join(t.TempDir(), "ceremony")
	s := newCeremonyStub(t)
	out, errOut, err := runCmdErr(t, s.env(t), "", "operator", "init", "-custodian-keys", ks[0].pub+","+ks[1].pub+","+ks[2].pub, "-threshold", "2", "-out-dir", dir)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, errOut)
	}
	if strings.Contains(out+errOut, sharePrefix) || strings.Contains(out, "BEGIN AGE") {
		t.Fatalf("output holds a share or a block:\n%s", out)
	}
	for i, k := range ks {
		p := filepath.Join(dir, "share-"+string(rune('1'+i))+".age")
		if !strings.Contains(out, p) {
			t.Fatalf("output does not name %s:\n%s", p, out)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
		b, _ := os.ReadFile(p)
		pt, err := k.identity.Decrypt(string(b))
		if err != nil || string(pt) != s.shares[i] {
			t.Fatalf("custodian %d cannot open %s: %v", i+1, p, err)
		}
		// The file decrypts through unseal -identity -in as well.
		c, uout, uerr := testCLI(t.Context(), s.env(t), failReader{t})
		if err := c.run([]string{"operator", "unseal", "-identity", k.idFile, "-in", p}); err != nil {
			t.Fatalf("unseal -in %s: %v\n%s", p, err, uerr)
		}
		if !strings.Contains(uout.String(), "progress") {
			t.Fatalf("got %q", uout)
		}
	}
	if got := strings.Join(s.submitted, ","); got != strings.Join(s.shares, ",") {
		t.Fatal("the submitted shares are not the decrypted ones")
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("out-dir mode: %v %v", fi, err)
	}
	// A second ceremony into the same directory is refused up front.
	before := s.requests.Load()
	_, _, err = runCmdErr(t, s.env(t), "", "operator", "init", "-custodian-keys", ks[0].pub+","+ks[1].pub+","+ks[2].pub, "-threshold", "2", "-out-dir", dir)
	if exitCode(err) != 2 || s.requests.Load() != before {
		t.Fatalf("second init into a used -out-dir: err %v, %d requests", err, s.requests.Load()-before)
	}
}

// TestOperatorInitRefusesPlaintextReply: a server that answers custodian
// keys with plaintext shares gets an error; the shares are not shown.
func TestOperatorInitRefusesPlaintextReply(t *testing.T) {
	t.Parallel()
	ks := newCustodians(t, 3)
	s := newCeremonyStub(t)
	s.plaintextAnyway = true
	out, errOut, err := runCmdErr(t, s.env(t), "", "operator", "init", "-custodian-keys", ks[0].pub+","+ks[1].pub+","+ks[2].pub, "-threshold", "2")
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "plaintext") {
		t.Fatalf("got err %v, want a refusal", err)
	}
	if strings.Contains(out+errOut+errorLine(err), sharePrefix) {
		t.Fatalf("a plaintext share was shown:\n%s\n%s", out, errOut)
	}
}

// TestOperatorInitPlaintextShares: the explicit flag shows the shares with
// a loud warning on stderr.
func TestOperatorInitPlaintextShares(t *testing.T) {
	t.Parallel()
	s := newCeremonyStub(t)
	out, errOut, err := runCmdErr(t, s.env(t), "", "operator", "init", "-plaintext-shares", "-custodians", "3", "-threshold", "2")
	if err != nil {
		t.Fatal(err)
	}
	if !s.lastInit.PlaintextShares || len(s.lastInit.CustodianKeys) != 0 {
		t.Fatalf("got request %+v", s.lastInit)
	}
	if strings.Count(out, sharePrefix) != 3 || !strings.Contains(errOut, "WARNING") || !strings.Contains(errOut, "IN THE CLEAR") {
		t.Fatalf("got stdout\n%s\nstderr\n%s", out, errOut)
	}
}

// TestOperatorUnsealIdentity: unseal -identity decrypts the custodian's
// block on stdin, also out of a whole forwarded init output, and submits
// the share; a block for someone else, or an armored block without
// -identity, is refused with a clear error and nothing is sent.
func TestOperatorUnsealIdentity(t *testing.T) {
	t.Parallel()
	ks := newCustodians(t, 3)
	s := newCeremonyStub(t)
	initOut, _, err := runCmdErr(t, s.env(t), "", "operator", "init", "-custodian-keys", ks[0].pub+","+ks[1].pub+","+ks[2].pub, "-threshold", "2")
	if err != nil {
		t.Fatal(err)
	}
	blocks := armoredBlocks(t, initOut)
	own := blocks["Share 2 for custodian "+ks[1].pub]

	t.Run("own block", func(t *testing.T) {
		out, errOut, err := runCmdErr(t, s.env(t), own, "operator", "unseal", "-identity", ks[1].idFile)
		if err != nil || !strings.Contains(out, "progress") {
			t.Fatalf("got %q, err %v\n%s", out, err, errOut)
		}
		if strings.Contains(out+errOut, sharePrefix) {
			t.Fatal("the share was echoed")
		}
	})
	t.Run("whole forwarded output", func(t *testing.T) {
		if _, _, err := runCmdErr(t, s.env(t), "Hi, your share:\n"+initOut, "operator", "unseal", "-identity", ks[2].idFile); err != nil {
			t.Fatal(err)
		}
	})
	s.mu.Lock()
	if len(s.submitted) != 2 || s.submitted[0] != s.shares[1] || s.submitted[1] != s.shares[2] {
		t.Fatalf("submitted the wrong shares")
	}
	s.mu.Unlock()
	before := s.requests.Load()
	t.Run("someone else's block", func(t *testing.T) {
		_, _, err := runCmdErr(t, s.env(t), own, "operator", "unseal", "-identity", ks[0].idFile)
		if !errors.Is(err, errNotForIdentity) || exitCode(err) != 1 {
			t.Fatalf("got err %v, want %v", err, errNotForIdentity)
		}
	})
	t.Run("armored without identity", func(t *testing.T) {
		_, _, err := runCmdErr(t, s.env(t), own, "operator", "unseal")
		if exitCode(err) != 2 || !strings.Contains(errorLine(err), "-identity") {
			t.Fatalf("got err %v, want a usage error naming -identity", err)
		}
	})
	t.Run("no block", func(t *testing.T) {
		_, _, err := runCmdErr(t, s.env(t), "just text\n", "operator", "unseal", "-identity", ks[0].idFile)
		if err == nil || !strings.Contains(err.Error(), "no armored age message") {
			t.Fatalf("got err %v", err)
		}
	})
	t.Run("public key as identity", func(t *testing.T) {
		_, _, err := runCmdErr(t, s.env(t), own, "operator", "unseal", "-identity", ks[1].pubFile)
		if !errors.Is(err, custodian.ErrBadIdentity) {
			t.Fatalf("got err %v, want %v", err, custodian.ErrBadIdentity)
		}
	})
	t.Run("not a share", func(t *testing.T) {
		r, _ := custodian.ParseRecipient(ks[0].pub)
		m, _ := custodian.Encrypt(r, []byte("kd_admintoken"))
		_, _, err := runCmdErr(t, s.env(t), m, "operator", "unseal", "-identity", ks[0].idFile)
		if err == nil || !strings.Contains(err.Error(), "not a keyd share") || strings.Contains(err.Error(), "kd_admintoken") {
			t.Fatalf("got err %v", err)
		}
	})
	if n := s.requests.Load() - before; n != 0 {
		t.Fatalf("refused inputs sent %d requests", n)
	}
}

// TestOperatorRotateRootEncrypted (against the stand-in): start sends the
// new custodians' keys with the starter's current share, decrypted
// locally with -identity; submit -identity likewise; the completing
// submit prints only encrypted new shares, or writes them to -out-dir.
func TestOperatorRotateRootEncrypted(t *testing.T) {
	t.Parallel()
	old := newCustodians(t, 2)
	ks := newCustodians(t, 3)
	s := newCeremonyStub(t)
	current := make([]string, len(old))
	for i, o := range old {
		r, _ := custodian.ParseRecipient(o.pub)
		current[i], _ = custodian.Encrypt(r, []byte(testShare+string(rune('a'+i))))
	}
	out, errOut, err := runCmdErr(t, s.env(t), current[0], "operator", "rotate-root", "start", "-custodian-keys", ks[0].pubFile+","+ks[1].pub+","+ks[2].pub, "-threshold", "2", "-identity", old[0].idFile)
	if err != nil || !strings.Contains(out, "nonce1") || !strings.Contains(out, ks[0].pub) || !strings.Contains(out, "1 of 2") {
		t.Fatalf("start: %q, %v\n%s", out, err, errOut)
	}
	if len(s.rotation.CustodianKeys) != 3 || s.rotation.CustodianKeys[0] != ks[0].pub || s.rotation.PlaintextShares || s.rotation.Share != testShare+"a" {
		t.Fatalf("got start request keys %q plaintext %v (share decrypted: %v)", s.rotation.CustodianKeys, s.rotation.PlaintextShares, s.rotation.Share == testShare+"a")
	}
	digest := stubDigest(s.rotation)
	if !strings.Contains(out, "Rotation digest: "+digest) || !strings.Contains(out, "-approve "+digest) {
		t.Fatalf("start does not print the digest to approve: %q", out)
	}
	// Submit shows the dealing and needs its digest approved; a wrong one
	// (or none, off a terminal) sends nothing.
	for _, approve := range [][]string{nil, {"-approve", strings.Repeat("0", 64)}} {
		args := append([]string{"operator", "rotate-root", "submit", "-nonce", "nonce1", "-identity", old[1].idFile}, approve...)
		if _, _, err := runCmdErr(t, s.env(t), current[1], args...); err == nil || s.submitCalls != 0 {
			t.Fatalf("submit approving %q: err %v, %d sent", approve, err, s.submitCalls)
		}
	}
	out, errOut, err = runCmdErr(t, s.env(t), current[1], "operator", "rotate-root", "submit", "-nonce", "nonce1", "-approve", digest, "-identity", old[1].idFile)
	if err != nil {
		t.Fatalf("submit: %v\n%s", err, errOut)
	}
	for _, want := range []string{"new custodians (N): 3", "new threshold (T):  2", "plaintext_shares: false", "share 1: " + ks[0].pub, "share 3: " + ks[2].pub, "digest: " + digest} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("submit review lacks %q:\n%s", want, errOut)
		}
	}
	if s.submitted[1] != testShare+"b" {
		t.Fatal("the decrypted current share was not submitted")
	}
	if strings.Contains(out+errOut, sharePrefix) {
		t.Fatalf("a share is in the clear:\n%s", out)
	}
	checkOwnBlocksOnly(t, ks, byShareNumber(t, armoredBlocks(t, out)))
	// A start without a share on stdin is refused before contact.
	before := s.requests.Load()
	if _, _, err := runCmdErr(t, s.env(t), "", "operator", "rotate-root", "start", "-custodian-keys", ks[0].pub, "-threshold", "1"); exitCode(err) != 2 || s.requests.Load() != before {
		t.Fatalf("start without a share: err %v", err)
	}

	dir := t.TempDir()
	out, _, err = runCmdErr(t, s.env(t), current[1], "operator", "rotate-root", "submit", "-nonce", "nonce1", "-approve", digest, "-identity", old[1].idFile, "-out-dir", dir)
	if err != nil || strings.Contains(out, "BEGIN AGE") {
		t.Fatalf("submit -out-dir: %q, %v", out, err)
	}
	for i, k := range ks {
		b, err := os.ReadFile(filepath.Join(dir, "share-"+string(rune('1'+i))+".age"))
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := k.identity.Decrypt(string(b)); err != nil || string(pt) != s.shares[i] {
			t.Fatalf("new custodian %d: %v", i+1, err)
		}
	}
}

// TestOperatorRotateRootCancel: cancel sends a current share, decrypted
// locally with -identity, and never takes one as an argument.
func TestOperatorRotateRootCancel(t *testing.T) {
	t.Parallel()
	ks := newCustodians(t, 1)
	s := newCeremonyStub(t)
	r, _ := custodian.ParseRecipient(ks[0].pub)
	m, _ := custodian.Encrypt(r, []byte(testShare))
	out, _, err := runCmdErr(t, s.env(t), m, "operator", "rotate-root", "cancel", "-identity", ks[0].idFile)
	if err != nil || !strings.Contains(out, "cancelled") || len(s.submitted) != 1 || s.submitted[0] != testShare {
		t.Fatalf("cancel: %q, %v", out, err)
	}
	c, _, _ := testCLI(t.Context(), s.env(t), failReader{t})
	if err := c.run([]string{"operator", "rotate-root", "cancel", testShare}); exitCode(err) != 2 {
		t.Fatalf("cancel with a share argument: got %v, want a usage error", err)
	}
}

// TestOperatorInitOpenPGPCustodian (against the stand-in): a custodian
// may give an armored OpenPGP public key file instead of an age key; their
// share is an armored OpenPGP message (share-N.asc), opened with their own
// tool and piped into unseal.
func TestOperatorInitOpenPGPCustodian(t *testing.T) {
	t.Parallel()
	ks := newCustodians(t, 2)
	e, err := openpgp.NewEntity("pat", "", "pat@example.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	aw, _ := pgparmor.Encode(&pub, "PGP PUBLIC KEY BLOCK", nil)
	if err := e.Serialize(aw); err != nil {
		t.Fatal(err)
	}
	aw.Close()
	pubFile := filepath.Join(t.TempDir(), "pat.asc")
	if err := os.WriteFile(pubFile, pub.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	fpr := strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
	s := newCeremonyStub(t)
	dir := filepath.Join(t.TempDir(), "out")
	out, errOut, err := runCmdErr(t, s.env(t), "", "operator", "init", "-custodian-keys", ks[0].pub+","+pubFile+","+ks[1].pub, "-threshold", "2", "-out-dir", dir)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, errOut)
	}
	if strings.Contains(out+errOut, sharePrefix) || !strings.Contains(out, "Share 2 for custodian openpgp:"+fpr+": "+filepath.Join(dir, "share-2.asc")) {
		t.Fatalf("got output\n%s", out)
	}
	msg, err := os.ReadFile(filepath.Join(dir, "share-2.asc"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "share-2.asc")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	blk, err := pgparmor.Decode(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	md, err := openpgp.ReadMessage(blk.Body, openpgp.EntityList{e}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(md.UnverifiedBody)
	if err != nil || string(plain) != s.shares[1] {
		t.Fatalf("the OpenPGP custodian cannot open their share: %v", err)
	}
	// The age custodians' files are untouched by the mix.
	if b, err := os.ReadFile(filepath.Join(dir, "share-1.age")); err != nil {
		t.Fatal(err)
	} else if pt, err := ks[0].identity.Decrypt(string(b)); err != nil || string(pt) != s.shares[0] {
		t.Fatalf("age custodian: %v", err)
	}
	// The armored message itself on unseal's stdin: told to decrypt first.
	_, _, err = runCmdErr(t, s.env(t), string(msg), "operator", "unseal")
	if exitCode(err) != 2 || !strings.Contains(errorLine(err), "gpg -d") {
		t.Fatalf("got %v, want a usage error pointing at gpg -d", err)
	}
	// What gpg -d prints, piped in, unseals.
	if _, _, err := runCmdErr(t, s.env(t), string(plain), "operator", "unseal"); err != nil {
		t.Fatal(err)
	}
	if s.submitted[len(s.submitted)-1] != s.shares[1] {
		t.Fatal("the decrypted share was not submitted")
	}
}

// TestOperatorInitAgeToolInterop: a custodian without keyd opens their
// share-N.age with the age tool, `age -d -i key.txt share-N.age`, and gets
// their keyd-share-v1-... share. Skipped without the age binary.
func TestOperatorInitAgeToolInterop(t *testing.T) {
	t.Parallel()
	ageBin, err := exec.LookPath("age")
	if err != nil {
		if os.Getenv("KEYD_INTEROP_TOOLS") != "" {
			t.Fatalf("KEYD_INTEROP_TOOLS is set but age is not installed: %v", err)
		}
		t.Skip("age not installed (scripts/setup.sh installs it)")
	}
	ks := newCustodians(t, 2)
	s := newCeremonyStub(t)
	dir := filepath.Join(t.TempDir(), "out")
	if _, errOut, err := runCmdErr(t, s.env(t), "", "operator", "init", "-custodian-keys", ks[0].pubFile+","+ks[1].pub, "-threshold", "2", "-out-dir", dir); err != nil {
		t.Fatalf("init: %v\n%s", err, errOut)
	}
	for i, k := range ks {
		cmd := exec.CommandContext(t.Context(), ageBin, "-d", "-i", k.idFile, filepath.Join(dir, "share-"+strconv.Itoa(i+1)+".age"))
		out, err := cmd.Output()
		if err != nil || string(out) != s.shares[i] {
			t.Fatalf("age -d for custodian %d: %v (got the dealt share: %v)", i+1, err, string(out) == s.shares[i])
		}
	}
	// And nobody else's key opens it.
	cmd := exec.CommandContext(t.Context(), ageBin, "-d", "-i", ks[1].idFile, filepath.Join(dir, "share-1.age"))
	if out, err := cmd.Output(); err == nil || strings.Contains(string(out), sharePrefix) {
		t.Fatal("custodian 2's key opened share 1")
	}
}

// TestEmitSealedFallsBackToStdout: when -out-dir cannot be written the
// encrypted messages are printed instead and the error returned, so a
// one-time ceremony output is never lost.
func TestEmitSealedFallsBackToStdout(t *testing.T) {
	t.Parallel()
	c, out, _ := testCLI(t.Context(), nil, nil)
	w := &errWriter{w: c.stdout}
	items := []sealedItem{
		{file: "share-1.age", label: "Share 1", armor: "-----BEGIN AGE ENCRYPTED FILE-----\nAAAA\n-----END AGE ENCRYPTED FILE-----\n"},
		{file: "share-2.age", label: "Share 2", armor: "-----BEGIN AGE ENCRYPTED FILE-----\nBBBB\n-----END AGE ENCRYPTED FILE-----\n"},
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := c.emitSealed(w, filepath.Join(notDir, "sub"), items)
	if err == nil || w.err != nil {
		t.Fatalf("got err %v, writer err %v; want the write error returned and the writer usable", err, w.err)
	}
	w.printf("Commitments fingerprint: fp\n")
	got := out.String()
	if !strings.Contains(got, "AAAA") || !strings.Contains(got, "BBBB") || !strings.Contains(got, "Commitments fingerprint: fp") {
		t.Fatalf("got output\n%s", got)
	}
}

// TestOperatorRotateRootReviewOpenPGP (against the stand-in): the submit
// review names an OpenPGP custodian by the key's full fingerprint, which
// the custodian compares with `gpg --fingerprint`; a plaintext session
// says so, and approving it needs its own digest (the flag is covered); a
// threshold of 1 is flagged.
func TestOperatorRotateRootReviewOpenPGP(t *testing.T) {
	t.Parallel()
	ks := newCustodians(t, 2)
	e, err := openpgp.NewEntity("pat", "", "pat@example.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	aw, _ := pgparmor.Encode(&pub, "PGP PUBLIC KEY BLOCK", nil)
	if err := e.Serialize(aw); err != nil {
		t.Fatal(err)
	}
	aw.Close()
	pubFile := filepath.Join(t.TempDir(), "pat.asc")
	if err := os.WriteFile(pubFile, pub.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	fpr := strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
	s := newCeremonyStub(t)
	out, errOut, err := runCmdErr(t, s.env(t), testShare, "operator", "rotate-root", "start", "-custodian-keys", ks[0].pub+","+pubFile+","+ks[1].pub, "-threshold", "2")
	if err != nil {
		t.Fatalf("start: %v\n%s", err, errOut)
	}
	digest := outputValue(t, out, "Rotation digest: ")
	_, errOut, err = runCmdErr(t, s.env(t), testShare, "operator", "rotate-root", "submit", "-nonce", "nonce1", "-approve", digest)
	if err != nil || !strings.Contains(errOut, "share 2: openpgp:"+fpr) || strings.Contains(errOut, "threshold 1") {
		t.Fatalf("submit review: %v\n%s", err, errOut)
	}

	p := newCeremonyStub(t)
	out, errOut, err = runCmdErr(t, p.env(t), testShare, "operator", "rotate-root", "start", "-plaintext-shares", "-custodians", "3", "-threshold", "1")
	if err != nil {
		t.Fatalf("plaintext start: %v\n%s", err, errOut)
	}
	plainDigest := outputValue(t, out, "Rotation digest: ")
	if plainDigest != api.RotationDigest(stubFingerprint, 3, 1, nil, true) || plainDigest == api.RotationDigest(stubFingerprint, 3, 1, nil, false) {
		t.Fatal("the plaintext flag is not covered by the digest")
	}
	_, errOut, err = runCmdErr(t, p.env(t), testShare, "operator", "rotate-root", "submit", "-nonce", "nonce1", "-approve", plainDigest)
	if err != nil || !strings.Contains(errOut, "plaintext_shares: true") || !strings.Contains(errOut, "in the clear") || !strings.Contains(errOut, "threshold 1: each new custodian alone") {
		t.Fatalf("plaintext submit review: %v\n%s", err, errOut)
	}
}
