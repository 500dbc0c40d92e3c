package node

import (
	"crypto/sha256"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
)

// tokenEntry is what a node keeps of a token: its policies and expiry,
// keyed by the token's SHA-256 hash. The token itself is never stored.
type tokenEntry struct {
	policies  []string
	expiresAt time.Time
}

// tokenSet is an immutable map swapped whole when tokens change, so the
// per-request check takes no lock.
type tokenSet struct {
	byHash map[[32]byte]tokenEntry
}

type authenticator struct {
	set atomic.Pointer[tokenSet]
}

func (a *authenticator) reload(f *fsm.FSM) error {
	recs, err := f.Tokens()
	if err != nil {
		return err
	}
	s := &tokenSet{byHash: make(map[[32]byte]tokenEntry, len(recs))}
	for _, r := range recs {
		if len(r.Hash) != 32 {
			continue
		}
		s.byHash[[32]byte(r.Hash)] = tokenEntry{policies: r.Policies, expiresAt: r.ExpiresAt}
	}
	a.set.Store(s)
	return nil
}

// maxTokenLen bounds what is hashed; real tokens are 46 bytes.
const maxTokenLen = 256

// Authenticate checks an Authorization header value. Lookup is by the
// hash of the presented token, so no comparison of secret bytes depends on
// their content; the hash is computed in a stack buffer so the check does
// not allocate.
func (a *authenticator) Authenticate(header string) error {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || len(tok) == 0 || len(tok) > maxTokenLen {
		return api.ErrUnauthorized
	}
	var buf [maxTokenLen]byte
	n := copy(buf[:], tok)
	h := sha256.Sum256(buf[:n])
	clear(buf[:n])
	s := a.set.Load()
	if s == nil {
		return api.ErrUnauthorized
	}
	e, ok := s.byHash[h]
	if !ok {
		return api.ErrUnauthorized
	}
	if !e.expiresAt.IsZero() && time.Now().After(e.expiresAt) {
		return api.ErrUnauthorized
	}
	return nil
}
