package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/audit"
)

// writeAuditLog writes n records through audit.Open (a checkpoint every
// 3), anchoring the head after every 2 records and at Close as a node
// does through Raft. It returns the log path and the anchors file.
func writeAuditLog(t *testing.T, n int, rotate int64) (string, string, *api.AuditAnchors) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mac := make([]byte, 32)
	rand.Read(mac)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := audit.Open(audit.Config{Path: path, HMACKey: mac, SigningKey: priv, Node: "n1", CheckpointEvery: 3, RotateSize: rotate})
	if err != nil {
		t.Fatal(err)
	}
	a := &api.AuditAnchors{Node: "n1", PublicKey: hex.EncodeToString(priv.Public().(ed25519.PublicKey))}
	anchor := func() {
		h := l.Head()
		if k := len(a.Anchors); k > 0 && a.Anchors[k-1].Seq == h.Seq {
			return
		}
		a.Anchors = append(a.Anchors, api.AuditAnchor{Seq: h.Seq, Head: hex.EncodeToString(h.Hash[:])})
	}
	for i := range n {
		r := audit.Record{Op: "key.encrypt", Key: fmt.Sprintf("k%d", i), Outcome: "ok",
			Hashed: map[string]string{"plaintext": l.HMAC([]byte("secret"))}}
		if err := l.Log(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			anchor()
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	anchor()
	return path, writeAnchors(t, dir, "anchors.json", a), a
}

func writeAnchors(t *testing.T, dir, name string, a *api.AuditAnchors) string {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuditVerify(t *testing.T) {
	t.Parallel()
	path, anchorsFile, anchors := writeAuditLog(t, 5, 0) // seq 1-3 records, 4 checkpoint, 5-6 records, 7 checkpoint
	dir := t.TempDir()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(orig, []byte("\n"))
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	edited := bytes.Clone(orig)
	i := bytes.Index(edited, []byte(`"key":"k1"`))
	edited[i+len(`"key":"k`)] = '9' // record on line 2
	editedPath := write("edited.log", edited)
	deletedPath := write("deleted.log", bytes.Join(append(append([][]byte{}, lines[:4]...), lines[5:]...), nil))
	cutPath := write("cut.log", bytes.Join(lines[:4], nil)) // cut after the first checkpoint
	emptyPath := write("empty.log", nil)

	partial := *anchors
	partial.Anchors = anchors.Anchors[:1]
	partialFile := writeAnchors(t, dir, "partial.json", &partial)
	otherKey := *anchors
	otherKey.PublicKey = strings.Repeat("ab", 32)
	otherKeyFile := writeAnchors(t, dir, "otherkey.json", &otherKey)
	otherNode := *anchors
	otherNode.Node = "n2"
	otherNodeFile := writeAnchors(t, dir, "othernode.json", &otherNode)

	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantCode int
	}{
		{name: "ok", args: []string{path, "-anchors", anchorsFile}, wantOut: "OK: 5 records, 2 checkpoints, seq 1..7 anchored"},
		{name: "ok, flag first", args: []string{"-anchors", anchorsFile, path}, wantOut: "OK: 5 records"},
		{name: "unanchored tail reported", args: []string{path, "-anchors", partialFile}, wantOut: "OK: 5 records, 2 checkpoints, seq 1..2 anchored (1 anchors matched, the last at seq 2)\nUNANCHORED: 5 lines after seq 2"},
		{name: "unanchored tail strict", args: []string{path, "-anchors", partialFile, "-strict"}, wantOut: "OK:", wantCode: 1},
		{name: "edited byte", args: []string{editedPath, "-anchors", anchorsFile}, wantOut: "TAMPERED: " + editedPath + " line 1 (seq 1): the log from here to seq 2 does not match the cluster's anchor", wantCode: 1},
		{name: "deleted line", args: []string{deletedPath, "-anchors", anchorsFile}, wantOut: "TAMPERED: " + deletedPath + " line 5 (seq 6): ", wantCode: 1},
		{name: "cut at a checkpoint", args: []string{cutPath, "-anchors", anchorsFile}, wantOut: "TAMPERED: " + cutPath + " line 5 (seq 5): the log ends at seq 4 but the cluster anchored seq 7", wantCode: 1},
		{name: "emptied", args: []string{emptyPath, "-anchors", anchorsFile}, wantOut: "TAMPERED: " + emptyPath + " line 1 (seq 1): the log is empty", wantCode: 1},
		{name: "different key", args: []string{path, "-anchors", otherKeyFile}, wantOut: "TAMPERED: " + path + " line 4 (seq 4): checkpoint signature", wantCode: 1},
		{name: "another node's anchors", args: []string{path, "-anchors", otherNodeFile}, wantOut: "TAMPERED: ", wantCode: 1},
		{name: "no anchors", args: []string{path}, wantCode: 2},
		{name: "both sources", args: []string{path, "-anchors", anchorsFile, "-addr", "127.0.0.1:1"}, wantCode: 2},
		{name: "no file", args: []string{"-anchors", anchorsFile}, wantCode: 2},
		{name: "bad anchors file", args: []string{path, "-anchors", path}, wantCode: 1},
		{name: "missing file", args: []string{filepath.Join(dir, "nope.log"), "-anchors", anchorsFile}, wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, out, _ := testCLI(t.Context(), nil, nil)
			err := c.run(append([]string{"audit", "verify"}, tt.args...))
			if got := exitCode(err); got != tt.wantCode {
				t.Fatalf("got exit code %d (err %v, out %q), want %d", got, err, out.String(), tt.wantCode)
			}
			if !strings.HasPrefix(out.String(), tt.wantOut) {
				t.Fatalf("got stdout %q, want it to start with %q", out.String(), tt.wantOut)
			}
			if strings.HasPrefix(tt.wantOut, "TAMPERED") && !errors.Is(err, errAuditTampered) {
				t.Fatalf("got err %v, want %v", err, errAuditTampered)
			}
		})
	}
}

// TestAuditVerifyForgedLog: a log rewritten without a record, rechained
// and re-signed with a key the forger holds (the old layout kept the seed
// in DATA/audit.key), verifies on its own but fails against the anchors.
func TestAuditVerifyForgedLog(t *testing.T) {
	t.Parallel()
	path, anchorsFile, anchors := writeAuditLog(t, 6, 0)
	lines, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	out := forgeLog(t, lines, forger, func(r *audit.Record) bool { return r.Key == "k2" })
	forged := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(forged, out, 0o600); err != nil {
		t.Fatal(err)
	}
	// The forger also swaps the key in a copy of the anchors: the chain
	// heads still give it away.
	withKey := *anchors
	withKey.PublicKey = hex.EncodeToString(forger.Public().(ed25519.PublicKey))
	swapped := writeAnchors(t, t.TempDir(), "a.json", &withKey)
	for _, af := range []string{anchorsFile, swapped} {
		c, stdout, _ := testCLI(t.Context(), nil, nil)
		err := c.run([]string{"audit", "verify", "-anchors", af, forged})
		if !errors.Is(err, errAuditTampered) || !strings.HasPrefix(stdout.String(), "TAMPERED: "+forged+" line ") {
			t.Fatalf("anchors %s: got %v, %q", af, err, stdout.String())
		}
	}
}

// TestAuditVerifyRotatedFiles: verify takes the live file and the
// rotated, gzipped ones in any order; leaving one out fails.
func TestAuditVerifyRotatedFiles(t *testing.T) {
	t.Parallel()
	path, anchorsFile, _ := writeAuditLog(t, 20, 1200)
	rotated, err := audit.RotatedFiles(path)
	if err != nil || len(rotated) < 3 {
		t.Fatalf("rotated files %v, %v", rotated, err)
	}
	for _, f := range rotated {
		if !strings.HasSuffix(f, ".gz") {
			t.Fatalf("%s not compressed", f)
		}
		zf, _ := os.Open(f)
		if _, err := gzip.NewReader(zf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		zf.Close()
	}
	all := append([]string{path}, rotated...) // live file first: order does not matter
	c, out, _ := testCLI(t.Context(), nil, nil)
	if err := c.run(append([]string{"audit", "verify", "-anchors", anchorsFile, "-strict"}, all...)); err != nil {
		t.Fatalf("got %v, %q", err, out.String())
	}
	if !strings.HasPrefix(out.String(), "OK: 20 records") {
		t.Fatalf("got %q", out.String())
	}
	gap := append([]string{path, rotated[0]}, rotated[2:]...)
	c, out, _ = testCLI(t.Context(), nil, nil)
	if err := c.run(append([]string{"audit", "verify", "-anchors", anchorsFile}, gap...)); !errors.Is(err, errAuditTampered) {
		t.Fatalf("file left out: got %v, %q", err, out.String())
	}
}

func hexSum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// forgeLog rewrites a log without the records drop selects: renumbered,
// rechained, checkpoints re-signed with key. It checks that the result
// passes the signature-only verification keyd used to rely on.
func forgeLog(t *testing.T, log []byte, key ed25519.PrivateKey, drop func(*audit.Record) bool) []byte {
	t.Helper()
	var out bytes.Buffer
	var seq, since uint64
	prev, dropped := "", 0
	for _, ln := range bytes.SplitAfter(log, []byte("\n")) {
		var r audit.Record
		if len(ln) == 0 || json.Unmarshal(ln, &r) != nil {
			continue
		}
		if drop(&r) {
			dropped++
			continue
		}
		seq++
		r.Seq, r.Prev = seq, prev
		if r.Checkpoint != nil {
			var head [32]byte
			hex.Decode(head[:], []byte(prev))
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
		prev = hexSum(b)
		out.Write(append(b, '\n'))
	}
	if dropped == 0 {
		t.Fatal("forgery dropped nothing")
	}
	if _, err := audit.Verify(bytes.NewReader(out.Bytes()), key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("forgery not self-consistent: %v", err)
	}
	return out.Bytes()
}

// TestAuditForgeryScripted is the attack of issue 10 against a running
// dev cluster: with node n1's data directory, rewrite its audit log
// without three encrypt records and re-sign it with anything found on
// that disk (DATA/audit.key holds the seed only wrapped now, so the forger
// signs with its own key, as it would with the old clear seed). `keyd
// audit verify` against the anchors another node holds says TAMPERED.
func TestAuditForgeryScripted(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	d := startDev(t, "-listen", "127.0.0.1:0", "-nodes", "3", "-data", data)
	env := d.env
	nodes := strings.Split(env[envAddr], ",")
	if _, err := runCmd(t, env, "", "key", "create", "forge-k"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		if _, err := runCmd(t, env, fmt.Sprintf("secret %d", i), "key", "encrypt", "forge-k", "-addr", nodes[0]); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	copyFile := filepath.Join(dir, "n1.log")
	// The auditor's copy and the anchors, taken while n1 runs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := runCmd(t, env, "", "audit", "fetch", "-addr", nodes[0], "-anchors-from", nodes[1], "-out", copyFile)
		if err != nil {
			t.Fatalf("audit fetch: %v", err)
		}
		b, _ := os.ReadFile(copyFile + ".anchors")
		var a api.AuditAnchors
		if json.Unmarshal(b, &a) == nil && a.PublicKey != "" && len(a.Anchors) > 0 {
			if anchoredEncrypts(t, copyFile, a) >= 6 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1's encrypts were not anchored: %q", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.stop(t)
	logPath := filepath.Join(data, "n1", "audit.log")
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(t, env, "", "audit", "verify", "-anchors", copyFile+".anchors", logPath); err != nil || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("intact log: %q, %v", out, err)
	}
	keyFile, err := os.ReadFile(filepath.Join(data, "n1", "audit.key"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(keyFile, []byte(`"seed"`)) {
		t.Fatal("DATA/audit.key holds the signing seed in the clear")
	}
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	n := 0
	forged := forgeLog(t, log, forger, func(r *audit.Record) bool {
		if r.Op == "key.encrypt" && n < 3 {
			n++
			return true
		}
		return false
	})
	if err := os.WriteFile(logPath, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, env, "", "audit", "verify", "-anchors", copyFile+".anchors", logPath)
	if !errors.Is(err, errAuditTampered) || !strings.HasPrefix(out, "TAMPERED: "+logPath+" line ") {
		t.Fatalf("forged log: got %q, %v; want TAMPERED", out, err)
	}
}

// anchoredEncrypts counts key.encrypt records of a log at or below its
// last anchor.
func anchoredEncrypts(t *testing.T, path string, a api.AuditAnchors) int {
	t.Helper()
	last := a.Anchors[len(a.Anchors)-1].Seq
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ln := range bytes.SplitAfter(b, []byte("\n")) {
		var r audit.Record
		if json.Unmarshal(ln, &r) == nil && r.Op == "key.encrypt" && r.Seq <= last {
			n++
		}
	}
	return n
}
