package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
)

const snapshotHelp = `Usage: keyd operator snapshot <subcommand> [flags] FILE

  save FILE               stream a consistent snapshot of the cluster's state from the
                          leader into FILE (needs KEYD_TOKEN with the snapshot capability)
  inspect FILE [-json]    check FILE's digest and structure offline and show what is inside
  restore FILE [-force]   restore FILE into the cluster; open on an uninitialised cluster,
                          -force (and the snapshot capability) over an initialised one.
                          The cluster is sealed afterwards: the custodians of the
                          snapshot's cluster unseal it with their shares.

A snapshot holds wrapped material only (keys wrapped by barrier keys, the barrier
keyring wrapped by the root key, token hashes, policies). Its SHA-256 digest is
checked without secrets; its MAC, keyed from the root, is checked when the
custodians unseal a restored cluster.
`

func (c *cli) operatorSnapshot(args []string) error {
	return c.dispatch("operator snapshot", snapshotHelp, map[string]func([]string) error{
		"save":    c.snapshotSave,
		"inspect": c.snapshotInspect,
		"restore": c.snapshotRestore,
	}, args)
}

// verifySnapshotFile checks a snapshot file offline (digest, structure,
// header against content), using a temporary database file.
func verifySnapshotFile(path string) (*fsm.Backup, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dir, err := os.MkdirTemp("", "keyd-snapshot-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b, err := fsm.VerifyBackup(f, filepath.Join(dir, "state.db"))
	if err != nil {
		return nil, fmt.Errorf("snapshot %s refused: %w", path, err)
	}
	return b, nil
}

// snapshotSave writes to a temporary file next to FILE, verifies it and
// renames it into place, so FILE is never a partial snapshot.
func (c *cli) snapshotSave(args []string) error {
	fs := c.flags("operator snapshot save", "FILE [-addr A]")
	var cf clientFlags
	cf.register(fs)
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	path := pos[0]
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".part-*")
	if err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	start := time.Now()
	if err := cl.SnapshotSave(c.ctx, tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	b, err := verifySnapshotFile(tmp.Name())
	if err != nil {
		return fmt.Errorf("snapshot save: the received file does not verify: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	done = true
	w := &errWriter{w: c.stdout}
	w.printf("Saved snapshot of index %d (%d keys) to %s in %s\n", b.Header.Index, b.Header.Counts.Keys, path, time.Since(start).Round(time.Millisecond))
	return w.err
}

func (c *cli) snapshotInspect(args []string) error {
	fs := c.flags("operator snapshot inspect", "FILE [-json]")
	asJSON := fs.Bool("json", false, "print as JSON")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	b, err := verifySnapshotFile(pos[0])
	if err != nil {
		return err
	}
	h := b.Header
	if *asJSON {
		return printJSON(c.stdout, map[string]any{
			"format": h.Format, "cluster": h.Cluster, "index": h.Index, "time": h.Time, "node": h.Node,
			"counts": h.Counts, "digest": hex.EncodeToString(b.Digest[:]), "digest_ok": true,
		})
	}
	w := &errWriter{w: c.stdout}
	w.printf("format: %d\n", h.Format)
	w.printf("cluster commitments: %s\n", h.Cluster)
	w.printf("index: %d\n", h.Index)
	w.printf("time: %s\n", h.Time.Format(time.RFC3339))
	w.printf("node: %s\n", orDash(h.Node))
	w.printf("keys: %d\n", h.Counts.Keys)
	w.printf("versions: %d\n", h.Counts.Versions)
	w.printf("policies: %d\n", h.Counts.Policies)
	w.printf("tokens: %d\n", h.Counts.Tokens)
	w.printf("identities: %d\n", h.Counts.Identities)
	w.printf("kv secrets: %d (versions holding a value: %d)\n", h.Counts.Secrets, h.Counts.SecretVersions)
	w.printf("vault tokens: %d\n", h.Counts.VaultTokens)
	w.printf("digest: ok (sha256 %s)\n", hex.EncodeToString(b.Digest[:]))
	w.printf("mac: checked with the root when the custodians unseal a restored cluster\n")
	return w.err
}

func (c *cli) snapshotRestore(args []string) error {
	fs := c.flags("operator snapshot restore", "FILE [-force] [-addr A]")
	var cf clientFlags
	cf.register(fs)
	force := fs.Bool("force", false, "restore over an initialised cluster, replacing its state (needs the snapshot capability)")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	path := pos[0]
	// Refuse a damaged file before anything reaches the cluster.
	if _, err := verifySnapshotFile(path); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(f, api.MaxSnapshotBytes+1))
	f.Close()
	if err != nil {
		return err
	}
	if len(data) > api.MaxSnapshotBytes {
		return fmt.Errorf("snapshot %s is larger than %d bytes", path, api.MaxSnapshotBytes)
	}
	cl, err := c.newClient(&cf)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.SnapshotRestore(c.ctx, data, *force)
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == api.CodeAlreadyInitialized {
			return fmt.Errorf("%w (pass -force to replace the cluster's state; every node is sealed first)", err)
		}
		return err
	}
	w := &errWriter{w: c.stdout}
	w.printf("Restored snapshot of index %d (keys: %d, versions: %d, policies: %d, tokens: %d).\n",
		res.Index, res.Counts.Keys, res.Counts.Versions, res.Counts.Policies, res.Counts.Tokens)
	w.printf("The cluster is sealed. Custodians of cluster %s unseal it with their shares (keyd operator unseal);\n", res.Cluster)
	w.printf("the snapshot's MAC is then checked with the root, and node shares are dealt to this cluster's HSMs.\n")
	return w.err
}
