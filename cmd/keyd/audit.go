package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/keyd/keyd/audit"
	"github.com/keyd/keyd/client"
)

const auditHelp = `Usage: keyd audit <subcommand> [flags]

  fetch -addr NODE -out FILE
                          download the audit log of the node at API address
                          NODE to FILE and its public key (hex) to FILE.pub;
                          needs a token with audit-read. Every node keeps and
                          signs its own log. FILE.pub comes from the same
                          node: for an independent check, compare it with a
                          key recorded earlier (a node that forged its log
                          could send a matching key).
  verify FILE -pubkey P   check an audit log offline: the hash chain, the seq
                          order and every checkpoint signature. P is the
                          audit public key as 64 hex digits, or a file
                          holding it in hex or PEM.

verify prints "OK: ..." and exits 0, or "TAMPERED: line L (seq S): reason",
naming the first bad line, and exits 1.
`

// maxKeyFile bounds a -pubkey file; a PEM public key is far shorter.
const maxKeyFile = 64 << 10

// errAuditTampered is returned after a TAMPERED line is printed.
var errAuditTampered = errors.New("audit log failed verification")

func (c *cli) audit(args []string) error {
	return c.dispatch("audit", auditHelp, map[string]func([]string) error{
		"verify": c.auditVerify,
		"fetch":  c.auditFetch,
	}, args)
}

// auditVerify needs no cluster: an auditor verifies a copied file.
func (c *cli) auditVerify(args []string) error {
	fs := c.flags("audit verify", "FILE -pubkey HEX_OR_FILE")
	pubArg := fs.String("pubkey", "", "audit public key: 64 hex digits, or a file holding hex or PEM (required)")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if *pubArg == "" {
		return usagef("audit verify: -pubkey is required")
	}
	pub, err := loadAuditKey(*pubArg)
	if err != nil {
		return err
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := audit.Verify(f, pub)
	var ve *audit.VerifyError
	if errors.As(err, &ve) {
		fmt.Fprintf(c.stdout, "TAMPERED: line %d (seq %d): %s\n", ve.Line, ve.Seq, ve.Reason)
		return errAuditTampered
	}
	if err != nil {
		return fmt.Errorf("audit verify %s: %w", pos[0], err)
	}
	w := &errWriter{w: c.stdout}
	w.printf("OK: %d records, %d checkpoints, last seq %d\n", rep.Records, rep.Checkpoints, rep.LastSeq)
	if rep.Warning != "" {
		fmt.Fprintf(c.stderr, "WARNING: %s\n", rep.Warning)
	}
	return w.err
}

// loadAuditKey reads -pubkey: a file if one exists at that path, else
// the value itself as hex.
func loadAuditKey(arg string) ([]byte, error) {
	st, err := os.Stat(arg)
	if err != nil || !st.Mode().IsRegular() {
		pub, err := audit.ParsePublicKey([]byte(arg))
		if err != nil {
			return nil, usagef("audit verify: -pubkey is neither a key file nor 64 hex digits")
		}
		return pub, nil
	}
	f, err := os.Open(arg)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read -pubkey file: %w", err)
	}
	pub, err := audit.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("-pubkey file %s: %w", arg, err)
	}
	return pub, nil
}

// auditFetch downloads one node's audit log and public key, for `keyd
// audit verify FILE -pubkey FILE.pub`. The log goes to a temporary file
// renamed into place only when the download is complete, so FILE is
// never a silently truncated copy. The node appends while it streams; a
// final line without its newline is such an append in flight and is cut.
func (c *cli) auditFetch(args []string) error {
	fs := c.flags("audit fetch", "-addr NODE -out FILE")
	addr := fs.String("addr", "", "API address (host:port) of the node whose log to fetch (required)")
	out := fs.String("out", "", "file to write the log to; the public key goes to FILE.pub (required)")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *addr == "" || *out == "" {
		fs.Usage()
		return usagef("audit fetch: -addr and -out are required")
	}
	cl, err := c.newClient(&clientFlags{addr: *addr})
	if err != nil {
		return err
	}
	defer cl.Close()
	key, err := cl.AuditPublicKey(c.ctx, *addr)
	if err != nil {
		return err
	}
	if _, err := audit.ParsePublicKey([]byte(key.PublicKey)); err != nil {
		return fmt.Errorf("audit fetch: node %s sent an unusable public key: %w", *addr, err)
	}
	n, cut, err := c.fetchAuditLog(cl, *addr, *out)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out+".pub", []byte(key.PublicKey+"\n"), 0o644); err != nil {
		return fmt.Errorf("audit fetch: %w", err)
	}
	if cut > 0 {
		fmt.Fprintf(c.stderr, "note: dropped a final line of %d bytes the node was still writing\n", cut)
	}
	w := &errWriter{w: c.stdout}
	w.printf("Fetched %d bytes of node %s's audit log to %s, public key to %s.pub\n", n, orDash(key.Node), *out, *out)
	w.printf("Verify with: keyd audit verify %s -pubkey %s.pub\n", *out, *out)
	return w.err
}

// fetchAuditLog streams the log into a temporary file next to path, cuts
// a trailing partial line, and renames it to path. It returns the bytes
// kept and the bytes cut.
func (c *cli) fetchAuditLog(cl *client.Client, addr, path string) (kept, cut int64, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".part-*")
	if err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	// The log names identities and keys: owner-only, like the node's copy.
	if err := f.Chmod(0o600); err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	if err := cl.AuditLog(c.ctx, addr, f); err != nil {
		return 0, 0, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	kept, err = lastNewline(f, size)
	if err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	if kept < size {
		if err := f.Truncate(kept); err != nil {
			return 0, 0, fmt.Errorf("audit fetch: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, 0, fmt.Errorf("audit fetch: %w", err)
	}
	return kept, size - kept, nil
}

// lastNewline returns the length of f's first size bytes up to and
// including their last newline (0 when there is none), reading backwards
// in blocks so a large log is not read twice.
func lastNewline(f io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 4096)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}
