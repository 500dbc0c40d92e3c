package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// applier applies commands inside one bbolt write transaction. Every
// applyX checks all its preconditions before its first write, so a command
// that fails changes nothing.
type applier struct {
	index   uint64 // of the entry being applied (0 in Check)
	tx      *bolt.Tx
	changed map[string]*KeyRecord // name -> new record (nil when deleted)
	ev      *Event
}

// errStorage marks a bbolt failure inside an apply; it aborts the batch.
type errStorage struct{ err error }

func (e errStorage) Error() string { return "fsm: storage: " + e.err.Error() }

func (a *applier) apply(index uint64, data []byte) (res *Result) {
	cmd, err := Decode(data)
	if err != nil {
		return &Result{Index: index, Err: err}
	}
	m := cmd.meta()
	if m.RequestID != "" {
		if v := a.tx.Bucket(bucketRequests).Get(m.requestKey()); len(v) >= 8 {
			if m.Scope != "" && !bytes.Equal(v[8:], m.Digest) {
				return &Result{Index: index, Err: ErrRequestReused}
			}
			return &Result{Index: binary.BigEndian.Uint64(v), Duplicate: true}
		}
	}
	a.index = index
	if err := a.dispatch(cmd); err != nil {
		var se errStorage
		if errors.As(err, &se) {
			panic(fmt.Sprintf("fsm: bbolt write failed, halting replica: %v", se.err))
		}
		return &Result{Index: index, Err: err}
	}
	if m.RequestID != "" {
		a.rememberRequest(m, index)
	}
	res = &Result{Index: index}
	// The record as this command left it (a later command of the same
	// batch writes a new one), so a reply describes its own write.
	switch c := cmd.(type) {
	case *CreateKey:
		res.Key = a.changed[c.Name]
	case *RotateKey:
		res.Key = a.changed[c.Name]
	}
	return res
}

func (a *applier) dispatch(cmd Command) error {
	switch c := cmd.(type) {
	case *Init:
		return a.applyInit(c)
	case *CreateKey:
		return a.applyCreateKey(c)
	case *RotateKey:
		return a.applyRotateKey(c)
	case *SetKeyState:
		return a.updateKey(c.Name, func(k *KeyRecord) error {
			if k.State == StatePendingDeletion {
				return ErrKeyPendingDeletion
			}
			if c.Enabled {
				k.State = StateEnabled
			} else {
				k.State = StateDisabled
			}
			return nil
		})
	case *ConfigureKey:
		return a.updateKey(c.Name, func(k *KeyRecord) error {
			if c.MinDecryptionVersion != nil {
				v := *c.MinDecryptionVersion
				if v < 1 || v > k.Latest() {
					return fmt.Errorf("%w: min decryption version %d outside 1..%d", ErrInvalidCommand, v, k.Latest())
				}
				k.MinDecryptionVersion = v
			}
			if c.RotationPeriod != nil {
				if *c.RotationPeriod < 0 {
					return fmt.Errorf("%w: negative rotation period", ErrInvalidCommand)
				}
				k.RotationPeriod = *c.RotationPeriod
			}
			return configureTagsRetention(k, c)
		})
	case *ScheduleDeletion:
		return a.updateKey(c.Name, func(k *KeyRecord) error {
			if k.State == StatePendingDeletion {
				return ErrKeyPendingDeletion
			}
			if !c.DeleteAt.After(c.At) {
				return fmt.Errorf("%w: deletion time not in the future", ErrInvalidCommand)
			}
			k.State = StatePendingDeletion
			k.DeletionAt = c.DeleteAt
			return nil
		})
	case *CancelDeletion:
		return a.updateKey(c.Name, func(k *KeyRecord) error {
			if k.State != StatePendingDeletion {
				return fmt.Errorf("%w: key is not scheduled for deletion", ErrConflict)
			}
			k.State = StateDisabled
			k.DeletionAt = time.Time{}
			return nil
		})
	case *DeleteKey:
		return a.applyDeleteKey(c)
	case *PutToken:
		return a.applyPutToken(c)
	case *PutNodeShares:
		return a.applyNodeShares(c)
	case *RotateRoot:
		return a.applyRotateRoot(c)
	case *SealCluster:
		return a.applySealCluster(c)
	case *PinDeliveryKey:
		return a.applyPinDeliveryKey(c)
	case *PutPolicy:
		if c.Name == "" || len(c.Doc) == 0 {
			return fmt.Errorf("%w: policy name and document required", ErrInvalidCommand)
		}
		if err := a.checkPolicyCAS(c.Name, &c.PolicyCAS); err != nil {
			return err
		}
		return a.putJSON(bucketPolicies, c.Name, &PolicyRecord{Name: c.Name, Doc: c.Doc, UpdatedAt: c.At})
	case *DeletePolicy:
		if err := a.checkPolicyCAS(c.Name, &c.PolicyCAS); err != nil {
			return err
		}
		return a.deleteEntry(bucketPolicies, c.Name)
	case *PutIdentity:
		if len(c.ID) != 64 || len(c.Policies) == 0 {
			return fmt.Errorf("%w: identity needs a 64-hex-digit id and a policy", ErrInvalidCommand)
		}
		return a.putJSON(bucketIdentities, c.ID, &IdentityRecord{ID: c.ID, Name: c.Name, Policies: c.Policies, CreatedAt: c.At})
	case *DeleteIdentity:
		return a.deleteEntry(bucketIdentities, c.ID)
	case *RemoveNode:
		if c.NodeID == "" || len(c.NodeID) > 128 {
			return fmt.Errorf("%w: node id", ErrInvalidCommand)
		}
		v, _ := json.Marshal(c.At)
		if err := a.tx.Bucket(bucketRemoved).Put([]byte(c.NodeID), v); err != nil {
			return errStorage{err}
		}
		return nil
	case *RevokeToken:
		if len(c.Hash) == 0 {
			return fmt.Errorf("%w: empty token hash", ErrInvalidCommand)
		}
		return a.deleteEntry(bucketTokens, string(c.Hash))
	}
	if ok, err := a.dispatchUsage(cmd); ok {
		return err
	}
	if ok, err := a.dispatchAudit(cmd); ok {
		return err
	}
	if ok, err := a.dispatchKV(cmd); ok {
		return err
	}
	return fmt.Errorf("%w: %T", ErrUnknownCommand, cmd)
}

func (a *applier) applyInit(c *Init) error {
	meta := a.tx.Bucket(bucketMeta)
	if meta.Get(keyInit) != nil {
		return ErrAlreadyInitialized
	}
	if c.Threshold < 1 || c.Custodians < c.Threshold || len(c.Commitments) == 0 || len(c.WrappedBarrier) == 0 || len(c.AdminTokenHash) == 0 {
		return fmt.Errorf("%w: init record incomplete", ErrInvalidCommand)
	}
	rec, err := json.Marshal(&InitRecord{
		Custodians: c.Custodians, Threshold: c.Threshold,
		Commitments: c.Commitments, WrappedBarrier: c.WrappedBarrier, At: c.At,
		InitRequestID: c.InitRequestID, Params: c.Params,
		EncryptedShares: c.EncryptedShares, EncryptedAdminToken: c.EncryptedAdminToken,
	})
	if err != nil {
		return err
	}
	if err := meta.Put(keyInit, rec); err != nil {
		return errStorage{err}
	}
	if err := a.putToken(&TokenRecord{Hash: c.AdminTokenHash, Policies: []string{"admin"}, CreatedAt: c.At}); err != nil {
		return err
	}
	a.ev.Init = true
	return nil
}

func validVersion(w *WrappedVersion, want uint32) error {
	if w.Version != want {
		return fmt.Errorf("%w: version %d, want %d", ErrInvalidCommand, w.Version, want)
	}
	if w.BarrierVersion == 0 || len(w.Wrapped) == 0 {
		return fmt.Errorf("%w: version %d has no wrapped material", ErrInvalidCommand, w.Version)
	}
	return nil
}

func (a *applier) applyCreateKey(c *CreateKey) error {
	if c.Name == "" || c.Type == "" {
		return fmt.Errorf("%w: key name and type required", ErrInvalidCommand)
	}
	if err := a.requireInit(); err != nil {
		return err
	}
	if err := validVersion(&c.First, 1); err != nil {
		return err
	}
	if c.RotationPeriod < 0 {
		return fmt.Errorf("%w: negative rotation period", ErrInvalidCommand)
	}
	if err := checkTagsRetention(c.Tags, c.Retention); err != nil {
		return err
	}
	if a.tx.Bucket(bucketKeys).Get([]byte(c.Name)) != nil {
		return ErrKeyExists
	}
	first := c.First
	first.CreatedAt = c.At
	rec := &KeyRecord{
		Name: c.Name, Type: c.Type, State: StateEnabled,
		CreatedAt: c.At, RotatedAt: c.At,
		MinDecryptionVersion: 1, RotationPeriod: c.RotationPeriod,
		Versions: []WrappedVersion{first},
		Tags:     c.Tags, Retention: c.Retention,
	}
	return a.putKey(rec)
}

func (a *applier) applyRotateKey(c *RotateKey) error {
	return a.updateKey(c.Name, func(k *KeyRecord) error {
		if k.State == StatePendingDeletion {
			return ErrKeyPendingDeletion
		}
		if k.Latest() != c.FromVersion {
			return fmt.Errorf("%w: key is at version %d, rotation expected %d", ErrConflict, k.Latest(), c.FromVersion)
		}
		if err := validVersion(&c.New, c.FromVersion+1); err != nil {
			return err
		}
		nv := c.New
		nv.CreatedAt = c.At
		k.Versions = append(k.Versions, nv)
		k.RotatedAt = c.At
		return nil
	})
}

func (a *applier) applyDeleteKey(c *DeleteKey) error {
	k, err := getKey(a.tx, c.Name)
	if err != nil {
		return err
	}
	if k.State != StatePendingDeletion || !k.DeletionAt.Equal(c.DeleteAt) {
		return fmt.Errorf("%w: key is not scheduled for deletion at that time", ErrConflict)
	}
	if c.At.Before(k.DeletionAt) {
		return fmt.Errorf("%w: deletion time not reached", ErrConflict)
	}
	if err := a.tx.Bucket(bucketKeys).Delete([]byte(c.Name)); err != nil {
		return errStorage{err}
	}
	if err := unindexKey(a.tx, c.Name); err != nil {
		return errStorage{err}
	}
	if err := a.deleteUsage(c.Name); err != nil {
		return err
	}
	delete(a.changed, c.Name)
	a.ev.Deleted = append(a.ev.Deleted, c.Name)
	return nil
}

func (a *applier) applyPutToken(c *PutToken) error {
	if len(c.Hash) != 32 || len(c.Policies) == 0 {
		return fmt.Errorf("%w: token needs a 32-byte hash and a policy", ErrInvalidCommand)
	}
	return a.putToken(&TokenRecord{Hash: c.Hash, Name: c.Name, Policies: c.Policies, CreatedAt: c.At, ExpiresAt: c.ExpiresAt})
}

func (a *applier) putToken(rec *TokenRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := a.tx.Bucket(bucketTokens).Put(rec.Hash, v); err != nil {
		return errStorage{err}
	}
	a.ev.Tokens = true
	return nil
}

func (a *applier) requireInit() error {
	if a.tx.Bucket(bucketMeta).Get(keyInit) == nil {
		return ErrNotInitialized
	}
	return nil
}

// updateKey loads name, lets fn change it and stores it. fn returns an
// error before changing anything it should not.
func (a *applier) updateKey(name string, fn func(*KeyRecord) error) error {
	k, err := getKey(a.tx, name)
	if err != nil {
		return err
	}
	if err := fn(k); err != nil {
		return err
	}
	return a.putKey(k)
}

func (a *applier) putKey(k *KeyRecord) error {
	v, err := json.Marshal(k)
	if err != nil {
		return err
	}
	keys := a.tx.Bucket(bucketKeys)
	added := keys.Get([]byte(k.Name)) == nil
	if err := keys.Put([]byte(k.Name), v); err != nil {
		return errStorage{err}
	}
	if err := indexKey(a.tx, k, added); err != nil {
		return errStorage{err}
	}
	a.changed[k.Name] = k
	a.ev.Deleted = removeName(a.ev.Deleted, k.Name)
	return nil
}

func removeName(names []string, name string) []string {
	out := names[:0]
	for _, n := range names {
		if n != name {
			out = append(out, n)
		}
	}
	return out
}

// rememberRequest records the request id and prunes ids older than
// RequestRetention on the proposer's clock (deterministic on every replica).
func (a *applier) rememberRequest(m *Meta, index uint64) {
	reqs := a.tx.Bucket(bucketRequests)
	byTime := a.tx.Bucket(bucketReqByTime)
	rkey := m.requestKey()
	idx := make([]byte, 8, 8+len(m.Digest))
	binary.BigEndian.PutUint64(idx, index)
	if m.Scope != "" {
		idx = append(idx, m.Digest...)
	}
	tkey := make([]byte, 8+len(rkey))
	binary.BigEndian.PutUint64(tkey, uint64(m.At.UnixNano()))
	copy(tkey[8:], rkey)
	if err := reqs.Put(rkey, idx); err != nil {
		panic(fmt.Sprintf("fsm: bbolt write failed, halting replica: %v", err))
	}
	if err := byTime.Put(tkey, nil); err != nil {
		panic(fmt.Sprintf("fsm: bbolt write failed, halting replica: %v", err))
	}
	var cutoff [8]byte
	binary.BigEndian.PutUint64(cutoff[:], uint64(m.At.Add(-RequestRetention).UnixNano()))
	c := byTime.Cursor()
	for k, _ := c.First(); len(k) >= 8 && bytes.Compare(k[:8], cutoff[:]) < 0; k, _ = c.First() {
		_ = reqs.Delete(k[8:])
		if err := c.Delete(); err != nil {
			panic(fmt.Sprintf("fsm: bbolt write failed, halting replica: %v", err))
		}
	}
}

func (a *applier) applyNodeShares(c *PutNodeShares) error {
	if err := a.requireInit(); err != nil {
		return err
	}
	if c.Threshold < 1 || len(c.Holders) < c.Threshold || len(c.Commitments) == 0 {
		return fmt.Errorf("%w: node shares need commitments and at least threshold holders", ErrInvalidCommand)
	}
	meta := a.tx.Bucket(bucketMeta)
	if v := meta.Get(keyNodeShares); v != nil {
		var cur NodeSharesRecord
		if err := json.Unmarshal(v, &cur); err == nil && cur.Epoch >= c.Epoch {
			return fmt.Errorf("%w: node share epoch %d is not newer than %d", ErrConflict, c.Epoch, cur.Epoch)
		}
	}
	rec, err := json.Marshal(&NodeSharesRecord{Epoch: c.Epoch, Threshold: c.Threshold, Commitments: c.Commitments, Holders: c.Holders, Voters: c.Voters, At: c.At})
	if err != nil {
		return err
	}
	if err := meta.Put(keyNodeShares, rec); err != nil {
		return errStorage{err}
	}
	a.ev.NodeShares = true
	return nil
}

func (a *applier) putJSON(bucket []byte, key string, v any) error {
	if err := a.requireInit(); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := a.tx.Bucket(bucket).Put([]byte(key), b); err != nil {
		return errStorage{err}
	}
	a.ev.Tokens = true
	return nil
}

// checkPolicyCAS enforces a PolicyCAS condition on the stored policy name.
func (a *applier) checkPolicyCAS(name string, c *PolicyCAS) error {
	if !c.Check {
		return nil
	}
	var cur []byte
	if v := a.tx.Bucket(bucketPolicies).Get([]byte(name)); v != nil {
		var rec PolicyRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("fsm: decode policy record %q: %w", name, err)
		}
		cur = rec.Doc
		if cur == nil {
			cur = []byte{}
		}
	}
	if (cur == nil) != (c.Prev == nil) || !bytes.Equal(cur, c.Prev) {
		return fmt.Errorf("%w: policy %s changed since the write was authorized; retry", ErrConflict, name)
	}
	return nil
}

func (a *applier) deleteEntry(bucket []byte, key string) error {
	b := a.tx.Bucket(bucket)
	if key == "" || b.Get([]byte(key)) == nil {
		return ErrNotFound
	}
	if err := b.Delete([]byte(key)); err != nil {
		return errStorage{err}
	}
	a.ev.Tokens = true
	return nil
}

func (a *applier) applyRotateRoot(c *RotateRoot) error {
	meta := a.tx.Bucket(bucketMeta)
	v := meta.Get(keyInit)
	if v == nil {
		return ErrNotInitialized
	}
	var cur InitRecord
	if err := json.Unmarshal(v, &cur); err != nil {
		return err
	}
	if !bytes.Equal(cur.Commitments, c.PrevCommitments) {
		return fmt.Errorf("%w: the root changed since this rotation started", ErrConflict)
	}
	if c.Threshold < 1 || c.Custodians < c.Threshold || len(c.Commitments) == 0 || len(c.WrappedBarrier) == 0 {
		return fmt.Errorf("%w: root rotation record incomplete", ErrInvalidCommand)
	}
	rec, err := json.Marshal(&InitRecord{Custodians: c.Custodians, Threshold: c.Threshold, Commitments: c.Commitments, WrappedBarrier: c.WrappedBarrier, At: c.At})
	if err != nil {
		return err
	}
	if err := meta.Put(keyInit, rec); err != nil {
		return errStorage{err}
	}
	a.ev.Root = true
	return nil
}
