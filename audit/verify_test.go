package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"
)

// sampleLog writes 10 records with a checkpoint every 4 and returns its
// lines: records at indexes 0-3, 5-8, 10-11 and checkpoints at 4, 9, 12.
func sampleLog(t testing.TB) ([][]byte, ed25519.PublicKey) {
	t.Helper()
	cfg := testConfig(t)
	cfg.CheckpointEvery = 4
	l := mustOpen(t, cfg)
	logN(t, l, 0, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return readLines(t, cfg.Path), l.PublicKey()
}

func join(lines [][]byte) []byte { return bytes.Join(lines, nil) }

func clone(lines [][]byte) [][]byte {
	out := make([][]byte, len(lines))
	for i, l := range lines {
		out[i] = bytes.Clone(l)
	}
	return out
}

// rechain recomputes prev (and checkpoint heads, signed with key) from
// line index from on, as an attacker who can hash but lacks the signing
// key would after editing a record.
func rechain(t testing.TB, lines [][]byte, from int, key ed25519.PrivateKey) [][]byte {
	t.Helper()
	for i := from; i < len(lines); i++ {
		var r Record
		if err := json.Unmarshal(lines[i], &r); err != nil {
			t.Fatal(err)
		}
		prev := sha256.Sum256(bytes.TrimSuffix(lines[i-1], []byte("\n")))
		r.Prev = hex.EncodeToString(prev[:])
		if r.Checkpoint != nil {
			r.Checkpoint.Head = r.Prev
			r.Checkpoint.Signature = ed25519.Sign(key, checkpointMessage(r.Seq, prev))
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		lines[i] = append(b, '\n')
	}
	return lines
}

func TestVerifyTampering(t *testing.T) {
	t.Parallel()
	orig, pub := sampleLog(t)
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)

	tests := []struct {
		name     string
		tamper   func([][]byte) [][]byte
		wantLine int
		wantSeq  uint64
	}{
		{name: "delete a line", wantLine: 3, wantSeq: 4, tamper: func(l [][]byte) [][]byte {
			return append(l[:2], l[3:]...)
		}},
		{name: "delete a checkpoint", wantLine: 5, wantSeq: 6, tamper: func(l [][]byte) [][]byte {
			return append(l[:4], l[5:]...)
		}},
		{name: "swap two lines", wantLine: 3, wantSeq: 4, tamper: func(l [][]byte) [][]byte {
			l[2], l[3] = l[3], l[2]
			return l
		}},
		{name: "duplicate a line", wantLine: 4, wantSeq: 3, tamper: func(l [][]byte) [][]byte {
			return append(l[:3], append([][]byte{l[2]}, l[3:]...)...)
		}},
		{name: "edit one byte of a record", wantLine: 3, wantSeq: 3, tamper: func(l [][]byte) [][]byte {
			i := bytes.Index(l[2], []byte("key-02"))
			l[2][i+2] = 'z' // key-02 -> kez-02: still valid JSON
			return l
		}},
		{name: "edit one byte of a checkpoint", wantLine: 5, wantSeq: 5, tamper: func(l [][]byte) [][]byte {
			i := bytes.Index(l[4], []byte(`"count":4`))
			l[4][i+len(`"count":`)] = '3'
			return l
		}},
		{name: "edit breaks the JSON", wantLine: 6, wantSeq: 6, tamper: func(l [][]byte) [][]byte {
			l[5][0] = '['
			return l
		}},
		{name: "edit seq", wantLine: 2, wantSeq: 7, tamper: func(l [][]byte) [][]byte {
			l[1] = bytes.Replace(l[1], []byte(`"seq":2`), []byte(`"seq":7`), 1)
			return l
		}},
		{name: "edit and rechain with a forged checkpoint signature", wantLine: 5, wantSeq: 5, tamper: func(l [][]byte) [][]byte {
			l[1] = bytes.Replace(l[1], []byte(`"outcome":"ok"`), []byte(`"outcome":"forbidden"`), 1)
			return rechain(t, l, 2, attacker)
		}},
		{name: "flip a signature byte at the end", wantLine: 13, wantSeq: 13, tamper: func(l [][]byte) [][]byte {
			var r Record
			json.Unmarshal(l[12], &r)
			r.Checkpoint.Signature[0] ^= 1
			b, _ := json.Marshal(r)
			l[12] = append(b, '\n')
			return l
		}},
		{name: "checkpoint head differs from prev", wantLine: 10, wantSeq: 10, tamper: func(l [][]byte) [][]byte {
			var r Record
			json.Unmarshal(l[9], &r)
			r.Checkpoint.Head = strings.Repeat("0", 64)
			b, _ := json.Marshal(r)
			l[9] = append(b, '\n')
			return rechain(t, l, 10, attacker)
		}},
		{name: "empty line", wantLine: 4, wantSeq: 4, tamper: func(l [][]byte) [][]byte {
			return append(l[:3], append([][]byte{[]byte("\n")}, l[3:]...)...)
		}},
		{name: "unknown field", wantLine: 1, wantSeq: 1, tamper: func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(`{`), []byte(`{"extra":1,`), 1)
			return l
		}},
		{name: "seq 1 with a prev", wantLine: 1, wantSeq: 1, tamper: func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(`"prev":""`), []byte(`"prev":"`+strings.Repeat("ab", 32)+`"`), 1)
			return l
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Verify(bytes.NewReader(join(tt.tamper(clone(orig)))), pub)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("got err %v, want a *VerifyError", err)
			}
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("got err %v, want it to match ErrTampered", err)
			}
			if ve.Line != tt.wantLine || ve.Seq != tt.wantSeq {
				t.Fatalf("got line %d seq %d (%s), want line %d seq %d", ve.Line, ve.Seq, ve.Reason, tt.wantLine, tt.wantSeq)
			}
		})
	}
}

// TestVerifyWarnings covers what a hash chain alone cannot prove: those
// cases verify, with the gap spelled out in Report.Warning.
func TestVerifyWarnings(t *testing.T) {
	t.Parallel()
	orig, pub := sampleLog(t)
	tests := []struct {
		name     string
		lines    func([][]byte) [][]byte
		want     Report // Warning checked separately
		wantWarn string
	}{
		{name: "clean", lines: func(l [][]byte) [][]byte { return l },
			want: Report{Records: 10, Checkpoints: 3, FirstSeq: 1, LastSeq: 13}},
		{name: "unsigned tail", lines: func(l [][]byte) [][]byte { return l[:12] },
			want: Report{Records: 10, Checkpoints: 2, FirstSeq: 1, LastSeq: 12, Unsigned: 2}, wantWarn: "2 records after the last checkpoint (seq 10)"},
		{name: "no checkpoint", lines: func(l [][]byte) [][]byte { return l[:3] },
			want: Report{Records: 3, FirstSeq: 1, LastSeq: 3, Unsigned: 3}, wantWarn: "no checkpoint"},
		{name: "starts mid-chain", lines: func(l [][]byte) [][]byte { return l[5:] },
			want: Report{Records: 6, Checkpoints: 2, FirstSeq: 6, LastSeq: 13}, wantWarn: "starts at seq 6"},
		{name: "torn final line", lines: func(l [][]byte) [][]byte { return append(l[:12], l[12][:40]) },
			want: Report{Records: 10, Checkpoints: 2, FirstSeq: 1, LastSeq: 12, Unsigned: 2}, wantWarn: "line 13 is incomplete"},
		{name: "record without final newline", lines: func(l [][]byte) [][]byte {
			return append(l[:12], bytes.TrimSuffix(l[12], []byte("\n")))
		}, want: Report{Records: 10, Checkpoints: 3, FirstSeq: 1, LastSeq: 13}},
		{name: "empty", lines: func(l [][]byte) [][]byte { return nil }, wantWarn: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep, err := Verify(bytes.NewReader(join(tt.lines(clone(orig)))), pub)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			warn := rep.Warning
			rep.Warning = ""
			rep.Unanchored = 0 // no anchors given
			if *rep != tt.want {
				t.Fatalf("got %+v, want %+v", *rep, tt.want)
			}
			if tt.wantWarn == "" && warn != "" || !strings.Contains(warn, tt.wantWarn) {
				t.Fatalf("got warning %q, want one containing %q", warn, tt.wantWarn)
			}
		})
	}
}

func TestVerifyWrongKey(t *testing.T) {
	t.Parallel()
	lines, _ := sampleLog(t)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	_, err := Verify(bytes.NewReader(join(lines)), other)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Line != 5 {
		t.Fatalf("got err %v, want a VerifyError at line 5", err)
	}
	if _, err := Verify(bytes.NewReader(join(lines)), other[:31]); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("got err %v, want %v", err, ErrInvalidKey)
	}
}

func TestVerifyLongLine(t *testing.T) {
	t.Parallel()
	lines, pub := sampleLog(t)
	long := append(bytes.Repeat([]byte("x"), maxLine+10), '\n')
	_, err := Verify(bytes.NewReader(join(append(lines[:2], long))), pub)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Line != 3 {
		t.Fatalf("got err %v, want a VerifyError at line 3", err)
	}
}

func TestParsePublicKey(t *testing.T) {
	t.Parallel()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{name: "hex", in: []byte(hex.EncodeToString(pub))},
		{name: "hex with newline", in: []byte(" " + hex.EncodeToString(pub) + "\n")},
		{name: "pem", in: pemKey},
		{name: "short hex", in: []byte(hex.EncodeToString(pub[:31])), wantErr: ErrInvalidKey},
		{name: "not hex", in: []byte(strings.Repeat("zz", 32)), wantErr: ErrInvalidKey},
		{name: "wrong pem type", in: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), wantErr: ErrInvalidKey},
		{name: "bad pem body", in: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")}), wantErr: ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePublicKey(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got err %v, want %v", err, tt.wantErr)
			}
			if err == nil && !got.Equal(pub) {
				t.Fatalf("got key %x, want %x", got, pub)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	lines, pub := sampleLog(f)
	f.Add(join(lines))
	f.Add(join(lines[:5]))
	f.Add(join(lines[3:7]))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"prev":"","op":"audit.checkpoint","outcome":"ok","time":"2024-01-01T00:00:00Z","node":"n","checkpoint":{"count":0,"head":"","sig":""}}`))
	f.Add([]byte("\n\n\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Verify(bytes.NewReader(data), pub)
		if err != nil {
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("got err %v, want a *VerifyError", err)
			}
			return
		}
		if rep.Records+rep.Checkpoints > 0 && rep.LastSeq-rep.FirstSeq+1 != rep.Records+rep.Checkpoints {
			t.Fatalf("report %+v: seq span does not match line count", *rep)
		}
	})
}

// TestVerifyFileFromDisk checks Verify on an *os.File as the CLI uses it.
func TestVerifyFileFromDisk(t *testing.T) {
	t.Parallel()
	lines, pub := sampleLog(t)
	path := t.TempDir() + "/a.log"
	if err := os.WriteFile(path, join(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, path, pub); rep.LastSeq != 13 {
		t.Fatalf("got last seq %d, want 13", rep.LastSeq)
	}
}
