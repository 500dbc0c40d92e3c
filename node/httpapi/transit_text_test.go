package httpapi

import (
	"strings"
	"testing"

	"github.com/keyd/keyd/keyring"
)

func TestTransitText(t *testing.T) {
	for in, want := range map[string]string{
		"vault:v1:QUJD":  "keyd:v1:QUJD",
		"keyd:v7:QUJD":   "keyd:v7:QUJD",
		"vault:v":        "keyd:v",
		"Vault:v1:QUJD":  "",
		"vault1:v1:QUJD": "",
		"":               "",
		"QUJD":           "",
		"vault:v1:" + strings.Repeat("A", maxTextLen): "",
	} {
		got, err := fromTransitText(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("fromTransitText(%.20q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got := toTransitText("keyd:v3:QUJD"); got != "vault:v3:QUJD" {
		t.Fatalf("toTransitText: %q", got)
	}
}

// FuzzTransitText: the vault: parser never panics, maps only the prefix
// (so keyring sees the same version and payload text), and round-trips;
// whatever it accepts, keyring accepts or rejects exactly as the keyd:
// form.
func FuzzTransitText(f *testing.F) {
	for _, s := range []string{"vault:v1:QUJD", "keyd:v2:QUJDRA==", "vault:v0:QQ==", "vault:v01:QQ==", "vault:v4294967296:QQ==", "vault:v1:", "vault:", "", "vault:v1:QUJD\n", "vault:v1:Q=JD"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := fromTransitText(s)
		if err != nil {
			if k != "" {
				t.Fatal("output with an error")
			}
			return
		}
		if !strings.HasPrefix(k, "keyd:v") {
			t.Fatalf("%q mapped to %q", s, k)
		}
		if rest, ok := strings.CutPrefix(s, "vault:v"); ok {
			if k != "keyd:v"+rest || toTransitText(k) != s {
				t.Fatalf("%q mapped to %q, back to %q", s, k, toTransitText(k))
			}
		} else if k != s {
			t.Fatalf("keyd form %q changed to %q", s, k)
		}
		v, payload, err := keyring.ParseText(k)
		if err == nil {
			if v == 0 || keyring.FormatText(v, payload) != k {
				t.Fatalf("%q parsed as v%d, not canonical", k, v)
			}
		}
	})
}
