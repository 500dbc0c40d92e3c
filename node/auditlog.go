package node

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/audit"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
)

// Defaults of the audit trail settings in Config.
const (
	DefaultAuditAnchorInterval = 2 * time.Second
	// auditWriteTimeout bounds an audit write that no longer follows the
	// request's context (the client may have hung up).
	auditWriteTimeout = 30 * time.Second
)

// auditSink wraps the audit log for the HTTP layer. Once a write fails
// the node refuses key operations (Healthy is false) unless the operator
// chose AuditFailOpen, which is logged loudly at start and on each
// failure. A moved or replaced log file also refuses key operations,
// until the file is back or SIGHUP (Node.ReopenAudit) adopts a new one.
//
// It also holds the state of the node's part of the audit trail: the
// signing key (sealed by the barrier keyring, in memory only while the
// node is unsealed) and the last chain head anchored through Raft.
type auditSink struct {
	l        *audit.Logger
	path     string // the audit file (WriteAuditLog)
	failOpen bool
	failed   atomic.Bool
	log      interface {
		Error(string, ...any)
		Warn(string, ...any)
		Info(string, ...any)
	}

	keyPath string

	// Owned by the audit loop (runAudit) and, after it stopped, Close.
	mu         sync.Mutex
	keyed      bool // the signing key is installed in the logger
	registered bool // the replicated state holds our public key
	pub        ed25519.PublicKey
	key        *keyring.Key
	sent       uint64 // last seq anchored by this process
	warned     map[string]bool
}

// Log writes r whatever the request's context does: a committed write or
// a crypto call that returned a result is recorded even when the client
// hung up (the caller's cancellation is dropped; a timeout still bounds
// the wait).
func (a *auditSink) Log(ctx context.Context, r audit.Record) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditWriteTimeout)
	defer cancel()
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

func (a *auditSink) Healthy() bool { return a.failOpen || (!a.failed.Load() && a.l.Healthy()) }

func (a *auditSink) warnOnce(key, msg string, args ...any) {
	if a.warned == nil {
		a.warned = map[string]bool{}
	}
	if !a.warned[key] {
		a.warned[key] = true
		a.log.Error(msg, args...)
	}
}

// auditKeyFile is DATA/audit.key: the HMAC key, and the checkpoint
// signing seed wrapped by the barrier keyring (never in the clear). The
// seed of older versions (Seed) is wrapped and dropped from the file on
// the first unseal.
type auditKeyFile struct {
	HMAC    string `json:"hmac"`
	Seed    string `json:"seed,omitempty"`
	Wrapped []byte `json:"wrapped,omitempty"`
	BV      uint32 `json:"bv,omitempty"`
	Pub     string `json:"pub,omitempty"`
}

// auditKeyName binds the wrapped seed to this node: ':' cannot occur in a
// customer key name, so the blob is no key's material.
func auditKeyName(node string) string { return "audit:" + node }

func readAuditKeyFile(path string) (*auditKeyFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var h [32]byte
		if _, err := io.ReadFull(rand.Reader, h[:]); err != nil {
			return nil, err
		}
		k := &auditKeyFile{HMAC: hex.EncodeToString(h[:])}
		return k, writeAuditKeyFile(path, k)
	}
	if err != nil {
		return nil, fmt.Errorf("node: audit keys: %w", err)
	}
	var k auditKeyFile
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("node: audit keys %s are malformed", path)
	}
	return &k, nil
}

// writeAuditKeyFile replaces path atomically (temp file, fsync, rename).
func writeAuditKeyFile(path string, k *auditKeyFile) error {
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("node: audit keys: %w", err)
	}
	_, err = f.Write(b)
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
		return fmt.Errorf("node: audit keys: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
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
	keyPath := filepath.Join(n.cfg.DataDir, "audit.key")
	kf, err := readAuditKeyFile(keyPath)
	if err != nil {
		return err
	}
	hk, err := hex.DecodeString(kf.HMAC)
	if err != nil || len(hk) != 32 {
		return fmt.Errorf("node: audit keys %s are malformed", keyPath)
	}
	// No signing key yet: it is sealed, and installed once the node is
	// unsealed. Records written until then are chained and anchored.
	l, err := audit.Open(audit.Config{
		Path: path, HMACKey: hk, Node: n.cfg.NodeID, SyncInterval: n.cfg.AuditSyncInterval,
		RotateSize: n.cfg.AuditRotateSize, RotateAge: n.cfg.AuditRotateAge, RotateKeep: n.cfg.AuditRotateKeep,
	})
	clear(hk)
	if err != nil {
		return fmt.Errorf("node: audit log: %w", err)
	}
	n.audit = &auditSink{l: l, path: path, failOpen: n.cfg.AuditFailOpen, log: n.log, keyPath: keyPath}
	if n.cfg.AuditFailOpen {
		n.log.Error("WARNING: audit_fail_open is set: if the audit log cannot be written, keyd keeps serving key operations UNAUDITED")
	}
	return nil
}

// ReopenAudit adopts the file now at the audit path after an external
// rotation (SIGHUP). See audit.Logger.Reopen.
func (n *Node) ReopenAudit() error {
	if n.audit == nil {
		return nil
	}
	return n.audit.l.Reopen()
}

func (n *Node) auditAnchorInterval() time.Duration {
	if n.cfg.AuditAnchorInterval > 0 {
		return n.cfg.AuditAnchorInterval
	}
	return DefaultAuditAnchorInterval
}

// auditKeyPoll is how often the audit loop looks at the seal state: the
// signing key leaves memory at most this long after a seal.
const auditKeyPoll = 200 * time.Millisecond

// runAudit is the node's audit-trail loop (owned by n.life.group): it installs
// or drops the signing key as the node is unsealed or sealed (checked
// every auditKeyPoll), and every anchor interval registers the public
// key in the replicated state and anchors the chain head through Raft
// when it moved.
func (n *Node) runAudit(ctx context.Context) {
	if n.audit == nil {
		return
	}
	poll := min(auditKeyPoll, n.auditAnchorInterval())
	t := time.NewTicker(poll)
	defer t.Stop()
	var last time.Time
	for {
		anchor := time.Since(last) >= n.auditAnchorInterval()-poll/2
		if anchor {
			last = time.Now()
		}
		n.auditTick(ctx, anchor)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) auditTick(ctx context.Context, anchor bool) {
	a := n.audit
	a.mu.Lock()
	defer a.mu.Unlock()
	unsealed := n.keys.unsealed()
	switch {
	case unsealed && !a.keyed:
		if err := n.installAuditKey(); err != nil {
			a.warnOnce("install", "audit signing key could not be unsealed: checkpoints are not signed", "err", err)
		}
	case !unsealed && a.keyed:
		// Sealed: the signing key leaves memory with the other keys.
		if err := a.dropAuditKey(); err != nil {
			n.log.Warn("audit: sign on seal", "err", err)
		}
	}
	if n.raft == nil || !anchor {
		return
	}
	if a.keyed && !a.registered {
		rec, err := n.fsm.AuditKey(n.cfg.NodeID)
		switch {
		case err != nil:
		case rec == nil:
			if err := n.submitAudit(ctx, api.AuditAnchorRequest{Node: n.cfg.NodeID, PublicKey: hex.EncodeToString(a.pub)}); err == nil {
				a.registered = true
			}
		case bytes.Equal(rec.PublicKey, a.pub):
			a.registered = true
		default:
			a.warnOnce("keymismatch", "AUDIT: this node's signing key differs from the one the cluster recorded for it; its checkpoints will not verify (was audit.key replaced?)")
		}
	}
	h := a.l.Head()
	if h.Seq == 0 || h.Seq <= a.sent {
		return
	}
	if last := n.fsm.LastAuditAnchor(n.cfg.NodeID); h.Seq <= last {
		if a.sent == 0 {
			a.warnOnce("behind", "AUDIT: the cluster anchored this node's log beyond its current end; the log was replaced or cut, or the node id reused", "anchored", last, "head", h.Seq)
		}
		return
	}
	err := n.submitAudit(ctx, api.AuditAnchorRequest{Node: n.cfg.NodeID, Seq: h.Seq, Head: hex.EncodeToString(h.Hash[:])})
	if err == nil {
		a.sent = h.Seq
	}
}

// installAuditKey unwraps the signing seed with the barrier keyring (or
// creates and wraps one) and hands the key to the logger. The key lives in
// a keyring.Key like customer keys and is destroyed when the node seals.
// Caller holds a.mu.
func (n *Node) installAuditKey() error {
	a := n.audit
	kf, err := readAuditKeyFile(a.keyPath)
	if err != nil {
		return err
	}
	n.keys.mu.Lock()
	ring := n.keys.barrier.Load()
	if ring == nil {
		n.keys.mu.Unlock()
		return errors.New("sealed")
	}
	name := auditKeyName(n.cfg.NodeID)
	var m *keyring.KeyMaterial
	rewrite := false
	switch {
	case len(kf.Wrapped) > 0:
		m, err = ring.UnwrapMaterial(name, 1, kf.BV, kf.Wrapped)
	default:
		if kf.Seed != "" { // an older version kept the seed in the clear
			var seed []byte
			seed, err = hex.DecodeString(kf.Seed)
			if err == nil && len(seed) != ed25519.SeedSize {
				err = errors.New("signing seed has the wrong length")
			}
			m = keyring.NewKeyMaterial(seed)
		} else {
			m, err = keyring.GenerateMaterial(keyring.Ed25519, rand.Reader)
		}
		if err == nil {
			kf.BV, kf.Wrapped, err = ring.WrapMaterial(name, 1, m)
			rewrite = true
		}
	}
	n.keys.mu.Unlock()
	if err != nil {
		m.Destroy()
		return err
	}
	k, err := keyring.NewKey(name, keyring.Ed25519, []keyring.Version{{Number: 1, Material: m}}, 1)
	m.Destroy()
	if err != nil {
		return err
	}
	der, err := k.PublicKey(1)
	var pub ed25519.PublicKey
	if err == nil {
		var p any
		if p, err = x509.ParsePKIXPublicKey(der); err == nil {
			pub, _ = p.(ed25519.PublicKey)
		}
	}
	if err != nil || len(pub) != ed25519.PublicKeySize {
		k.Destroy()
		return fmt.Errorf("audit signing key: public key: %v", err)
	}
	if rewrite || kf.Seed != "" || kf.Pub == "" {
		kf.Seed = ""
		kf.Pub = hex.EncodeToString(pub)
		if err := writeAuditKeyFile(a.keyPath, kf); err != nil {
			k.Destroy()
			return err
		}
	}
	if err := a.l.SetSigner(auditSigner{k: k, pub: pub}); err != nil {
		k.Destroy()
		return err
	}
	a.keyed, a.pub, a.key = true, pub, k
	return nil
}

// dropAuditKey removes the signing key from the logger (after a last
// checkpoint) and destroys it. Caller holds a.mu.
func (a *auditSink) dropAuditKey() error {
	err := a.l.SetSigner(nil)
	a.key.Destroy()
	a.key, a.keyed = nil, false
	return err
}

// auditSigner signs checkpoints with the sealed audit key.
type auditSigner struct {
	k   *keyring.Key
	pub ed25519.PublicKey
}

func (s auditSigner) Public() crypto.PublicKey { return s.pub }

func (s auditSigner) Sign(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	txt, err := s.k.Sign(msg)
	if err != nil {
		return nil, err
	}
	_, sig, err := keyring.ParseText(txt)
	return sig, err
}

// submitAudit has the leader commit an anchor or public key: directly on
// the leader, over the internal route from a follower.
func (n *Node) submitAudit(ctx context.Context, req api.AuditAnchorRequest) error {
	if n.IsLeader() {
		return n.SubmitAuditAnchor(ctx, n.cfg.NodeID, req)
	}
	id, _ := n.Leader()
	if id == "" {
		return n.notLeader()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return n.peers.postJSON(ctx, id, api.PathInternalAuditAnchor, body, nil)
}

// SubmitAuditAnchor commits node `from`'s public key and/or chain head.
// The HTTP layer has checked that req.Node is the calling node.
func (n *Node) SubmitAuditAnchor(ctx context.Context, from string, req api.AuditAnchorRequest) error {
	if req.Node != from {
		return &api.Error{Code: api.CodeForbidden, Message: "a node may only anchor its own audit log"}
	}
	if !n.IsLeader() {
		return n.notLeader()
	}
	if req.PublicKey != "" {
		pub, err := hex.DecodeString(req.PublicKey)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return &api.Error{Code: api.CodeBadRequest, Message: "public_key must be 64 hex digits"}
		}
		// Decided here when it can be: a refused command stays out of the log.
		cur, err := n.fsm.AuditKey(req.Node)
		switch {
		case err != nil:
			return err
		case cur != nil && bytes.Equal(cur.PublicKey, pub):
		case cur != nil:
			return &api.Error{Code: api.CodeConflict, Message: "the node already has a different audit key; a node that lost its key rejoins under a new node id"}
		default:
			if _, err := n.apply(ctx, &fsm.PutAuditKey{Meta: fsm.Meta{At: time.Now().UTC()}, Node: req.Node, PublicKey: pub}); err != nil {
				return err
			}
		}
	}
	if req.Seq > 0 {
		head, err := hex.DecodeString(req.Head)
		if err != nil || len(head) != 32 {
			return &api.Error{Code: api.CodeBadRequest, Message: "head must be 64 hex digits"}
		}
		if req.Seq <= n.fsm.LastAuditAnchor(req.Node) {
			return &api.Error{Code: api.CodeConflict, Message: "the node's log is already anchored at or beyond this seq"}
		}
		if _, err := n.apply(ctx, &fsm.PutAuditAnchor{Meta: fsm.Meta{At: time.Now().UTC()}, Node: req.Node, Seq: req.Seq, Head: head}); err != nil {
			return err
		}
	}
	return nil
}

// AuditAnchors returns node's audit public key and anchors from the
// replicated state ("" for this node).
func (n *Node) AuditAnchors(node string) (*api.AuditAnchors, error) {
	if node == "" {
		node = n.cfg.NodeID
	}
	out := &api.AuditAnchors{Node: node, Anchors: []api.AuditAnchor{}, Index: n.fsm.AppliedIndex()}
	rec, err := n.fsm.AuditKey(node)
	if err != nil {
		return nil, err
	}
	if rec != nil {
		out.PublicKey = hex.EncodeToString(rec.PublicKey)
	}
	as, err := n.fsm.AuditAnchors(node)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		out.Anchors = append(out.Anchors, api.AuditAnchor{Seq: a.Seq, Head: hex.EncodeToString(a.Head), At: a.At})
	}
	return out, nil
}

// closeAudit runs in Close after the API and the audit loop stopped and
// before Raft: it closes the log (a final checkpoint when the key is
// installed) and anchors the final head, so a clean shutdown leaves no
// unanchored tail.
func (n *Node) closeAudit() {
	if n.audit == nil {
		return
	}
	a := n.audit
	_ = a.l.Close() // the error is reported by Close's own call
	a.mu.Lock()
	a.key.Destroy()
	a.key, a.keyed = nil, false
	sent := a.sent
	a.mu.Unlock()
	if n.raft == nil {
		return
	}
	h := a.l.Head()
	if h.Seq == 0 || h.Seq <= sent || h.Seq <= n.fsm.LastAuditAnchor(n.cfg.NodeID) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := n.submitAudit(ctx, api.AuditAnchorRequest{Node: n.cfg.NodeID, Seq: h.Seq, Head: hex.EncodeToString(h.Hash[:])}); err != nil {
		var ce *api.Error
		if errors.Is(err, api.ErrNotLeader) || errors.Is(err, api.ErrUnavailable) || (errors.As(err, &ce) && api.Retryable(ce.Code)) || errors.Is(err, context.DeadlineExceeded) {
			// The cluster is stopping too (no leader to take it): a
			// normal stop. The head is anchored when the node starts again.
			n.log.Info("audit: final anchor not committed (no leader); it is anchored at the next start", "seq", h.Seq, "err", err)
			return
		}
		n.log.Warn("audit: final anchor not committed; the log's last records stay unanchored until the node starts again", "seq", h.Seq, "err", err)
	}
}

// AuditPublicKey returns this node's checkpoint verification key as the
// replicated state records it (empty until the node was first unsealed).
func (n *Node) AuditPublicKey() *api.AuditKey {
	k := &api.AuditKey{Node: n.cfg.NodeID}
	if rec, err := n.fsm.AuditKey(n.cfg.NodeID); err == nil && rec != nil {
		k.PublicKey = hex.EncodeToString(rec.PublicKey)
	}
	return k
}

// WriteAuditLog copies this node's audit file to w.
func (n *Node) WriteAuditLog(w io.Writer) error {
	if n.audit == nil {
		return errors.New("node: audit log disabled")
	}
	f, err := os.Open(n.audit.path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
