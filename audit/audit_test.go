package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testConfig(t testing.TB) Config {
	t.Helper()
	mac := make([]byte, 32)
	if _, err := rand.Read(mac); err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Path:       filepath.Join(t.TempDir(), "audit.log"),
		HMACKey:    mac,
		SigningKey: priv,
		Node:       "n1",
	}
}

func mustOpen(t testing.TB, cfg Config) *Logger {
	t.Helper()
	l, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func rec(i int) Record {
	return Record{Op: "key.encrypt", Key: fmt.Sprintf("key-%02d", i), Version: 1, Outcome: "ok",
		Identity: "token:0123abcd", RequestID: fmt.Sprintf("req-%d", i), Source: "127.0.0.1:5000"}
}

func logN(t testing.TB, l *Logger, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := l.Log(context.Background(), rec(i)); err != nil {
			t.Fatalf("Log %d: %v", i, err)
		}
	}
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func verifyFile(t testing.TB, path string, pub ed25519.PublicKey) (*Report, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Verify(f, pub)
}

func mustVerify(t testing.TB, path string, pub ed25519.PublicKey) *Report {
	t.Helper()
	rep, err := verifyFile(t, path, pub)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	rep.Unanchored = 0 // no anchors given: every line is unanchored
	return rep
}

func TestLogAndVerify(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.CheckpointEvery = 4
	l := mustOpen(t, cfg)
	logN(t, l, 0, 10)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	rep := mustVerify(t, cfg.Path, l.PublicKey())
	// Checkpoints after records 4 and 8, and one at Close for 9 and 10.
	want := Report{Records: 10, Checkpoints: 3, FirstSeq: 1, LastSeq: 13}
	if *rep != want {
		t.Fatalf("got %+v, want %+v", *rep, want)
	}
	lines := readLines(t, cfg.Path)
	var first Record
	if err := json.Unmarshal(lines[0], &first); err != nil {
		t.Fatal(err)
	}
	if first.Seq != 1 || first.Prev != "" || first.Node != "n1" || first.Time.IsZero() || first.Key != "key-00" {
		t.Fatalf("got first record %+v", first)
	}
	st, err := os.Stat(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Fatalf("got mode %v, want 0600", got)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.CheckpointEvery = 100
	for round := range 3 {
		l := mustOpen(t, cfg)
		logN(t, l, round*3, 3)
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	pub := cfg.SigningKey.Public().(ed25519.PublicKey)
	rep := mustVerify(t, cfg.Path, pub)
	want := Report{Records: 9, Checkpoints: 3, FirstSeq: 1, LastSeq: 12}
	if *rep != want {
		t.Fatalf("got %+v, want %+v", *rep, want)
	}
	// Reopen and close without logging: no extra checkpoint.
	l := mustOpen(t, cfg)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(readLines(t, cfg.Path)); got != 12 {
		t.Fatalf("got %d lines after an idle open, want 12", got)
	}
}

// TestReopenAfterCrash removes the final checkpoint, as if the node had
// died before Close: the next Logger must count the unsigned records so
// its checkpoint covers them exactly.
func TestReopenAfterCrash(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.CheckpointEvery = 4
	l := mustOpen(t, cfg)
	logN(t, l, 0, 6)
	l.Close()
	lines := readLines(t, cfg.Path)
	// 4 records, checkpoint, 2 records, final checkpoint.
	lines = lines[:len(lines)-1]
	tests := []struct {
		name string
		tail string
	}{
		{name: "clean crash", tail: ""},
		{name: "torn line", tail: `{"seq":8,"prev":"ab`},
		{name: "torn newline", tail: "\x00\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := cfg
			cfg.Path = filepath.Join(t.TempDir(), "audit.log")
			if err := os.WriteFile(cfg.Path, append(bytes.Join(lines, nil), tt.tail...), 0o600); err != nil {
				t.Fatal(err)
			}
			l := mustOpen(t, cfg)
			logN(t, l, 6, 1)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			rep := mustVerify(t, cfg.Path, l.PublicKey())
			want := Report{Records: 7, Checkpoints: 2, FirstSeq: 1, LastSeq: 9}
			if *rep != want {
				t.Fatalf("got %+v, want %+v", *rep, want)
			}
		})
	}
}

// TestReopenKeepsUnterminatedRecord: a record whose newline was lost is
// kept, not cut.
func TestReopenKeepsUnterminatedRecord(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := mustOpen(t, cfg)
	logN(t, l, 0, 2)
	l.Close()
	lines := readLines(t, cfg.Path)
	body := bytes.Join(lines[:2], nil)
	if err := os.WriteFile(cfg.Path, body[:len(body)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, cfg)
	logN(t, l, 2, 1)
	l.Close()
	rep := mustVerify(t, cfg.Path, l.PublicKey())
	if rep.Records != 3 || rep.LastSeq != 4 {
		t.Fatalf("got %+v, want 3 records, last seq 4", *rep)
	}
}

func TestOpenCorruptTail(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	if err := os.WriteFile(cfg.Path, []byte("not json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got err %v, want %v", err, ErrCorrupt)
	}
}

func TestOpenInvalidConfig(t *testing.T) {
	t.Parallel()
	good := testConfig(t)
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"no path", func(c *Config) { c.Path = "" }},
		{"short hmac key", func(c *Config) { c.HMACKey = c.HMACKey[:16] }},
		{"short signing key", func(c *Config) { c.SigningKey = c.SigningKey[:16] }},
		{"no node", func(c *Config) { c.Node = "" }},
		{"negative checkpoint", func(c *Config) { c.CheckpointEvery = -1 }},
		{"negative batch", func(c *Config) { c.MaxBatch = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			tt.edit(&cfg)
			if _, err := Open(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got err %v, want %v", err, ErrInvalidConfig)
			}
		})
	}
}

func TestLogRejects(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := mustOpen(t, cfg)
	const secret = "raw-plaintext-value"
	tests := []struct {
		name string
		r    Record
	}{
		{"no op", Record{Outcome: "ok"}},
		{"no outcome", Record{Op: "key.encrypt"}},
		{"checkpoint op", Record{Op: OpCheckpoint, Outcome: "ok"}},
		{"checkpoint payload", Record{Op: "x", Outcome: "ok", Checkpoint: &Checkpoint{}}},
		{"raw hashed value", Record{Op: "key.encrypt", Outcome: "ok", Hashed: map[string]string{"plaintext": secret}}},
		{"uppercase hmac", Record{Op: "key.encrypt", Outcome: "ok", Hashed: map[string]string{"plaintext": strings.ToUpper(l.HMAC([]byte("x")))}}},
		{"too large", Record{Op: "key.encrypt", Outcome: "ok", Key: strings.Repeat("k", maxLine)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := l.Log(t.Context(), tt.r)
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("got err %v, want %v", err, ErrInvalidRecord)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error echoes the raw value: %v", err)
			}
		})
	}
	l.Close()
	if b, _ := os.ReadFile(cfg.Path); len(b) != 0 {
		t.Fatalf("rejected records were written: %q", b)
	}
}

func TestCloseIdempotentAndLogAfterClose(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := mustOpen(t, cfg)
	logN(t, l, 0, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: got %v, want nil", err)
	}
	if err := l.Log(t.Context(), rec(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("got err %v, want %v", err, ErrClosed)
	}
	if got := l.HMAC([]byte("x")); len(got) != 64 {
		t.Fatalf("HMAC after Close: got %q", got)
	}
}

func TestLogCanceledContext(t *testing.T) {
	t.Parallel()
	l := mustOpen(t, testConfig(t))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.Log(ctx, rec(0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("got err %v, want %v", err, context.Canceled)
	}
}

// TestConcurrentLog runs 64 writers; the chain must stay valid and hold
// every record exactly once.
func TestConcurrentLog(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.CheckpointEvery = 50
	cfg.MaxBatch = 16
	l := mustOpen(t, cfg)
	const writers, each = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := l.Log(t.Context(), rec(w*each+i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Log: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, cfg.Path, l.PublicKey())
	if rep.Records != writers*each || rep.Unsigned != 0 {
		t.Fatalf("got %+v, want %d records, none unsigned", *rep, writers*each)
	}
	seen := map[string]bool{}
	for _, line := range readLines(t, cfg.Path) {
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		if r.Checkpoint == nil {
			if seen[r.RequestID] {
				t.Fatalf("request %s logged twice", r.RequestID)
			}
			seen[r.RequestID] = true
		}
	}
	if len(seen) != writers*each {
		t.Fatalf("got %d distinct records, want %d", len(seen), writers*each)
	}
}

// gateSink blocks its first failing write until released, so a test can
// queue requests behind a write that then fails.
type gateSink struct {
	inner   sink
	mu      sync.Mutex
	fail    bool
	entered chan struct{}
	release chan struct{}
	writes  int
	syncs   int
}

func (s *gateSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	fail := s.fail
	s.writes++
	s.mu.Unlock()
	if fail {
		close(s.entered)
		<-s.release
		return 0, errors.New("injected: no space left on device")
	}
	return s.inner.Write(p)
}

func (s *gateSink) Sync() error {
	s.mu.Lock()
	s.syncs++
	s.mu.Unlock()
	return s.inner.Sync()
}

func TestSinkFailure(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	gs := &gateSink{entered: make(chan struct{}), release: make(chan struct{})}
	cfg.wrapSink = func(s sink) sink { gs.inner = s; return gs }
	l := mustOpen(t, cfg)
	logN(t, l, 0, 1)

	gs.mu.Lock()
	gs.fail = true
	gs.mu.Unlock()
	const pending = 8
	results := make(chan error, pending+1)
	go func() { results <- l.Log(context.Background(), rec(1)) }()
	<-gs.entered // the writer is inside the failing write
	for i := range pending {
		go func() { results <- l.Log(context.Background(), rec(2+i)) }()
	}
	for len(l.reqC) < pending { // wait until all are queued behind the write
		runtime.Gosched()
	}
	close(gs.release)
	for range pending + 1 {
		if err := <-results; !errors.Is(err, ErrSinkFailed) {
			t.Fatalf("pending Log: got err %v, want %v", err, ErrSinkFailed)
		}
	}
	if err := l.Log(t.Context(), rec(99)); !errors.Is(err, ErrSinkFailed) {
		t.Fatalf("later Log: got err %v, want %v", err, ErrSinkFailed)
	}
	if err := l.Close(); !errors.Is(err, ErrSinkFailed) {
		t.Fatalf("Close: got err %v, want %v", err, ErrSinkFailed)
	}
	if err := l.Log(t.Context(), rec(100)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Log after Close: got err %v, want %v", err, ErrClosed)
	}
	// What reached the file before the failure still verifies.
	if rep := mustVerify(t, cfg.Path, l.PublicKey()); rep.Records != 1 {
		t.Fatalf("got %d records, want 1", rep.Records)
	}
}

// TestNoRawSecretsInFile logs sensitive values through HMAC and scans the
// file for them in every encoding a careless writer might use.
func TestNoRawSecretsInFile(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := mustOpen(t, cfg)
	secrets := [][]byte{
		[]byte("attack at dawn: the plaintext"),
		[]byte("keyd:v1:Y2lwaGVydGV4dC1ieXRlcw=="),
		[]byte("kd_tok_5f2b9c0e7d1a4b3c8e6f0a1b2c3d4e5f"),
		{0x00, 0xff, 0x10, 0x80, 0x7f, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07},
	}
	for i, s := range secrets {
		r := rec(i)
		r.Hashed = map[string]string{"plaintext": l.HMAC(s), "token": l.HMAC(s)}
		if err := l.Log(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	file, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		for _, enc := range []string{
			string(s), hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s),
			base64.RawURLEncoding.EncodeToString(s), hex.EncodeToString(sha256Sum(s)),
		} {
			if bytes.Contains(file, []byte(enc)) {
				t.Fatalf("the audit file contains a raw value (%q)", enc)
			}
		}
	}
	for _, k := range [][]byte{cfg.HMACKey, cfg.SigningKey, cfg.SigningKey.Seed()} {
		if bytes.Contains(file, []byte(hex.EncodeToString(k))) || bytes.Contains(file, []byte(base64.StdEncoding.EncodeToString(k))) {
			t.Fatal("the audit file contains a key")
		}
	}
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestHMAC(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := mustOpen(t, cfg)
	other := testConfig(t)
	l2 := mustOpen(t, other)
	a, b := l.HMAC([]byte("v")), l.HMAC([]byte("v"))
	if a != b || len(a) != 64 {
		t.Fatalf("got %q and %q, want equal 64-digit hex", a, b)
	}
	if l.HMAC([]byte("w")) == a {
		t.Fatal("different values, same HMAC")
	}
	if l2.HMAC([]byte("v")) == a {
		t.Fatal("different keys, same HMAC")
	}
}

func TestSecretsRedacted(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := mustOpen(t, cfg)
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		for _, v := range []any{cfg, &cfg, l} {
			out := fmt.Sprintf(format, v)
			for _, k := range [][]byte{cfg.HMACKey, cfg.SigningKey.Seed()} {
				if strings.Contains(out, hex.EncodeToString(k)) || strings.Contains(out, fmt.Sprint(k)) ||
					strings.Contains(out, fmt.Sprintf("%v", k[:4])[1:8]) {
					t.Fatalf("%s of %T leaks a key: %s", format, v, out)
				}
			}
		}
	}
}

// failSyncSink writes through but fails every fsync.
type failSyncSink struct{ inner sink }

func (s *failSyncSink) Write(p []byte) (int, error) { return s.inner.Write(p) }
func (s *failSyncSink) Sync() error                 { return errors.New("disk gone") }

func TestSyncInterval(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.SyncInterval = 5 * time.Millisecond
	l := mustOpen(t, cfg)
	logN(t, l, 0, 50)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Verify(f, cfg.SigningKey.Public().(ed25519.PublicKey))
	if err != nil || rep.Records != 50 {
		t.Fatalf("verify after interval-synced writes: %+v %v", rep, err)
	}

	// A failing fsync on the timer fails the log: later calls refuse.
	cfg2 := testConfig(t)
	cfg2.SyncInterval = time.Millisecond
	cfg2.wrapSink = func(s sink) sink { return &failSyncSink{inner: s} }
	l2 := mustOpen(t, cfg2)
	if err := l2.Log(t.Context(), rec(1)); err != nil {
		t.Fatalf("first Log (written, not yet synced): %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := l2.Log(t.Context(), rec(2))
		if errors.Is(err, ErrSinkFailed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fsync failure not reported: last err %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	_ = l2.Close()
}
