package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/audit"
	"github.com/keyd/keyd/internal/testcluster"
)

// auditLines reads a node's audit log.
func auditLines(t *testing.T, dir string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	return lines[:len(lines)-1]
}

func lastSeq(t *testing.T, lines [][]byte) uint64 {
	t.Helper()
	var r audit.Record
	if err := json.Unmarshal(lines[len(lines)-1], &r); err != nil {
		t.Fatal(err)
	}
	return r.Seq
}

// verifyWithCluster verifies log bytes against node's key and anchors as
// another node serves them, as `keyd audit verify -addr` does.
func verifyWithCluster(a *api.AuditAnchors, log []byte) (*audit.Report, error) {
	pub, err := hex.DecodeString(a.PublicKey)
	if err != nil {
		return nil, err
	}
	var as []audit.Anchor
	for _, x := range a.Anchors {
		as = append(as, audit.Anchor{Seq: x.Seq, Head: x.Head})
	}
	v, err := audit.NewVerifier(pub, as)
	if err != nil {
		return nil, err
	}
	if err := v.Add("audit.log", bytes.NewReader(log)); err != nil {
		return nil, err
	}
	return v.Finish()
}

// TestAuditForgeryCaughtByAnchors is the scripted forgery: with a node's
// data directory, rewrite its audit log without three records, rebuild
// the hash chain and re-sign the checkpoints with anything found on that
// node's disk. The old layout kept the signing seed in DATA/audit.key and
// the node served its own key, so `keyd audit verify` said OK; now the
// seed on disk is wrapped by the barrier keyring, the key and the chain
// heads live in the replicated state, and verification against another
// node's anchors fails.
func TestAuditForgeryCaughtByAnchors(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	ctx := ctxT(t)
	cl := c.Client(t)
	info, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "k", Type: "aes256-gcm"})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(t, info.Index)
	victim := (c.WaitLeader(t) + 1) % 3
	witness := (victim + 1) % 3
	vcl := c.ClientFor(t, c.Slot(victim).APIAddr)
	for i := 0; i < 8; i++ {
		if _, err := vcl.Encrypt(ctx, "k", []byte(fmt.Sprintf("secret %d", i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	dir := c.Slot(victim).Dir
	vid := c.Slot(victim).ID
	wcl := c.ClientFor(t, c.Slot(witness).APIAddr)
	// The victim registers its key and anchors its head through Raft
	// while it runs, and anchors its final head on a clean stop; the
	// witness holds both.
	var anchors *api.AuditAnchors
	c.Eventually(t, 30*time.Second, func() error {
		var err error
		anchors, err = wcl.AuditAnchors(ctx, c.Slot(witness).APIAddr, vid)
		if err != nil {
			return err
		}
		if anchors.PublicKey == "" || len(anchors.Anchors) == 0 {
			return errors.New("not anchored yet")
		}
		return nil
	})
	c.Stop(t, victim)
	lines := auditLines(t, dir)
	c.Eventually(t, 30*time.Second, func() error {
		var err error
		anchors, err = wcl.AuditAnchors(ctx, c.Slot(witness).APIAddr, vid)
		if err != nil {
			return err
		}
		if got, want := anchors.Anchors[len(anchors.Anchors)-1].Seq, lastSeq(t, lines); got != want {
			return fmt.Errorf("anchored seq %d, log at %d", got, want)
		}
		return nil
	})
	orig := bytes.Join(lines, nil)
	if rep, err := verifyWithCluster(anchors, orig); err != nil || rep.Unanchored != 0 || rep.Checkpoints == 0 {
		t.Fatalf("intact log: %+v, %v", rep, err)
	}
	var kb []byte

	// What the node's disk holds about the signing key: no seed.
	kb, err = os.ReadFile(filepath.Join(dir, "audit.key"))
	if err != nil {
		t.Fatal(err)
	}
	var kf map[string]any
	if err := json.Unmarshal(kb, &kf); err != nil {
		t.Fatal(err)
	}
	if _, ok := kf["seed"]; ok || kf["wrapped"] == nil {
		t.Fatalf("audit.key holds %v: the signing seed must be wrapped", keysOf(kf))
	}
	if kf["pub"] != anchors.PublicKey {
		t.Fatalf("registered key %s, node's key %v", anchors.PublicKey, kf["pub"])
	}

	// The forgery: drop the encrypt records 3-5 of the victim, renumber,
	// rechain, and sign checkpoints with a key the forger controls (the
	// best anything on disk allows).
	_, forgerKey, _ := ed25519.GenerateKey(rand.Reader)
	forged := forge(t, lines, forgerKey, func(r *audit.Record) bool {
		return r.Op == "key.encrypt" && r.Seq%3 == 0
	})
	if err := os.WriteFile(filepath.Join(dir, "audit.log"), forged, 0o600); err != nil {
		t.Fatal(err)
	}
	// What the old `keyd audit verify` did: the chain and the signatures
	// check out with the key the forger chose.
	if _, err := audit.Verify(bytes.NewReader(forged), forgerKey.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("the forgery is not even self-consistent: %v", err)
	}
	anchors, err = wcl.AuditAnchors(ctx, c.Slot(witness).APIAddr, vid)
	if err != nil {
		t.Fatal(err)
	}
	_, err = verifyWithCluster(anchors, forged)
	var ve *audit.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("forged log verified against the cluster's anchors: %v", err)
	}
	// Every shorter rewrite fails too: cut to nothing, cut the tail.
	if _, err := verifyWithCluster(anchors, nil); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("emptied log: %v", err)
	}
	if _, err := verifyWithCluster(anchors, bytes.Join(lines[:len(lines)-1], nil)); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("cut log: %v", err)
	}
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// forge rewrites a log without the records drop selects, renumbering and
// rechaining every line and re-signing checkpoints with key.
func forge(t *testing.T, lines [][]byte, key ed25519.PrivateKey, drop func(*audit.Record) bool) []byte {
	t.Helper()
	var out bytes.Buffer
	var seq uint64
	var prev string
	var since uint64
	for _, ln := range lines {
		var r audit.Record
		if err := json.Unmarshal(ln, &r); err != nil {
			t.Fatal(err)
		}
		if drop(&r) {
			continue
		}
		seq++
		r.Seq, r.Prev = seq, prev
		if r.Checkpoint != nil {
			var head [32]byte
			if _, err := hex.Decode(head[:], []byte(prev)); err != nil {
				t.Fatal(err)
			}
			r.Checkpoint.Head, r.Checkpoint.Count = prev, since
			r.Checkpoint.Signature = ed25519.Sign(key, audit.CheckpointMessage(seq, head))
			since = 0
		} else {
			since++
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256Hex(b)
		prev = sum
		out.Write(b)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// TestAuditRecordsSurviveHangup: a client that closes its connection
// right after sending a policy write (or an encrypt) still gets its
// committed write audited. The audit write used the request's context,
// which the server cancels on hang-up: 10 such writes left 1 record.
func TestAuditRecordsSurviveHangup(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	addr := c.Slot(0).APIAddr
	dir := c.Slot(0).Dir
	countOp := func(op string) (all, ok int) {
		for _, ln := range auditLines(t, dir) {
			var r audit.Record
			if json.Unmarshal(ln, &r) == nil && r.Op == op {
				all++
				if r.Outcome == "ok" {
					ok++
				}
			}
		}
		return all, ok
	}
	ctx := ctxT(t)
	tlsCfg := c.TLS().Clone()
	const writes = 10
	for i := 0; i < writes; i++ {
		body := `{"rules":[{"effect":"allow","capabilities":["encrypt"],"keys":["hang-*"]}]}`
		req := fmt.Sprintf("PUT /v1/policies/hang%d HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			i, addr, c.Token, len(body), body)
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tlsDial(ctx, d, addr, tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		conn.Close() // hang up at once
	}
	cl := c.Client(t)
	c.Eventually(t, 30*time.Second, func() error {
		pl, err := cl.ListPolicies(ctx)
		if err != nil {
			return err
		}
		n := 0
		for _, p := range pl.Policies {
			if strings.HasPrefix(p, "hang") {
				n++
			}
		}
		all, ok := countOp("policy.write")
		if all != writes || ok != n {
			return fmt.Errorf("%d writes, %d committed: %d policy.write records, %d ok", writes, n, all, ok)
		}
		return nil
	})
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tlsDial(ctx context.Context, d *net.Dialer, addr string, cfg *tls.Config) (net.Conn, error) {
	td := &tls.Dialer{NetDialer: d, Config: cfg}
	return td.DialContext(ctx, "tcp", addr)
}

// TestAuditReplacedFileRefusesKeyOps: after `mv audit.log x; mkdir
// audit.log` encrypts used to succeed, their records going to the
// unlinked file. Now key operations are refused (unavailable) until the
// file is back.
func TestAuditReplacedFileRefusesKeyOps(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	ctx := ctxT(t)
	cl := c.Client(t)
	info, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "k", Type: "aes256-gcm"})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(t, info.Index)
	if _, err := cl.Encrypt(ctx, "k", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.Slot(0).Dir, "audit.log")
	if err := os.Rename(path, path+".x"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if res, err := cl.Encrypt(ctx, "k", []byte("x"), nil); !errors.Is(err, api.ErrUnavailable) {
			t.Fatalf("encrypt %d with the audit file replaced: got %+v, %v; want unavailable", i, res, err)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".x", path); err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 15*time.Second, func() error {
		_, err := cl.Encrypt(ctx, "k", []byte("x"), nil)
		return err
	})
}

// TestAuditSealedRecordsCovered: the signing key leaves memory on seal
// (after a last checkpoint); records written while sealed are chained and
// anchored, and the first checkpoint after the next unseal signs them.
func TestAuditSealedRecordsCovered(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	ctx := ctxT(t)
	cl := c.Client(t)
	dir := c.Slot(0).Dir
	lastRec := func() audit.Record {
		lines := auditLines(t, dir)
		var r audit.Record
		if err := json.Unmarshal(lines[len(lines)-1], &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	var anchors *api.AuditAnchors
	c.Eventually(t, 15*time.Second, func() error {
		var err error
		if anchors, err = cl.AuditAnchors(ctx, c.Slot(0).APIAddr, ""); err != nil {
			return err
		}
		if anchors.PublicKey == "" {
			return errors.New("key not registered")
		}
		return nil
	})
	if err := cl.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	// Sealed: a last checkpoint, then unsigned records (a refused
	// unseal with a bad share).
	c.Eventually(t, 15*time.Second, func() error {
		if r := lastRec(); r.Op != audit.OpCheckpoint {
			return fmt.Errorf("last record %s, want a checkpoint after the seal", r.Op)
		}
		return nil
	})
	sealedCP := lastRec().Seq
	if _, err := cl.UnsealAt(ctx, c.Slot(0).APIAddr, forgeShare(t, c.Shares[0])); err == nil {
		t.Fatal("forged share accepted")
	}
	if r := lastRec(); r.Op == audit.OpCheckpoint || r.Seq <= sealedCP {
		t.Fatalf("sealed node signed a record or wrote none: %+v", r)
	}
	c.Unseal(t, 1)
	c.Eventually(t, 15*time.Second, func() error {
		if r := lastRec(); r.Op != audit.OpCheckpoint || r.Seq <= sealedCP+1 {
			return fmt.Errorf("no checkpoint after the unseal yet (last %s %d)", r.Op, r.Seq)
		}
		return nil
	})
	c.Stop(t, 0)
	lines := auditLines(t, dir)
	pub, _ := hex.DecodeString(anchors.PublicKey)
	rep, err := audit.Verify(bytes.NewReader(bytes.Join(lines, nil)), pub)
	if err != nil || rep.Unsigned != 0 {
		t.Fatalf("log after seal and unseal: %+v, %v", rep, err)
	}
}
