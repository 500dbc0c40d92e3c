package custodian

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

func newIdentity(t testing.TB) (*age.X25519Identity, *Identity) {
	t.Helper()
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	id, err := ParseIdentity([]byte("# created: test\n" + x.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return x, id
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	x, id := newIdentity(t)
	r, err := ParseRecipient(x.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	const secret = "keyd-share-v1-AQIDBAUGBwg"
	msg, err := Encrypt(r, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(msg, secret) || !strings.HasPrefix(msg, "-----BEGIN AGE ENCRYPTED FILE-----") {
		t.Fatalf("message is not an armored ciphertext:\n%s", msg)
	}
	got, err := id.Decrypt(msg)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != secret {
		t.Fatalf("got %q", got)
	}
	// Encryption is randomised: the same share twice gives two messages.
	msg2, _ := Encrypt(r, []byte(secret))
	if msg2 == msg {
		t.Fatal("two encryptions gave the same message")
	}
}

// A custodian holding their own identity cannot open another custodian's
// share, and a tampered or truncated message is refused, never half-read.
func TestDecryptRefusesOthersAndTampering(t *testing.T) {
	x1, _ := newIdentity(t)
	_, id2 := newIdentity(t)
	r1, _ := ParseRecipient(x1.Recipient().String())
	msg, err := Encrypt(r1, []byte("keyd-share-v1-secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := id2.Decrypt(msg); !errors.Is(err, ErrNotForYou) {
		t.Fatalf("other custodian: err = %v, want ErrNotForYou", err)
	}
	_, id1 := func() (*age.X25519Identity, *Identity) {
		id, err := ParseIdentity([]byte(x1.String()))
		if err != nil {
			t.Fatal(err)
		}
		return x1, id
	}()
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	body := lines[len(lines)-2]
	flipped := strings.Replace(msg, body, flip(body), 1)
	cases := map[string]string{
		"truncated":   msg[:len(msg)/2],
		"no armor":    "hello",
		"flipped bit": flipped,
		"empty":       "",
		"huge":        strings.Repeat("A", MaxMessageSize+1),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := id1.Decrypt(in)
			if err == nil {
				t.Fatalf("accepted, got %q", got)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error leaks plaintext: %v", err)
			}
		})
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestParseRecipients(t *testing.T) {
	x1, _ := newIdentity(t)
	x2, _ := newIdentity(t)
	k1, k2 := x1.Recipient().String(), x2.Recipient().String()
	tests := []struct {
		name    string
		in      []string
		wantErr string
	}{
		{"two keys", []string{k1, k2}, ""},
		{"same key twice", []string{k1, k2, k1}, "same key"},
		{"garbage", []string{k1, "age1nope"}, "custodian key 2"},
		{"private key", []string{x1.String()}, "private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := ParseRecipients(tt.in)
			if tt.wantErr == "" {
				if err != nil || len(rs) != len(tt.in) {
					t.Fatalf("got %v, %v", rs, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), x1.String()) {
				t.Fatal("error echoes a private key")
			}
		})
	}
}

func TestLoadRecipientAndIdentityFiles(t *testing.T) {
	x, _ := newIdentity(t)
	dir := t.TempDir()
	pub := filepath.Join(dir, "k.pub")
	if err := os.WriteFile(pub, []byte("# custodian 1\n"+x.Recipient().String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadRecipient(pub)
	if err != nil || got != x.Recipient().String() {
		t.Fatalf("LoadRecipient(file) = %q, %v", got, err)
	}
	if got, err := LoadRecipient(x.Recipient().String()); err != nil || got != x.Recipient().String() {
		t.Fatalf("LoadRecipient(string) = %q, %v", got, err)
	}
	priv := filepath.Join(dir, "k.txt")
	if err := os.WriteFile(priv, []byte(x.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRecipient(priv); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("private key file accepted as recipient: %v", err)
	}
	if _, err := LoadRecipient(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
	id, err := LoadIdentity(priv)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := ParseRecipient(x.Recipient().String())
	msg, _ := Encrypt(r, []byte("s"))
	if b, err := id.Decrypt(msg); err != nil || string(b) != "s" {
		t.Fatalf("decrypt with loaded identity: %q %v", b, err)
	}
	if _, err := LoadIdentity(pub); !errors.Is(err, ErrBadIdentity) {
		t.Fatalf("public key as identity: %v", err)
	}
}

func TestExtract(t *testing.T) {
	x1, _ := newIdentity(t)
	r, _ := ParseRecipient(x1.Recipient().String())
	m1, _ := Encrypt(r, []byte("a"))
	m2, _ := Encrypt(r, []byte("b"))
	text := "Share 1 for custodian age1...:\n" + m1 + "\nShare 2:\n" + m2 + "trailing\n"
	got := Extract(text)
	if len(got) != 2 || strings.TrimSpace(got[0]) != strings.TrimSpace(m1) || strings.TrimSpace(got[1]) != strings.TrimSpace(m2) {
		t.Fatalf("Extract = %q", got)
	}
}

func FuzzDecrypt(f *testing.F) {
	x, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	id, err := ParseIdentity([]byte(x.String()))
	if err != nil {
		f.Fatal(err)
	}
	r, _ := ParseRecipient(x.Recipient().String())
	msg, _ := Encrypt(r, []byte("keyd-share-v1-x"))
	f.Add(msg)
	f.Add(msg[:40])
	f.Add("-----BEGIN AGE ENCRYPTED FILE-----\n-----END AGE ENCRYPTED FILE-----\n")
	f.Fuzz(func(t *testing.T, in string) {
		out, err := id.Decrypt(in)
		if err == nil && in != msg && string(out) != "keyd-share-v1-x" {
			// Only a genuine message to this identity can decrypt; age's
			// AEAD makes anything else fail.
			t.Fatalf("decrypted a forged message to %q", out)
		}
		_ = Extract(in)
	})
}

// A private key passed where a public key belongs is refused without
// being echoed, also by LoadRecipient (which would otherwise take it for
// a file name and print it in the open error).
func TestLoadRecipientRefusesPrivateKeyString(t *testing.T) {
	x, _ := newIdentity(t)
	for _, spec := range []string{x.String(), strings.ToLower(x.String())} {
		_, err := LoadRecipient(spec)
		if !errors.Is(err, ErrBadRecipient) || !strings.Contains(err.Error(), "private key") {
			t.Fatalf("got err %v", err)
		}
		if strings.Contains(strings.ToUpper(err.Error()), strings.TrimPrefix(x.String(), "AGE-SECRET-KEY-1")) {
			t.Fatal("the private key was echoed")
		}
	}
}
