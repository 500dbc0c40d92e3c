package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/keyd/keyd/hsmbridge/pkcs11"
	"github.com/keyd/keyd/hsmbridge/soft"
)

func TestHSMConfig(t *testing.T) {
	t.Parallel()
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte("4321\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == "HSM_PIN" {
			return "9999"
		}
		return ""
	}
	tests := []struct {
		name    string
		in      fileHSM
		wantPIN string
		wantNil bool
		wantErr bool
	}{
		{name: "none", in: fileHSM{}, wantNil: true},
		{name: "soft", in: fileHSM{Type: "soft", Path: "/tmp/x"}},
		{name: "soft without path", in: fileHSM{Type: "soft"}, wantErr: true},
		{name: "pin file", in: fileHSM{Type: "pkcs11", Module: "/m.so", TokenLabel: "t", PINFile: pinFile}, wantPIN: "4321"},
		{name: "pin env", in: fileHSM{Type: "pkcs11", Module: "/m.so", TokenLabel: "t", PINEnv: "HSM_PIN"}, wantPIN: "9999"},
		{name: "empty pin env", in: fileHSM{Type: "pkcs11", Module: "/m.so", TokenLabel: "t", PINEnv: "NOPE"}, wantErr: true},
		{name: "both pins", in: fileHSM{Type: "pkcs11", Module: "/m.so", TokenLabel: "t", PINFile: pinFile, PINEnv: "HSM_PIN"}, wantErr: true},
		{name: "no pin", in: fileHSM{Type: "pkcs11", Module: "/m.so", TokenLabel: "t"}, wantErr: true},
		{name: "missing pin file", in: fileHSM{Type: "pkcs11", Module: "/m.so", TokenLabel: "t", PINFile: "/nonexistent/pin"}, wantErr: true},
		{name: "no module", in: fileHSM{Type: "pkcs11", TokenLabel: "t", PINEnv: "HSM_PIN"}, wantErr: true},
		{name: "unknown type", in: fileHSM{Type: "tpm"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.in.hsmConfig(env)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got err %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if tt.wantNil != (got == nil) {
				t.Fatalf("got %v, want nil %v", got, tt.wantNil)
			}
			switch c := got.(type) {
			case pkcs11.Config:
				if c.PIN != tt.wantPIN {
					t.Fatalf("got a different PIN, want %q", tt.wantPIN)
				}
			case soft.Config:
				if c.Path == "" {
					t.Fatal("empty soft path")
				}
			}
		})
	}
}
