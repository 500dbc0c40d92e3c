package custodian

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// newPGPEntity returns a fresh OpenPGP key and its armored public key.
func newPGPEntity(t *testing.T, name string) (*openpgp.Entity, string) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	aw, err := armor.Encode(&buf, "PGP PUBLIC KEY BLOCK", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(aw); err != nil {
		t.Fatal(err)
	}
	aw.Close()
	return e, buf.String()
}

func pgpDecrypt(t *testing.T, e *openpgp.Entity, msg string) ([]byte, error) {
	t.Helper()
	blk, err := armor.Decode(strings.NewReader(msg))
	if err != nil {
		return nil, err
	}
	if blk.Type != "PGP MESSAGE" {
		t.Fatalf("armor type %q", blk.Type)
	}
	md, err := openpgp.ReadMessage(blk.Body, openpgp.EntityList{e}, nil, nil)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(md.UnverifiedBody)
}

// An OpenPGP public key is a recipient: the share is an armored OpenPGP
// message only that key opens.
func TestOpenPGPRecipientRoundTrip(t *testing.T) {
	e1, pub1 := newPGPEntity(t, "alice")
	e2, _ := newPGPEntity(t, "bob")
	r, err := ParseRecipient("\n" + pub1 + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind() != "openpgp" || !strings.HasPrefix(r.Label(), "openpgp:") || strings.TrimSpace(r.String()) != strings.TrimSpace(pub1) {
		t.Fatalf("kind %q label %q", r.Kind(), r.Label())
	}
	const secret = "keyd-share-v1-AQIDBAUGBwg"
	msg, err := Encrypt(r, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(msg, secret) || !strings.HasPrefix(msg, PGPMessageHeader) || !strings.Contains(msg, PGPMessageFooter) {
		t.Fatalf("not an armored OpenPGP message:\n%s", msg)
	}
	got, err := pgpDecrypt(t, e1, msg)
	if err != nil || string(got) != secret {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := pgpDecrypt(t, e2, msg); err == nil {
		t.Fatal("another key opened the message")
	}
	// The same key twice (once from a file) is one custodian with two shares.
	p := filepath.Join(t.TempDir(), "alice.asc")
	if err := os.WriteFile(p, []byte(pub1), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadRecipient(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRecipients([]string{pub1, s}); err == nil || !strings.Contains(err.Error(), "same key") {
		t.Fatalf("got err %v, want a duplicate refusal", err)
	}
	// age and OpenPGP custodians mix.
	x, _ := newIdentity(t)
	rs, err := ParseRecipients([]string{x.Recipient().String(), s})
	if err != nil || rs[0].Kind() != "age" || rs[1].Kind() != "openpgp" {
		t.Fatalf("mixed list: %v", err)
	}
}

// An OpenPGP private key given as a recipient is refused unechoed; a
// garbled key block is refused.
func TestOpenPGPRecipientRefusals(t *testing.T) {
	e, pub := newPGPEntity(t, "carol")
	var buf bytes.Buffer
	aw, _ := armor.Encode(&buf, "PGP PRIVATE KEY BLOCK", nil)
	if err := e.SerializePrivate(aw, nil); err != nil {
		t.Fatal(err)
	}
	aw.Close()
	priv := buf.String()
	p := filepath.Join(t.TempDir(), "carol-secret.asc")
	if err := os.WriteFile(p, []byte(priv), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{priv, p} {
		_, err := LoadRecipient(spec)
		if !errors.Is(err, ErrPrivateKey) {
			t.Fatalf("got err %v, want %v", err, ErrPrivateKey)
		}
		if strings.Contains(err.Error(), priv[40:80]) {
			t.Fatal("the private key was echoed")
		}
	}
	lines := strings.Split(pub, "\n")
	lines[3] = strings.Repeat("A", len(lines[3]))
	if _, err := ParseRecipient(strings.Join(lines, "\n")); !errors.Is(err, ErrBadRecipient) {
		t.Fatalf("garbled key: got err %v", err)
	}
	if _, err := ParseRecipient(pub + "\n" + pub); !errors.Is(err, ErrBadRecipient) {
		t.Fatalf("two key blocks: got err %v", err)
	}
}

// Interop: a share encrypted to a key made by GnuPG opens with `gpg -d`,
// as a custodian would run it. Skipped without gpg.
func TestOpenPGPGnuPGInterop(t *testing.T) {
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		if os.Getenv("KEYD_INTEROP_TOOLS") != "" {
			t.Fatalf("KEYD_INTEROP_TOOLS is set but gpg is not installed: %v", err)
		}
		t.Skip("gpg not installed (scripts/setup.sh installs it)")
	}
	home, err := os.MkdirTemp("", "kgpg")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "GNUPGHOME="+home)
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(gpg, append([]string{"--batch", "--quiet", "--no-tty"}, args...)...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("gpg %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	t.Cleanup(func() {
		kill := exec.Command("gpgconf", "--kill", "all")
		kill.Env = env
		_ = kill.Run()
		os.RemoveAll(home)
	})
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	run("", "--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key", "dave <dave@example.invalid>", "default", "default", "never")
	pub := run("", "--armor", "--export", "dave@example.invalid")
	r, err := ParseRecipient(pub)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "keyd-share-v1-AQIDBAUGBwgJ"
	msg, err := Encrypt(r, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if got := run(msg, "--pinentry-mode", "loopback", "--passphrase", "", "-d"); got != secret {
		t.Fatalf("gpg -d gave %q", got)
	}
}

// FuzzParseRecipient: custodian keys arrive from clients; whatever they
// hold, parsing returns a recipient or an error, never panics, and a
// parsed OpenPGP recipient can encrypt.
func FuzzParseRecipient(f *testing.F) {
	e, err := openpgp.NewEntity("fuzz", "", "fuzz@example.invalid", nil)
	if err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	aw, _ := armor.Encode(&buf, "PGP PUBLIC KEY BLOCK", nil)
	_ = e.Serialize(aw)
	aw.Close()
	f.Add(buf.String())
	f.Add("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
	f.Add(pgpPublicHeader + "\n\n" + pgpPublicFooter + "\n")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := ParseRecipient(in)
		if err != nil {
			return
		}
		if _, err := Encrypt(r, []byte("keyd-share-v1-x")); err != nil && r.Kind() == "age" {
			t.Fatalf("age recipient cannot encrypt: %v", err)
		}
	})
}
