package node

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/node/errs"
)

// Tokenization (vault mode). A token is "kdt_" and 24 random bytes in
// unpadded base64url: it says nothing about its value, and the same value
// tokenized twice gets two tokens (no equality leaks from the tokens).
// The value is sealed under the barrier by the leader and stored in the
// replicated state under the key's name and the token's SHA-256.
const (
	tokenPrefix    = "kdt_"
	tokenRandBytes = 24
	// MaxTokenTTL bounds a token's ttl.
	MaxTokenTTL = 10 * 365 * 24 * time.Hour
	// maxTokenizeRetries bounds draws after a token collision (never
	// expected with 192 random bits).
	maxTokenizeRetries = 3
)

var errNoToken = &errs.NotFound{What: "token"}

// Tokenize stores value under a fresh random token of key name and
// returns the token. The key must exist and be enabled; its policy
// (capability tokenize) governs the call.
//
// Tokenize ignores the request id: only a token's hash is stored, so a
// retry could not be answered with the first token. A retried call (the
// client retries with one request id after a timeout or a leader change)
// stores a second token for the same value instead; both detokenize to
// the value and the unused one expires with its ttl. Duplicate tokens are
// harmless, a retry that fails for want of the first token is not.
func (n *Node) Tokenize(ctx context.Context, _ string, name string, req api.TokenizeRequest) (*api.TokenizeResponse, error) {
	if !api.ValidKeyName(name) {
		return nil, fsm.ErrKeyNotFound
	}
	if req.Value == "" || len(req.Value) > api.MaxTokenizeValue {
		return nil, badRequest("value must be 1-%d bytes", api.MaxTokenizeValue)
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 || d > MaxTokenTTL {
			return nil, badRequest("ttl must be a positive duration up to %s, like 720h", MaxTokenTTL)
		}
		ttl = d
	}
	for attempt := 0; ; attempt++ {
		if err := n.notLeaderOrSealed(); err != nil {
			return nil, err
		}
		m := n.meta("")
		k, err := n.fsm.Key(name)
		if err != nil {
			return nil, err
		}
		if k.State != fsm.StateEnabled {
			return nil, api.ErrKeyDisabled
		}
		var det *detTokenize
		if req.Deterministic {
			det, err = n.detLookup(name, k, req.Value)
			if err != nil {
				return nil, err
			}
			if det.existing != nil {
				// The value's token is shared by every caller: one that
				// asks for a longer life than it has would get a token
				// that dies early (a tokenize holder who knows the value
				// could plant a short-lived one first). Say so instead.
				if e := det.existing.ExpiresAt; e != nil && (ttl == 0 || e.Before(m.At.Add(ttl))) {
					return nil, &errs.Conflict{Reason: fmt.Sprintf("the value's deterministic token expires at %s, sooner than this request asks; use a random token or wait for it to expire", e.UTC().Format(time.RFC3339))}
				}
				return det.existing, nil
			}
		}
		var raw [tokenRandBytes]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return nil, fmt.Errorf("node: token: %w", err)
		}
		token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
		th := fsm.TokenHash(token)
		bv, sealed, err := n.keys.sealData(fsm.VaultAAD(name, th), []byte(req.Value))
		if err != nil {
			return nil, err
		}
		c := &fsm.Tokenize{Meta: m, Key: name, KeyCreatedAt: k.CreatedAt, TokenHash: th, BarrierVersion: bv, Sealed: sealed}
		if det != nil {
			tbv, st, err := n.keys.sealData(fsm.DetTokenAAD(name, det.lookup), []byte(token))
			if err != nil {
				return nil, err
			}
			c.IndexKey, c.Lookup, c.SealedToken = det.newIndexKey, det.lookup, &fsm.SealedBlob{BarrierVersion: tbv, Sealed: st}
		}
		if ttl > 0 {
			c.ExpiresAt = m.At.Add(ttl)
		}
		res, err := n.propose(ctx, c)
		if errors.Is(err, fsm.ErrConflict) && !errors.Is(err, fsm.ErrRequestReused) && attempt < maxTokenizeRetries {
			continue
		}
		if err != nil {
			return nil, err
		}
		out := &api.TokenizeResponse{Token: token, Index: res.Index}
		if ttl > 0 {
			e := c.ExpiresAt
			out.ExpiresAt = &e
		}
		return out, nil
	}
}

// detTokenize is the deterministic part of a tokenize: the value's
// existing token, or the index entry (and perhaps a new index key) for a
// new one.
type detTokenize struct {
	existing    *api.TokenizeResponse
	lookup      []byte
	newIndexKey *fsm.SealedBlob
}

// detLookup computes the value's lookup with the key's index key (a new
// one, sealed, when the key generation has none yet) and answers the
// value's live token if it has one.
func (n *Node) detLookup(name string, k *fsm.KeyRecord, value string) (*detTokenize, error) {
	out := &detTokenize{}
	aad := fsm.IndexKeyAAD(name, k.CreatedAt)
	var ik []byte
	if rec := n.fsm.VaultIndexKey(name); rec != nil && rec.KeyCreatedAt.Equal(k.CreatedAt) {
		b, err := n.keys.openData(aad, rec.BarrierVersion, rec.Sealed)
		if err != nil {
			return nil, fmt.Errorf("node: open token index key: %w", err)
		}
		ik = b
	} else {
		ik = make([]byte, 32)
		if _, err := rand.Read(ik); err != nil {
			return nil, fmt.Errorf("node: token index key: %w", err)
		}
		bv, sealed, err := n.keys.sealData(aad, ik)
		if err != nil {
			return nil, err
		}
		out.newIndexKey = &fsm.SealedBlob{BarrierVersion: bv, Sealed: sealed}
	}
	mac := hmac.New(sha256.New, ik)
	mac.Write([]byte("keyd token lookup v1\x00"))
	mac.Write([]byte(value))
	out.lookup = mac.Sum(nil)
	clear(ik)
	if out.newIndexKey != nil {
		return out, nil
	}
	d := n.fsm.VaultDet(name, out.lookup)
	if d == nil {
		return out, nil
	}
	rec, err := n.fsm.VaultToken(name, d.TokenHash)
	if err != nil || (!rec.ExpiresAt.IsZero() && !time.Now().Before(rec.ExpiresAt)) {
		return out, nil // expired: the write replaces it
	}
	tok, err := n.keys.openData(fsm.DetTokenAAD(name, out.lookup), d.BarrierVersion, d.Sealed)
	if err != nil {
		return nil, fmt.Errorf("node: open deterministic token: %w", err)
	}
	out.existing = &api.TokenizeResponse{Token: string(tok), Index: n.fsm.AppliedIndex()}
	if !rec.ExpiresAt.IsZero() {
		e := rec.ExpiresAt
		out.existing.ExpiresAt = &e
	}
	return out, nil
}

// Detokenize returns the value token stands for, from this node's applied
// state. An unknown, expired or malformed token, a token of another key
// and a token of a key deleted (and perhaps created again) since are all
// the same "no such token".
func (n *Node) Detokenize(ctx context.Context, name string, req api.DetokenizeRequest) (*api.DetokenizeResponse, error) {
	if !api.ValidKeyName(name) {
		return nil, fsm.ErrKeyNotFound
	}
	if len(req.Token) != len(tokenPrefix)+base64.RawURLEncoding.EncodedLen(tokenRandBytes) || req.Token[:len(tokenPrefix)] != tokenPrefix {
		return nil, errNoToken
	}
	k, err := n.fsm.Key(name)
	if err != nil {
		return nil, err
	}
	if k.State != fsm.StateEnabled {
		return nil, api.ErrKeyDisabled
	}
	th := fsm.TokenHash(req.Token)
	rec, err := n.fsm.VaultToken(name, th)
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, errNoToken
	}
	if err != nil {
		return nil, err
	}
	if !rec.KeyCreatedAt.Equal(k.CreatedAt) || (!rec.ExpiresAt.IsZero() && !time.Now().Before(rec.ExpiresAt)) {
		return nil, errNoToken
	}
	pt, err := n.keys.openData(fsm.VaultAAD(name, th), rec.BarrierVersion, rec.Sealed)
	if err != nil {
		if errors.Is(err, errs.ErrSealed) {
			return nil, err
		}
		n.log.Error("token value does not open", "key", name, "err", err)
		return nil, fmt.Errorf("node: open token value: %w", err)
	}
	return &api.DetokenizeResponse{Value: string(pt)}, nil
}

// purgeTokens, on the leader, removes tokens that have expired and the
// tokens of deleted keys (in batches of fsm.MaxTokenPurge per scheduler
// pass). Tokens of a key deleted and created again under the same name
// never detokenize (see Detokenize) and go when they expire.
func (n *Node) purgeTokens(ctx context.Context, now time.Time) {
	orphans := n.fsm.OrphanVaultKeys(100)
	if !n.fsm.TokensExpiredBy(now) && len(orphans) == 0 {
		return
	}
	if _, err := n.apply(ctx, &fsm.TokenPurge{Meta: fsm.Meta{At: now}, Orphans: orphans}); err != nil {
		n.log.Warn("expired token purge failed", "err", err)
	}
}
