package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/keyd/keyd/transport"
	"github.com/keyd/keyd/transport/devcerts"
)

// File names inside a CA directory.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// certs creates (or reuses) a CA in a directory and issues a node
// certificate from it, so a multi-node test cluster needs no openssl.
func (c *cli) certs(args []string) error {
	fs := c.flags("certs", "-ca-dir DIR -node ID [-hosts 127.0.0.1,localhost] [-out DIR]")
	caDir := fs.String("ca-dir", "", "directory holding ca.pem and ca-key.pem (created when missing)")
	nodeID := fs.String("node", "", "node id; the certificate carries spiffe://keyd/node/<id>")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "comma-separated IP addresses and DNS names of the node's API")
	out := fs.String("out", "", "directory for node-<id>.pem and node-<id>-key.pem (default: -ca-dir)")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *caDir == "" || *nodeID == "" {
		fs.Usage()
		return usagef("certs: -ca-dir and -node are required")
	}
	if err := transport.ValidateNodeID(*nodeID); err != nil {
		return usagef("certs: -node: %v", err)
	}
	if *out == "" {
		*out = *caDir
	}
	ca, created, err := loadOrCreateCA(*caDir, "keyd CA")
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.IssueNodePEM(*nodeID, splitAddrs(*hosts)...)
	if err != nil {
		return fmt.Errorf("certs: issue: %w", err)
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	certPath := filepath.Join(*out, "node-"+*nodeID+".pem")
	keyPath := filepath.Join(*out, "node-"+*nodeID+"-key.pem")
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return err
	}
	verb := "Reused"
	if created {
		verb = "Created"
	}
	fmt.Fprintf(c.stdout, "%s CA:   %s (key %s, mode 0600)\n", verb, filepath.Join(*caDir, caCertFile), filepath.Join(*caDir, caKeyFile))
	fmt.Fprintf(c.stdout, "Node cert: %s\nNode key:  %s (mode 0600)\n", certPath, keyPath)
	gk, err := ensureGossipKey(*caDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Gossip key: %s (mode 0600; the same file for every node: gossip_key_file)\n", gk)
	return nil
}

// ensureGossipKey creates dir/gossip.key (32 random bytes, hex, 0600) when
// it does not exist, and returns its path.
func ensureGossipKey(dir string) (string, error) {
	path := filepath.Join(dir, "gossip.key")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, []byte(hex.EncodeToString(b[:])+"\n"), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// loadOrCreateCA loads dir/ca.pem and dir/ca-key.pem, or creates a new CA
// named name and writes them (the key with mode 0600) when neither exists.
// It reports whether the CA was created.
func loadOrCreateCA(dir, name string) (*devcerts.CA, bool, error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPEM, cErr := os.ReadFile(certPath)
	keyPEM, kErr := os.ReadFile(keyPath)
	switch {
	case cErr == nil && kErr == nil:
		ca, err := devcerts.LoadCA(certPEM, keyPEM)
		if err != nil {
			return nil, false, fmt.Errorf("ca: %s: %w", dir, err)
		}
		return ca, false, nil
	case errors.Is(cErr, fs.ErrNotExist) && errors.Is(kErr, fs.ErrNotExist):
	case cErr != nil && !errors.Is(cErr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("ca: %w", cErr)
	case kErr != nil && !errors.Is(kErr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("ca: %w", kErr)
	default:
		// One file without the other: refuse rather than overwrite a CA
		// that may have issued certificates in use.
		return nil, false, fmt.Errorf("ca: %s holds only one of %s and %s", dir, caCertFile, caKeyFile)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	ca, err := devcerts.NewCA(name)
	if err != nil {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	certPEM, keyPEM, err = ca.Marshal()
	if err != nil {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	// Key first: a cert without its key would block the next run.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, false, err
	}
	clear(keyPEM)
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// writeFileAtomic writes data to path through a temporary file created
// with perm, so a reader never sees a partial file and a key file is never
// readable by others, not even briefly.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
