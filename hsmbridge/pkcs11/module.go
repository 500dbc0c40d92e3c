//go:build cgo

package pkcs11

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/keyd/keyd/hsmbridge"
	"github.com/miekg/pkcs11"
)

// modules is the process-wide module registry. It is global because the
// state it tracks is: C_Initialize and C_Finalize act on the whole process
// for a given library, and a second C_Initialize fails.
var modules = &registry{load: loadCtx}

// loadCtx loads the library at path. pkcs11.New returns nil, with no
// error, when dlopen fails.
func loadCtx(path string) (module, error) {
	c := pkcs11.New(path)
	if c == nil {
		return nil, fmt.Errorf("hsmbridge/pkcs11: cannot load module %s: missing file, wrong architecture or missing dependency", path)
	}
	return c, nil
}

// registry shares one initialised module per library among HSMs, counting
// references and finalising the module when the last HSM releases it.
type registry struct {
	load func(path string) (module, error)

	mu   sync.Mutex
	mods map[string]*loaded // by resolved library path
}

type loaded struct {
	mod    module
	refs   int
	owned  bool // we initialised it, so we finalise it
	shared *shared
}

// shared is the state every HSM on one loaded module shares.
type shared struct {
	logins *logins
	// keygen serialises EnsureKey across all HSMs on the module. SoftHSM2
	// 2.6.1 creates token objects unsafely: concurrent key generation from
	// several threads fails at random with CKR_GENERAL_ERROR (SoftHSMv2
	// issue #573; seen here too). It also stops two HSMs on one token in
	// this process from both creating a key for the same label.
	keygen sync.Mutex
}

func newShared() *shared { return &shared{logins: newLogins()} }

// acquire returns the module at path, loading and initialising it on first
// use. The caller must pass the returned key to release exactly once.
func (r *registry) acquire(path string) (*loaded, string, error) {
	key := path
	if p, err := filepath.EvalSymlinks(path); err == nil {
		key = p // two paths to one library share one C_Initialize
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.mods[key]; ok {
		l.refs++
		return l, key, nil
	}
	mod, err := r.load(path)
	if err != nil {
		return nil, "", err
	}
	owned := true
	if err := mod.Initialize(); err != nil {
		if !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			mod.Destroy()
			return nil, "", fmt.Errorf("%w (for SoftHSM2, check SOFTHSM2_CONF with softhsm2-util --show-slots)", mapError(callInitialize, err))
		}
		owned = false // someone else in this process did; leave it to them
	}
	l := &loaded{mod: mod, refs: 1, owned: owned, shared: newShared()}
	if r.mods == nil {
		r.mods = make(map[string]*loaded)
	}
	r.mods[key] = l
	return l, key, nil
}

// release drops one reference; the last one finalises and unloads the
// module.
func (r *registry) release(key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.mods[key]
	if !ok {
		return fmt.Errorf("hsmbridge/pkcs11: release of unknown module %s", key)
	}
	l.refs--
	if l.refs > 0 {
		return nil
	}
	delete(r.mods, key)
	var err error
	if l.owned {
		if e := l.mod.Finalize(); e != nil {
			err = fmt.Errorf("hsmbridge/pkcs11: C_Finalize: %w", e)
		}
	}
	l.mod.Destroy()
	return err
}

// logins remembers, per slot, a keyed hash of the PIN that logged this
// process in. PKCS#11 login is per application: once one session is logged
// in, C_Login on another returns CKR_USER_ALREADY_LOGGED_IN without
// checking the PIN, so without this a second Open with a wrong PIN would
// succeed.
type logins struct {
	mu   sync.Mutex // held across C_Login so check and record are atomic
	key  [32]byte   // random per module load; never leaves this struct
	tags map[uint][sha256.Size]byte
}

func newLogins() *logins {
	l := &logins{tags: make(map[uint][sha256.Size]byte)}
	_, _ = rand.Read(l.key[:]) // since Go 1.24 Read never returns an error
	return l
}

func (l *logins) tag(pin string) [sha256.Size]byte {
	m := hmac.New(sha256.New, l.key[:])
	m.Write([]byte(pin))
	var t [sha256.Size]byte
	m.Sum(t[:0])
	return t
}

// login logs session sh in as the user.
func (l *logins) login(p p11, sh pkcs11.SessionHandle, slot uint, pin string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := p.Login(sh, pkcs11.CKU_USER, pin)
	switch {
	case err == nil:
		l.tags[slot] = l.tag(pin)
		return nil
	case isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		want, ok := l.tags[slot]
		if got := l.tag(pin); ok && !hmac.Equal(got[:], want[:]) {
			return fmt.Errorf("hsmbridge/pkcs11: C_Login: %w: PIN differs from the one this process logged in with", hsmbridge.ErrLogin)
		}
		return nil
	default:
		return mapError(callLogin, err)
	}
}
