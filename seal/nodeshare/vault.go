// Package nodeshare keeps this node's node shares: the root secret is
// also dealt k-of-m across the voters (k = Raft quorum), and each voter
// keeps its share only wrapped by its own HSM, in its data directory.
// Vault stores and loads those wrapped shares; Backoff is the leader's
// dealing retry state. Neither knows the node: they depend only on the
// HSM interface and a logger.
package nodeshare

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/internal/durable"
	"github.com/keyd/keyd/shamir"
	"github.com/keyd/keyd/sharex"
)

const (
	// aad binds a wrapped share to its purpose, node and dealing.
	aad = "keyd node share v1"
	// KeptDealings bounds the share files kept: the committed dealing's
	// and the newest KeptDealings-1 others (dealings in flight).
	KeptDealings = 3
	// FileSuffix ends every share file: <fingerprint>.share.
	FileSuffix = ".share"
)

// ErrNoHSM reports a node without an HSM: it holds no node share.
var ErrNoHSM = errors.New("node: no HSM configured")

// Vault is this node's store of HSM-wrapped node shares, one file per
// dealing, named by the dealing's commitments fingerprint.
type Vault struct {
	Dir    string        // the share directory (created 0700 on first store)
	NodeID string        // bound into each share's AAD
	Label  string        // the HSM wrapping key's label
	HSM    hsmbridge.HSM // nil: no node shares on this node
}

func (v *Vault) aad(fp string) []byte {
	return []byte(aad + "\x00" + v.NodeID + "\x00" + fp)
}

// Path is the file of dealing fp's share.
func (v *Vault) Path(fp string) string { return filepath.Join(v.Dir, fp+FileSuffix) }

// Store wraps sh with the HSM (AAD binds node id and dealing) and writes
// it atomically. Old dealings' files are pruned only once a newer dealing
// is committed (Prune).
func (v *Vault) Store(ctx context.Context, fp string, sh shamir.Share) error {
	if v.HSM == nil {
		return ErrNoHSM
	}
	pt, err := sh.MarshalBinary()
	if err != nil {
		return err
	}
	defer clear(pt)
	wrapped, err := v.HSM.Wrap(ctx, v.Label, pt, v.aad(fp))
	if err != nil {
		return fmt.Errorf("node: wrap node share: %w", err)
	}
	// The leader records this node as a holder once it answers: the
	// file must survive a machine crash too.
	if err := v.writeSynced(wrapped, fp+FileSuffix, os.Rename); err != nil {
		return fmt.Errorf("node: store node share: %w", err)
	}
	// No pruning here: this dealing is not committed yet (see Prune).
	return nil
}

// writeSynced writes data to a temporary file in the vault's directory
// (created 0700), syncs it, puts it in place as name with place (rename or
// link) and syncs the directory, so the file survives a machine crash.
func (v *Vault) writeSynced(data []byte, name string, place func(tmp, path string) error) error {
	if err := os.MkdirAll(v.Dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(v.Dir, "tmp-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = place(tmp.Name(), filepath.Join(v.Dir, name))
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return werr
	}
	return durable.SyncDir(v.Dir)
}

// Load unwraps this node's share of dealing fp with the HSM.
func (v *Vault) Load(ctx context.Context, fp string) (shamir.Share, error) {
	if v.HSM == nil {
		return shamir.Share{}, ErrNoHSM
	}
	wrapped, err := os.ReadFile(v.Path(fp))
	if err != nil {
		return shamir.Share{}, fmt.Errorf("node: no node share for dealing %s on disk: %w", fp, err)
	}
	pt, err := v.HSM.Unwrap(ctx, v.Label, wrapped, v.aad(fp))
	if err != nil {
		return shamir.Share{}, fmt.Errorf("node: unwrap node share with the HSM: %w", err)
	}
	defer clear(pt)
	return shamir.UnmarshalShare(pt)
}

// Prune removes the share files of old dealings. Call it only once a
// dealing is committed, with keep the fingerprint the replicated state
// records: it never removes keep's file (failed dealing attempts also
// leave files behind, and removing the committed one would leave a
// restarted node with "no node share on disk"). Besides keep it keeps the
// newest KeptDealings-1 files (a dealing in flight whose commit this node
// has not applied yet).
func (v *Vault) Prune(keep string) { PruneFiles(v.Dir, keep, KeptDealings-1) }

// RemoveAll drops every share (a node removed for good).
func (v *Vault) RemoveAll() error { return os.RemoveAll(v.Dir) }

// PruneFiles removes the share files in dir except keep's and the newest
// others.
func PruneFiles(dir, keep string, others int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type f struct {
		name string
		mod  time.Time
	}
	var files []f
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, FileSuffix) || name == keep+FileSuffix {
			continue
		}
		if fi, err := e.Info(); err == nil {
			files = append(files, f{name, fi.ModTime()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod.After(files[j].mod) })
	for _, old := range files[min(len(files), max(others, 0)):] {
		_ = os.Remove(filepath.Join(dir, old.name))
	}
}

// DeliveryKeyFile holds this node's delivery private key (sharex), wrapped
// by the HSM like the shares: the leader seals every node share it deals
// this node to the key's public half, which the cluster pins through Raft,
// so a certificate without this node's HSM receives nothing usable.
const DeliveryKeyFile = "delivery.key"

const deliveryAAD = "keyd node-share delivery key v1"

func (v *Vault) deliveryAAD() []byte { return []byte(deliveryAAD + "\x00" + v.NodeID) }

// DeliveryPublic returns the public half of this node's delivery key. With
// create it makes the key pair on first use (concurrent first calls agree
// on one key: the file is linked into place only if none exists yet);
// without, a missing key is an error wrapping os.ErrNotExist. A node whose
// key is pinned must never make another: what is sealed to the pin would
// stay unopenable and the new key could never be pinned.
func (v *Vault) DeliveryPublic(ctx context.Context, create bool) ([]byte, error) {
	priv, err := v.deliveryKey(ctx)
	if err == nil {
		return priv.PublicKey().Bytes(), nil
	}
	if !create || !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := sharex.NewDeliveryKey()
	if err != nil {
		return nil, err
	}
	kb := k.Bytes()
	wrapped, err := v.HSM.Wrap(ctx, v.Label, kb, v.deliveryAAD())
	clear(kb)
	if err != nil {
		return nil, fmt.Errorf("node: wrap delivery key: %w", err)
	}
	// Link, not rename: a key another caller put in place first wins.
	linkOnce := func(tmp, path string) error {
		if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		return os.Remove(tmp)
	}
	if err := v.writeSynced(wrapped, DeliveryKeyFile, linkOnce); err != nil {
		return nil, fmt.Errorf("node: store delivery key: %w", err)
	}
	priv, err = v.deliveryKey(ctx)
	if err != nil {
		return nil, err
	}
	return priv.PublicKey().Bytes(), nil
}

// OpenDelivery opens a node share the leader sealed to this node's
// delivery key. The private key is unwrapped by the HSM for this call
// only.
func (v *Vault) OpenDelivery(ctx context.Context, d sharex.Delivery, ephemeral, sealed []byte) (shamir.Share, error) {
	priv, err := v.deliveryKey(ctx)
	if err != nil {
		return shamir.Share{}, err
	}
	return sharex.OpenDelivery(priv, d, ephemeral, sealed)
}

// deliveryKey unwraps the delivery private key; an error wrapping
// os.ErrNotExist means there is none yet.
func (v *Vault) deliveryKey(ctx context.Context) (*ecdh.PrivateKey, error) {
	if v.HSM == nil {
		return nil, ErrNoHSM
	}
	wrapped, err := os.ReadFile(filepath.Join(v.Dir, DeliveryKeyFile))
	if err != nil {
		return nil, fmt.Errorf("node: delivery key: %w", err)
	}
	pt, err := v.HSM.Unwrap(ctx, v.Label, wrapped, v.deliveryAAD())
	if err != nil {
		return nil, fmt.Errorf("node: unwrap delivery key with the HSM: %w", err)
	}
	defer clear(pt)
	k, err := ecdh.X25519().NewPrivateKey(pt)
	if err != nil {
		return nil, fmt.Errorf("node: delivery key: %w", err)
	}
	return k, nil
}
