package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/keyd/keyd/custodian"
)

// Custodian ceremonies (init and root rotation) deal shares. With
// -custodian-keys the leader encrypts each share to its custodian's age
// public key, so the operator relays only ciphertexts; the custodian
// decrypts theirs on their own machine with `operator unseal -identity`
// (or `age -d -i key.txt`). Plaintext shares need -plaintext-shares.

// sharePrefix starts every encoded custodian share.
const sharePrefix = "keyd-share-v1-"

// maxCeremonyInput bounds what unseal and rotate-root submit read when
// looking for an encrypted share: a whole forwarded init output with many
// armored blocks fits easily.
const maxCeremonyInput = 256 << 10

// plaintextWarning is printed to stderr whenever a ceremony shows shares in
// the clear.
const plaintextWarning = `WARNING: -plaintext-shares: every share below is shown to you, the operator, IN THE CLEAR.
WARNING: whoever sees this output holds the whole quorum and can unseal the cluster alone.
WARNING: use this only for dev clusters and rehearsals; a real ceremony passes -custodian-keys.
`

// dealFlags are the flags of a ceremony that deals new shares.
type dealFlags struct {
	keys      string
	plaintext bool
	outDir    string
}

func (d *dealFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.keys, "custodian-keys", "", "comma-separated age public keys (age1...) or files holding one (or an armored OpenPGP public key), one per custodian in share order; each share is encrypted to its custodian")
	fs.BoolVar(&d.plaintext, "plaintext-shares", false, "show every share in the clear to whoever runs this command (dev and rehearsals only)")
	fs.StringVar(&d.outDir, "out-dir", "", "write each encrypted share to DIR/share-N.age (mode 0600) instead of printing it")
}

// resolve checks the dealing flags before anything is sent. It returns the
// custodian recipients as age1... strings (files resolved here; the
// server accepts only strings) and the number of custodians: the number
// of keys unless -custodians was given, which must then match.
func (d *dealFlags) resolve(cmd string, custodians int, custodiansSet bool) ([]string, int, error) {
	specs := splitAddrs(d.keys)
	switch {
	case len(specs) > 0 && d.plaintext:
		return nil, 0, usagef("%s: -custodian-keys and -plaintext-shares exclude each other", cmd)
	case len(specs) == 0 && d.plaintext:
		if d.outDir != "" {
			return nil, 0, usagef("%s: -out-dir writes encrypted shares only; it needs -custodian-keys", cmd)
		}
		return nil, custodians, nil
	case len(specs) == 0:
		return nil, 0, usagef("%s: pass -custodian-keys with one age public key per custodian (age-keygen -y key.txt), "+
			"so that each share is encrypted to its custodian and nobody running the ceremony sees it; "+
			"-plaintext-shares shows every share to you instead (dev and rehearsals only)", cmd)
	}
	if custodiansSet && custodians != len(specs) {
		return nil, 0, usagef("%s: -custodians is %d but -custodian-keys lists %d keys", cmd, custodians, len(specs))
	}
	keys := make([]string, len(specs))
	for i, s := range specs {
		k, err := custodian.LoadRecipient(s)
		if err != nil {
			return nil, 0, usagef("%s: custodian key %d: %v", cmd, i+1, err)
		}
		keys[i] = k
	}
	if _, err := custodian.ParseRecipients(keys); err != nil {
		return nil, 0, usagef("%s: %v", cmd, err)
	}
	return keys, len(keys), nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// isArmored reports whether s looks like one ASCII-armored age message,
// or an armored OpenPGP message (for an OpenPGP custodian key).
func isArmored(s string) bool {
	s = strings.TrimSpace(s)
	return (strings.HasPrefix(s, "-----BEGIN AGE ENCRYPTED FILE-----") && strings.HasSuffix(s, "-----END AGE ENCRYPTED FILE-----")) ||
		(strings.HasPrefix(s, custodian.PGPMessageHeader) && strings.HasSuffix(s, custodian.PGPMessageFooter))
}

// isPGPMessage reports whether s is an armored OpenPGP message.
func isPGPMessage(s string) bool {
	return strings.HasPrefix(strings.TrimSpace(s), custodian.PGPMessageHeader)
}

// keyLabel names a custodian key on one line: the age recipient, or
// openpgp: and the key's fingerprint.
func keyLabel(k string) string {
	r, err := custodian.ParseRecipient(k)
	if err != nil {
		return "(unparsable key)"
	}
	return r.Label()
}

// checkSealedReply refuses a reply that does not carry exactly n
// encrypted shares, or that carries a plaintext share although custodian
// keys were sent (a server that ignores them). Such shares are discarded
// unseen: showing them would defeat the ceremony.
func checkSealedReply(cmd string, plain, enc []string, n int) error {
	if len(plain) > 0 {
		return fmt.Errorf("%s: the server replied with plaintext shares although custodian keys were sent (a keyd without custodian-key support?); "+
			"they were discarded unseen: wipe the new cluster's data and run the ceremony again on an upgraded server", cmd)
	}
	if len(enc) != n {
		return fmt.Errorf("%s: the server replied with %d encrypted shares, want %d", cmd, len(enc), n)
	}
	for i, e := range enc {
		if !isArmored(e) {
			return fmt.Errorf("%s: encrypted share %d is not an armored age message", cmd, i+1)
		}
	}
	return nil
}

// sealedItem is one encrypted secret of a ceremony's output.
type sealedItem struct {
	file  string // name under -out-dir
	label string // what it is and for whom
	armor string
}

// shareItems labels encrypted shares; keys, when known, name the
// custodian each is for. A share for an OpenPGP key goes to share-N.asc.
func shareItems(enc, keys []string) []sealedItem {
	items := make([]sealedItem, len(enc))
	for i, e := range enc {
		label := fmt.Sprintf("Share %d", i+1)
		if i < len(keys) {
			label += " for custodian " + keyLabel(keys[i])
		}
		ext := "age"
		if isPGPMessage(e) {
			ext = "asc"
		}
		items[i] = sealedItem{file: fmt.Sprintf("share-%d.%s", i+1, ext), label: label, armor: e}
	}
	return items
}

// prepareOutDir creates dir (0700) when missing and refuses one that
// already holds ceremony files, before the server is asked: a ceremony's
// output is shown once and must not overwrite, or be lost to, an earlier
// one.
func prepareOutDir(cmd, dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return usagef("%s: -out-dir: %v", cmd, err)
	}
	for _, pat := range []string{"share-*.age", "share-*.asc", "admin-token.age", "admin-token.asc"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return usagef("%s: -out-dir: %v", cmd, err)
		}
		if len(m) > 0 {
			return usagef("%s: -out-dir %s already holds %s: use an empty directory (nothing was sent)", cmd, dir, filepath.Base(m[0]))
		}
	}
	return nil
}

// emitSealed prints the encrypted items to stdout, or writes each to
// outDir/<file> (0600, never overwriting) and prints the names. When a
// file cannot be written, every item is printed instead (they are
// ciphertexts, safe to show) and that error is returned, so nothing is
// lost; the caller still prints the rest of its output first.
func (c *cli) emitSealed(w *errWriter, outDir string, items []sealedItem) error {
	var werr error
	if outDir != "" {
		for _, it := range items {
			p := filepath.Join(outDir, it.file)
			if werr = writeNewFile(p, []byte(it.armor)); werr != nil {
				break
			}
			w.printf("%s: %s\n", it.label, p)
		}
		if werr == nil {
			return nil
		}
		werr = fmt.Errorf("writing -out-dir: %w (the encrypted messages were printed instead)", werr)
		w.printf("Could not write -out-dir; the encrypted messages follow instead:\n\n")
	}
	for _, it := range items {
		w.printf("%s:\n%s\n", it.label, strings.TrimRight(it.armor, "\n"))
		w.printf("\n")
	}
	return werr
}

// writeNewFile creates path with mode 0600, failing if it exists.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// shareSource says where a custodian's share comes from: -in FILE or
// stdin, encrypted to -identity FILE or in the clear.
type shareSource struct {
	in       string
	identity string
}

func (s *shareSource) register(fs *flag.FlagSet) {
	fs.StringVar(&s.in, "in", "", "read the share from FILE instead of stdin")
	fs.StringVar(&s.identity, "identity", "", "age identity file (age-keygen output) that decrypts an encrypted share (share-N.age) on this machine")
}

// errNotForIdentity is an input holding no message for the identity.
var errNotForIdentity = errors.New("no encrypted share in the input is for this identity (is it your share-N.age, and your key file?)")

// read returns the plaintext share. Without -identity it reads one line
// and refuses an armored message; with it, it reads armored blocks until
// one decrypts with the identity, so a custodian may paste or pipe the
// whole message an operator forwarded. prompt goes to stderr when reading
// stdin. Errors never contain the share.
func (c *cli) readShareFrom(cmd string, s shareSource, prompt string) (string, error) {
	var id *custodian.Identity
	if s.identity != "" {
		var err error
		if id, err = custodian.LoadIdentity(s.identity); err != nil {
			return "", fmt.Errorf("%s: -identity: %w", cmd, err)
		}
	}
	var r io.Reader = c.stdin
	if s.in != "" {
		f, err := os.Open(s.in)
		if err != nil {
			return "", fmt.Errorf("%s: -in: %w", cmd, err)
		}
		defer f.Close()
		r = f
	} else {
		if id != nil {
			prompt = "Encrypted share (paste the whole armored block): "
		}
		fmt.Fprint(c.stderr, prompt)
		defer fmt.Fprintln(c.stderr)
	}
	if id == nil {
		share, err := readLine(r, maxShareLine)
		if err != nil {
			return "", fmt.Errorf("%s: read share: %w", cmd, err)
		}
		if strings.HasPrefix(share, "-----BEGIN AGE") {
			return "", usagef("%s: the input is an encrypted share: pass -identity with your age key file to decrypt it here", cmd)
		}
		if strings.HasPrefix(share, custodian.PGPMessageHeader) {
			return "", usagef("%s: the input is a share encrypted to an OpenPGP key: decrypt it with your own tool and pipe the result, e.g. gpg -d share-N.asc | keyd %s", cmd, cmd)
		}
		if share == "" {
			return "", usagef("%s: no share on input", cmd)
		}
		return share, nil
	}
	return decryptShare(cmd, r, id)
}

// decryptShare reads r line by line and returns the share of the first
// armored block that id decrypts.
func decryptShare(cmd string, r io.Reader, id *custodian.Identity) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, maxCeremonyInput))
	var block strings.Builder
	in, found := false, 0
	for {
		line, err := br.ReadString('\n')
		t := strings.TrimSpace(line)
		switch {
		case t == "-----BEGIN AGE ENCRYPTED FILE-----":
			in = true
			block.Reset()
			block.WriteString(t + "\n")
		case in:
			block.WriteString(t + "\n")
			if t == "-----END AGE ENCRYPTED FILE-----" {
				in = false
				found++
				pt, derr := id.Decrypt(block.String())
				switch {
				case derr == nil:
					return shareFromPlaintext(cmd, pt)
				case errors.Is(derr, custodian.ErrNotForYou):
					// Someone else's block: keep looking.
				default:
					return "", fmt.Errorf("%s: encrypted share %d in the input: %w", cmd, found, derr)
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return "", fmt.Errorf("%s: read share: %w", cmd, err)
			}
			if found == 0 {
				return "", fmt.Errorf("%s: no armored age message (-----BEGIN AGE ENCRYPTED FILE-----) in the input", cmd)
			}
			return "", fmt.Errorf("%s: %w", cmd, errNotForIdentity)
		}
	}
}

// shareFromPlaintext checks a decrypted message and returns the share;
// pt is cleared.
func shareFromPlaintext(cmd string, pt []byte) (string, error) {
	defer clear(pt)
	s := strings.TrimSpace(string(pt))
	if !strings.HasPrefix(s, sharePrefix) || strings.ContainsAny(s, " \t\r\n") {
		return "", fmt.Errorf("%s: the decrypted message is not a keyd share (%s...)", cmd, sharePrefix)
	}
	return s, nil
}
