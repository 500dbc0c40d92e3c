package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func anchorOf(h Head) Anchor { return Anchor{Seq: h.Seq, Head: hex.EncodeToString(h.Hash[:])} }

// anchoredLog writes 12 records with a checkpoint every 4, anchoring the
// head after every 3 records and at Close, as keyd does through Raft.
func anchoredLog(t *testing.T) (string, ed25519.PublicKey, []Anchor) {
	t.Helper()
	cfg := testConfig(t)
	cfg.CheckpointEvery = 4
	l := mustOpen(t, cfg)
	var anchors []Anchor
	for i := 0; i < 12; i += 3 {
		logN(t, l, i, 3)
		anchors = append(anchors, anchorOf(l.Head()))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	anchors = append(anchors, anchorOf(l.Head()))
	return cfg.Path, l.PublicKey(), anchors
}

func verifyAnchored(b []byte, pub ed25519.PublicKey, anchors []Anchor) (*Report, error) {
	v, err := NewVerifier(pub, anchors)
	if err != nil {
		return nil, err
	}
	if err := v.Add("audit.log", bytes.NewReader(b)); err != nil {
		return nil, err
	}
	return v.Finish()
}

// TestVerifyAgainstAnchors: every way of rewriting a log that the
// signatures alone let through (cut at a checkpoint, truncated tail,
// edited last line, emptied file, records dropped and the chain and
// checkpoints rebuilt with a key found on disk) fails against the
// anchors, naming the first line that may be bad.
func TestVerifyAgainstAnchors(t *testing.T) {
	t.Parallel()
	path, pub, anchors := anchoredLog(t)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verifyAnchored(orig, pub, anchors)
	if err != nil {
		t.Fatalf("intact log: %v", err)
	}
	if rep.Anchors != 4 || rep.Unanchored != 0 || rep.LastAnchor != rep.LastSeq {
		t.Fatalf("intact log: %+v", rep)
	}
	lines := bytes.SplitAfter(orig, []byte("\n"))
	lines = lines[:len(lines)-1]

	// A forger with the signing key (the old layout kept it on disk):
	// rewrite the log without records 5-7, rebuilding chain and
	// checkpoints.
	_, forgedKey := pub, ed25519.PrivateKey(nil)
	forgedPath := filepath.Join(t.TempDir(), "forged.log")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	forgedKey = priv
	cfg := testConfig(t)
	cfg.Path, cfg.SigningKey, cfg.CheckpointEvery = forgedPath, forgedKey, 4
	fl := mustOpen(t, cfg)
	for i := 0; i < 12; i++ {
		if i >= 5 && i <= 7 {
			continue
		}
		if err := fl.Log(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	fl.Close()
	forged, _ := os.ReadFile(forgedPath)

	lastCP := 0
	for i, ln := range lines {
		if bytes.Contains(ln, []byte(OpCheckpoint)) && i < len(lines)-1 {
			lastCP = i
		}
	}
	edited := bytes.Join(lines[:len(lines)-1], nil)
	last := bytes.Replace(lines[len(lines)-1], []byte(`"outcome":"ok"`), []byte(`"outcome":"no"`), 1)
	edited = append(edited, last...)

	tests := []struct {
		name string
		log  []byte
		pub  ed25519.PublicKey
		want string
	}{
		{"cut at a checkpoint", bytes.Join(lines[:lastCP+1], nil), pub, "records were cut"},
		{"tail truncated", bytes.Join(lines[:len(lines)-2], nil), pub, "records were cut"},
		{"last line edited", edited, pub, "does not match the cluster's anchor"},
		{"emptied", nil, pub, "the log is empty but the cluster anchored"},
		{"records dropped and re-signed with the disk key", forged, forgedKey.Public().(ed25519.PublicKey), "does not match the cluster's anchor"},
		{"records dropped, checked with the cluster's key", forged, pub, ""},
		{"different key", orig, forgedKey.Public().(ed25519.PublicKey), "signature does not verify"},
		{"middle record removed", bytes.Join(append(append([][]byte{}, lines[:2]...), lines[3:]...), nil), pub, "records missing"},
		{"records swapped", bytes.Join(append(append(append([][]byte{}, lines[:1]...), lines[2], lines[1]), lines[3:]...), nil), pub, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := verifyAnchored(tt.log, tt.pub, anchors)
			var ve *VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, ErrTampered) {
				t.Fatalf("got %v, want a VerifyError", err)
			}
			if !strings.Contains(ve.Reason, tt.want) {
				t.Fatalf("got %v, want reason containing %q", err, tt.want)
			}
			if ve.Line < 1 || ve.File != "audit.log" {
				t.Fatalf("error does not name a line: %+v", ve)
			}
		})
	}
}

// TestVerifyUnanchoredTail: records after the last anchor verify but are
// counted as unanchored, never as anchored.
func TestVerifyUnanchoredTail(t *testing.T) {
	t.Parallel()
	path, pub, anchors := anchoredLog(t)
	b, _ := os.ReadFile(path)
	rep, err := verifyAnchored(b, pub, anchors[:2])
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastAnchor != anchors[1].Seq || rep.Unanchored != rep.LastSeq-anchors[1].Seq || rep.Unanchored == 0 {
		t.Fatalf("got %+v", rep)
	}
}

// TestUnsignedUntilKeyInstalled: a Logger opened without a key (a sealed
// node) chains records without checkpoints; installing the key signs
// them; removing it (sealing) signs first and then stops.
func TestUnsignedUntilKeyInstalled(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	priv := cfg.SigningKey
	cfg.SigningKey = nil
	l := mustOpen(t, cfg)
	logN(t, l, 0, 3)
	if l.PublicKey() != nil {
		t.Fatal("public key without a signing key")
	}
	if err := l.SetSigningKey(priv); err != nil {
		t.Fatal(err)
	}
	logN(t, l, 3, 2)
	if err := l.SetSigningKey(nil); err != nil {
		t.Fatal(err)
	}
	logN(t, l, 5, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := verifyFile(t, cfg.Path, priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	// 6 records, a checkpoint after 3 (key installed) and after 5 (key
	// removed); none at Close without a key.
	if rep.Records != 6 || rep.Checkpoints != 2 || rep.Unsigned != 1 || rep.Head(t) != 8 {
		t.Fatalf("got %+v", rep)
	}
	if h := l.Head(); h.Seq != 8 {
		t.Fatalf("head %+v after close", h)
	}
}

func (r *Report) Head(t *testing.T) uint64 { return r.LastSeq }

// TestMovedFileRefused: after `mv audit.log x; mkdir audit.log` the
// Logger refuses records (it used to write them to the unlinked file),
// and writes again once the file is moved back.
func TestMovedFileRefused(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.CheckInterval = 10 * time.Millisecond
	l := mustOpen(t, cfg)
	logN(t, l, 0, 2)
	aside := cfg.Path + ".x"
	if err := os.Rename(cfg.Path, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(cfg.Path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := l.Log(context.Background(), rec(2)); !errors.Is(err, ErrSinkMoved) {
		t.Fatalf("Log after the file was replaced: got %v, want %v", err, ErrSinkMoved)
	}
	if l.Healthy() {
		t.Fatal("Healthy with the file replaced")
	}
	if err := l.Reopen(); err == nil {
		t.Fatal("Reopen adopted a directory")
	}
	os.Remove(cfg.Path)
	if err := os.Rename(aside, cfg.Path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !l.Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("still unhealthy after the file came back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	logN(t, l, 2, 1)
	l.Close()
	if rep := mustVerify(t, cfg.Path, l.PublicKey()); rep.Records != 3 {
		t.Fatalf("got %+v", rep)
	}
}

// TestReopenAfterLogrotate: logrotate moves the file and creates an empty
// one; Reopen (SIGHUP) continues the chain in it, and both files verify
// as one chain.
func TestReopenAfterLogrotate(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := mustOpen(t, cfg)
	logN(t, l, 0, 3)
	old := cfg.Path + ".1"
	if err := os.Rename(cfg.Path, old); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	logN(t, l, 3, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(l.PublicKey(), []Anchor{anchorOf(l.Head())})
	for _, p := range []string{old, cfg.Path} {
		f, _ := os.Open(p)
		if err := v.Add(p, f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if rep, err := v.Finish(); err != nil || rep.Records != 5 {
		t.Fatalf("got %+v, %v", rep, err)
	}
}

// TestRotation: by size, the chain continues across files, closed files
// are gzipped and only RotateKeep are kept; the kept files and the live
// one verify as one chain against the anchors, and dropping a middle
// file fails.
func TestRotation(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.RotateSize = 1500
	cfg.RotateKeep = 3
	cfg.CheckpointEvery = 5
	l := mustOpen(t, cfg)
	var anchors []Anchor
	for i := 0; i < 60; i += 4 {
		logN(t, l, i, 4)
		anchors = append(anchors, anchorOf(l.Head()))
	}
	logN(t, l, 60, 1) // the live file holds records too
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	anchors = append(anchors, anchorOf(l.Head()))
	files, err := RotatedFiles(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("kept %v, want 3 files", files)
	}
	for _, f := range files {
		if !strings.HasSuffix(f, ".gz") {
			t.Fatalf("%s not compressed", f)
		}
	}
	open := func(p string) io.Reader {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(p, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			b, err = io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
		}
		return bytes.NewReader(b)
	}
	run := func(paths []string) (*Report, error) {
		v, err := NewVerifier(l.PublicKey(), anchors)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if err := v.Add(p, open(p)); err != nil {
				return nil, err
			}
		}
		return v.Finish()
	}
	all := append(append([]string{}, files...), cfg.Path)
	rep, err := run(all)
	if err != nil {
		t.Fatal(err)
	}
	if rep.FirstSeq <= 1 || rep.AnchorsBefore == 0 || rep.Unanchored != 0 {
		t.Fatalf("got %+v", rep)
	}
	if _, err := run([]string{files[0], files[2], cfg.Path}); !errors.Is(err, ErrTampered) {
		t.Fatalf("middle file dropped: got %v", err)
	}
	if _, err := run(files); !errors.Is(err, ErrTampered) {
		t.Fatalf("live file dropped: got %v", err)
	}
}
