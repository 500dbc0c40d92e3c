package softhsm

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// need returns without error when SoftHSM2 is installed. Otherwise it
// fails the test if KEYD_SOFTHSM=1 (CI installed it, so its absence is a
// bug) and skips it if not.
func need(t *testing.T) {
	t.Helper()
	_, errMod := ModulePath()
	_, errUtil := UtilPath()
	if err := errors.Join(errMod, errUtil); err != nil {
		if os.Getenv("KEYD_SOFTHSM") == "1" {
			t.Fatalf("KEYD_SOFTHSM=1 but %v (run scripts/setup-softhsm.sh)", err)
		}
		t.Skipf("skipping: %v (run scripts/setup-softhsm.sh; set KEYD_SOFTHSM=1 to fail instead)", err)
	}
}

func TestWriteConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf, err := WriteConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "softhsm2.conf"); conf != want {
		t.Errorf("path: got %q, want %q", conf, want)
	}
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"directories.tokendir = " + filepath.Join(dir, "tokens") + "\n",
		"objectstore.backend = file\n",
		"log.level = ERROR\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config lacks %q:\n%s", want, b)
		}
	}
	for path, want := range map[string]os.FileMode{conf: 0o600, filepath.Join(dir, "tokens"): 0o700} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode: got %04o, want %04o", path, got, want)
		}
	}
}

func TestInitTokenArgs(t *testing.T) {
	t.Parallel()
	need(t)
	conf, err := WriteConfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, label, pin, so string
	}{
		{"empty label", "", "1234", "5678"},
		{"long label", strings.Repeat("l", 33), "1234", "5678"},
		{"short pin", "t", "123", "5678"},
		{"short so pin", "t", "1234", "567"},
		{"padded label", " t", "1234", "5678"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := InitToken(t.Context(), conf, tc.label, tc.pin, tc.so); err == nil {
				t.Fatal("InitToken: got nil error, want one")
			}
		})
	}
}

func TestInitToken(t *testing.T) {
	t.Parallel()
	need(t)
	dir := t.TempDir()
	conf, err := WriteConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Several tokens in one configuration, as one process needs.
	for _, label := range []string{"node-a", "node-b"} {
		if err := InitToken(t.Context(), conf, label, "user-pin", "so-pin-1"); err != nil {
			t.Fatalf("InitToken(%q): %v", label, err)
		}
	}
	labels, err := TokenLabels(t.Context(), conf)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(labels)
	if want := []string{"node-a", "node-b"}; !slices.Equal(labels, want) {
		t.Fatalf("TokenLabels: got %q, want %q", labels, want)
	}
	// Idempotent for callers: a second init of a label is refused, not
	// duplicated.
	if err := InitToken(t.Context(), conf, "node-a", "user-pin", "so-pin-1"); !errors.Is(err, ErrTokenExists) {
		t.Fatalf("InitToken again: got err %v, want ErrTokenExists", err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "tokens"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("token directory: got %d entries, want 2", len(entries))
	}
	// A broken configuration gives softhsm2-util's reason.
	err = InitToken(t.Context(), filepath.Join(dir, "missing.conf"), "x", "user-pin", "so-pin-1")
	if err == nil {
		t.Fatal("InitToken with a missing config: got nil error, want one")
	}
	if strings.Contains(err.Error(), "user-pin") || strings.Contains(err.Error(), "so-pin-1") {
		t.Fatalf("error leaks a PIN: %v", err)
	}
}

func FuzzParseLabels(f *testing.F) {
	f.Add("Slot 1\n    Token info:\n        Label:            node-a                          \n")
	f.Add("        Label:                                            \n")
	f.Add("Label:a b:c\r\nLabel:\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, out string) {
		for _, l := range parseLabels(out) {
			if l == "" || strings.TrimSpace(l) != l || strings.Contains(l, "\n") {
				t.Fatalf("parseLabels(%q) returned label %q", out, l)
			}
		}
	})
}

func TestParseLabels(t *testing.T) {
	t.Parallel()
	out := "Slot 364641879\n    Token info:\n        Initialized:      yes\n" +
		"        Label:            a b:c                           \n" +
		"Slot 1\n        Label:                                            \n"
	if got, want := parseLabels(out), []string{"a b:c"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
