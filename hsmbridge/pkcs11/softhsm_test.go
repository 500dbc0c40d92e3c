//go:build cgo

package pkcs11

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/hsmbridge/hsmtest"
	"github.com/keyd/keyd/hsmbridge/softhsm"
	"github.com/miekg/pkcs11"
)

// Tests against a real SoftHSM2. SoftHSM2 reads SOFTHSM2_CONF and lists its
// tokens once per process, at C_Initialize, so TestMain makes this run's
// own token directory and every token before any test opens the module.
const (
	tokenA   = "keyd-test-a"
	tokenB   = "keyd-test-b"
	tokenPIN = "keyd-test-pin" // only TestSoftHSMWrongPIN logs in here
	userPIN  = "user-1234"
	soPIN    = "so-5678"
)

var softHSM struct {
	module   string
	missing  error // SoftHSM2 is not installed
	setupErr error // installed, but the token setup failed
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := setupSoftHSM()
		if dir != "" {
			defer os.RemoveAll(dir)
		}
		softHSM.setupErr = err
		return m.Run()
	}())
}

func setupSoftHSM() (dir string, err error) {
	module, err := softhsm.ModulePath()
	if err == nil {
		_, err = softhsm.UtilPath()
	}
	if err != nil {
		softHSM.missing = err
		return "", nil
	}
	softHSM.module = module
	dir, err = os.MkdirTemp("", "keyd-softhsm-test-*")
	if err != nil {
		return "", err
	}
	conf, err := softhsm.WriteConfig(dir)
	if err != nil {
		return dir, err
	}
	for _, label := range []string{tokenA, tokenB, tokenPIN} {
		if err := softhsm.InitToken(context.Background(), conf, label, userPIN, soPIN); err != nil {
			return dir, err
		}
	}
	return dir, os.Setenv(softhsm.ConfEnv, conf)
}

// needSoftHSM returns the module path. Without SoftHSM2 it skips the test,
// or fails it when KEYD_SOFTHSM=1 says SoftHSM2 must be there.
func needSoftHSM(tb testing.TB) string {
	tb.Helper()
	if softHSM.setupErr != nil {
		tb.Fatalf("SoftHSM2 token setup: %v", softHSM.setupErr)
	}
	if softHSM.missing != nil {
		if os.Getenv("KEYD_SOFTHSM") == "1" {
			tb.Fatalf("KEYD_SOFTHSM=1 but %v (run scripts/setup-softhsm.sh)", softHSM.missing)
		}
		tb.Skipf("skipping SoftHSM2 test: %v (run scripts/setup-softhsm.sh; KEYD_SOFTHSM=1 makes this fail)", softHSM.missing)
	}
	return softHSM.module
}

func softConfig(tb testing.TB, token string) Config {
	return Config{Module: needSoftHSM(tb), TokenLabel: token, PIN: userPIN}
}

func openSoft(tb testing.TB, token string) *HSM {
	tb.Helper()
	h, err := Open(tb.Context(), softConfig(tb, token))
	if err != nil {
		tb.Fatalf("Open(%s): %v", token, err)
	}
	tb.Cleanup(func() {
		if err := h.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return h
}

func TestSoftHSMConformance(t *testing.T) {
	t.Parallel()
	needSoftHSM(t)
	hsmtest.Run(t, func(t *testing.T) hsmbridge.HSM { return openSoft(t, tokenA) })
}

// keyAttributes reads attributes of label's key through the raw context:
// the test-only way to try to read what the HSM API never exposes.
func keyAttributes(t *testing.T, h *HSM, label string, types ...uint) ([]*pkcs11.Attribute, error) {
	t.Helper()
	ctx, ok := h.p.(*pkcs11.Ctx)
	if !ok {
		t.Fatalf("HSM is not backed by *pkcs11.Ctx but %T", h.p)
	}
	var attrs []*pkcs11.Attribute
	_, err := h.withSession(t.Context(), func(s pkcs11.SessionHandle) ([]byte, error) {
		o, err := h.findKey(s, label, true)
		if err != nil {
			return nil, err
		}
		tmpl := make([]*pkcs11.Attribute, len(types))
		for i, typ := range types {
			tmpl[i] = pkcs11.NewAttribute(typ, nil)
		}
		attrs, err = ctx.GetAttributeValue(s, o, tmpl)
		return nil, err
	})
	return attrs, err
}

func TestSoftHSMKeyAttributes(t *testing.T) {
	t.Parallel()
	h := openSoft(t, tokenA)
	const label = "attrs"
	if err := h.EnsureKey(t.Context(), label); err != nil {
		t.Fatal(err)
	}

	// The key's value cannot be read: CKA_SENSITIVE and not CKA_EXTRACTABLE.
	attrs, err := keyAttributes(t, h, label, pkcs11.CKA_VALUE)
	if !isCode(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
		t.Fatalf("reading CKA_VALUE: got err %v, want CKR_ATTRIBUTE_SENSITIVE", err)
	}
	for _, a := range attrs {
		if len(a.Value) > 0 {
			t.Fatalf("reading CKA_VALUE returned %d bytes", len(a.Value))
		}
	}

	b := func(v bool) []byte {
		if v {
			return []byte{1}
		}
		return []byte{0}
	}
	want := map[uint][]byte{
		pkcs11.CKA_KEY_TYPE:          pkcs11.NewAttribute(0, pkcs11.CKK_AES).Value,
		pkcs11.CKA_VALUE_LEN:         pkcs11.NewAttribute(0, 32).Value,
		pkcs11.CKA_TOKEN:             b(true),
		pkcs11.CKA_PRIVATE:           b(true),
		pkcs11.CKA_SENSITIVE:         b(true),
		pkcs11.CKA_ALWAYS_SENSITIVE:  b(true),
		pkcs11.CKA_EXTRACTABLE:       b(false),
		pkcs11.CKA_NEVER_EXTRACTABLE: b(true),
		pkcs11.CKA_ENCRYPT:           b(true),
		pkcs11.CKA_DECRYPT:           b(true),
		pkcs11.CKA_WRAP:              b(false),
		pkcs11.CKA_UNWRAP:            b(false),
		pkcs11.CKA_LABEL:             []byte(label),
	}
	var types []uint
	for typ := range want {
		types = append(types, typ)
	}
	attrs, err = keyAttributes(t, h, label, types...)
	if err != nil {
		t.Fatalf("reading attributes: %v", err)
	}
	if len(attrs) != len(types) {
		t.Fatalf("got %d attributes, want %d", len(attrs), len(types))
	}
	for _, a := range attrs {
		if !bytes.Equal(a.Value, want[a.Type]) {
			t.Errorf("attribute %#x: got %x, want %x", a.Type, a.Value, want[a.Type])
		}
	}
}

func TestSoftHSMKeyPersists(t *testing.T) {
	t.Parallel()
	cfg := softConfig(t, tokenA)
	ctx := t.Context()
	h1, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.EnsureKey(ctx, "persist"); err != nil {
		t.Fatal(err)
	}
	w, err := h1.Wrap(ctx, "persist", []byte("share"), []byte("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := openSoft(t, tokenA)
	got, err := h2.Unwrap(ctx, "persist", w, []byte("node-1"))
	if err != nil {
		t.Fatalf("Unwrap from a new HSM: %v", err)
	}
	if string(got) != "share" {
		t.Fatal("Unwrap from a new HSM: got a different plaintext")
	}
}

func TestSoftHSMWrongPIN(t *testing.T) {
	t.Parallel()
	// Nobody in this process is logged in to tokenPIN: the token itself
	// rejects the PIN.
	cfg := softConfig(t, tokenPIN)
	cfg.PIN = "wrong-pin"
	if h, err := cfg.Open(t.Context()); !errors.Is(err, hsmbridge.ErrLogin) || h != nil {
		t.Fatalf("Open with a wrong PIN: got (%v, %v), want (nil, ErrLogin)", h, err)
	}
	// While another HSM is logged in to tokenA the token accepts any PIN;
	// Open still refuses the wrong one.
	openSoft(t, tokenA)
	cfg = softConfig(t, tokenA)
	cfg.PIN = "wrong-pin"
	if h, err := cfg.Open(t.Context()); !errors.Is(err, hsmbridge.ErrLogin) || h != nil {
		t.Fatalf("Open with a wrong PIN while logged in: got (%v, %v), want (nil, ErrLogin)", h, err)
	}
}

func TestSoftHSMMissingToken(t *testing.T) {
	t.Parallel()
	cfg := softConfig(t, "no-such-token")
	h, err := cfg.Open(t.Context())
	if h != nil {
		t.Fatalf("Open: got an HSM for a missing token")
	}
	for _, want := range []error{ErrTokenNotFound, hsmbridge.ErrUnavailable} {
		if !errors.Is(err, want) {
			t.Errorf("Open: got err %v, want %v", err, want)
		}
	}
}

func TestSoftHSMCrossToken(t *testing.T) {
	t.Parallel()
	a, b := openSoft(t, tokenA), openSoft(t, tokenB)
	ctx := t.Context()
	const label = "cross"
	for _, h := range []*HSM{a, b} {
		if err := h.EnsureKey(ctx, label); err != nil {
			t.Fatal(err)
		}
	}
	w, err := a.Wrap(ctx, label, []byte("share"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Unwrap(ctx, label, w, nil); !errors.Is(err, hsmbridge.ErrUnwrap) {
		t.Fatalf("Unwrap on the other token, same label: got err %v, want ErrUnwrap", err)
	}
	if err := a.EnsureKey(ctx, "only-on-a"); err != nil {
		t.Fatal(err)
	}
	w, err = a.Wrap(ctx, "only-on-a", []byte("share"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Unwrap(ctx, "only-on-a", w, nil); !errors.Is(err, hsmbridge.ErrKeyNotFound) {
		t.Fatalf("Unwrap on a token without the key: got err %v, want ErrKeyNotFound", err)
	}
}

func benchSoft(b *testing.B) *HSM {
	h := openSoft(b, tokenB)
	if err := h.EnsureKey(b.Context(), "bench"); err != nil {
		b.Fatal(err)
	}
	return h
}

func BenchmarkWrap(b *testing.B) {
	h := benchSoft(b)
	pt, aad := make([]byte, 32), []byte("node-1")
	for b.Loop() {
		if _, err := h.Wrap(b.Context(), "bench", pt, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrap(b *testing.B) {
	h := benchSoft(b)
	aad := []byte("node-1")
	w, err := h.Wrap(b.Context(), "bench", make([]byte, 32), aad)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := h.Unwrap(b.Context(), "bench", w, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWrapParallel(b *testing.B) {
	h := benchSoft(b)
	pt, aad := make([]byte, 32), []byte("node-1")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := h.Wrap(context.Background(), "bench", pt, aad); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
