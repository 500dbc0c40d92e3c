package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/audit"
)

// auditSink wraps the audit log for the HTTP layer. Once a write fails
// the node refuses key operations (Healthy is false) unless the operator
// chose AuditFailOpen, which is logged loudly at start and on each
// failure.
type auditSink struct {
	l        *audit.Logger
	failOpen bool
	failed   atomic.Bool
	log      interface{ Error(string, ...any) }
}

func (a *auditSink) Log(ctx context.Context, r audit.Record) error {
	err := a.l.Log(ctx, r)
	if err == nil {
		return nil
	}
	if errors.Is(err, audit.ErrSinkFailed) || errors.Is(err, audit.ErrClosed) {
		a.failed.Store(true)
	}
	if a.failOpen {
		a.log.Error("AUDIT RECORD LOST (audit_fail_open is set): serving unaudited", "op", r.Op, "err", err)
		return nil
	}
	return err
}

func (a *auditSink) HMAC(v []byte) string { return a.l.HMAC(v) }

func (a *auditSink) Healthy() bool { return a.failOpen || !a.failed.Load() }

// auditKeys are the node's audit HMAC key and checkpoint signing key,
// generated on first start and kept in the data directory (0600). The
// public key is served at /v1/sys/audit/public-key for `keyd audit verify`.
type auditKeys struct {
	HMAC string `json:"hmac"`
	Seed string `json:"seed"`
}

func loadAuditKeys(path string) ([]byte, ed25519.PrivateKey, error) {
	var k auditKeys
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &k); err != nil {
			return nil, nil, fmt.Errorf("node: audit keys %s: %w", path, err)
		}
	} else if errors.Is(err, os.ErrNotExist) {
		var h, seed [32]byte
		if _, err := io.ReadFull(rand.Reader, h[:]); err != nil {
			return nil, nil, err
		}
		if _, err := io.ReadFull(rand.Reader, seed[:]); err != nil {
			return nil, nil, err
		}
		k = auditKeys{HMAC: hex.EncodeToString(h[:]), Seed: hex.EncodeToString(seed[:])}
		b, _ := json.Marshal(k)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, nil, fmt.Errorf("node: audit keys: %w", err)
		}
	} else {
		return nil, nil, fmt.Errorf("node: audit keys: %w", err)
	}
	hk, err1 := hex.DecodeString(k.HMAC)
	seed, err2 := hex.DecodeString(k.Seed)
	if err1 != nil || err2 != nil || len(hk) != 32 || len(seed) != ed25519.SeedSize {
		return nil, nil, fmt.Errorf("node: audit keys %s are malformed", path)
	}
	return hk, ed25519.NewKeyFromSeed(seed), nil
}

func (n *Node) openAudit() error {
	if n.cfg.AuditDisabled {
		n.log.Warn("WARNING: audit log disabled (AuditDisabled): requests are not audited")
		return nil
	}
	path := n.cfg.AuditPath
	if path == "" {
		path = filepath.Join(n.cfg.DataDir, "audit.log")
	}
	hk, sk, err := loadAuditKeys(filepath.Join(n.cfg.DataDir, "audit.key"))
	if err != nil {
		return err
	}
	l, err := audit.Open(audit.Config{Path: path, HMACKey: hk, SigningKey: sk, Node: n.cfg.NodeID, SyncInterval: n.cfg.AuditSyncInterval})
	if err != nil {
		return fmt.Errorf("node: audit log: %w", err)
	}
	n.audit = &auditSink{l: l, failOpen: n.cfg.AuditFailOpen, log: n.log}
	n.auditPath = path
	if n.cfg.AuditFailOpen {
		n.log.Error("WARNING: audit_fail_open is set: if the audit log cannot be written, keyd keeps serving key operations UNAUDITED")
	}
	return nil
}

// AuditPublicKey returns the checkpoint verification key.
func (n *Node) AuditPublicKey() *api.AuditKey {
	if n.audit == nil {
		return &api.AuditKey{Node: n.cfg.NodeID}
	}
	return &api.AuditKey{Node: n.cfg.NodeID, PublicKey: hex.EncodeToString(n.audit.l.PublicKey())}
}

// WriteAuditLog copies this node's audit file to w.
func (n *Node) WriteAuditLog(w io.Writer) error {
	if n.audit == nil {
		return errors.New("node: audit log disabled")
	}
	f, err := os.Open(n.auditPath)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
