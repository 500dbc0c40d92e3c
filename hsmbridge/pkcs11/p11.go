//go:build cgo

package pkcs11

import "github.com/miekg/pkcs11"

// p11 is the subset of *pkcs11.Ctx an HSM uses: the test seam (faked in
// fake_test.go). Every method is a blocking call into the module.
type p11 interface {
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error)
	OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error)
	CloseSession(sh pkcs11.SessionHandle) error
	Login(sh pkcs11.SessionHandle, userType uint, pin string) error
	FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error
	FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error)
	FindObjectsFinal(sh pkcs11.SessionHandle) error
	GenerateKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	EncryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Encrypt(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
	DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Decrypt(sh pkcs11.SessionHandle, cipher []byte) ([]byte, error)
}

// module adds the process-wide lifecycle calls the registry makes.
type module interface {
	p11
	Initialize(opts ...pkcs11.InitializeOption) error
	Finalize() error
	Destroy()
}

var _ module = (*pkcs11.Ctx)(nil)

// gcmParams is one AES-GCM operation's mechanism. Free must be called after
// the operation's last call (Encrypt or Decrypt) returns.
type gcmParams interface {
	Mechanism() []*pkcs11.Mechanism
	// IV returns the IV the device used (some devices pick their own).
	IV() []byte
	Free()
}

// gcmFunc builds gcmParams. It is a field of HSM rather than a direct call
// because *pkcs11.GCMParams hides its contents from Go, so the fake needs
// its own encoding.
type gcmFunc func(iv, aad []byte) gcmParams

type ctxGCM struct {
	p    *pkcs11.GCMParams
	mech []*pkcs11.Mechanism
}

func (g ctxGCM) Mechanism() []*pkcs11.Mechanism { return g.mech }
func (g ctxGCM) IV() []byte                     { return g.p.IV() }
func (g ctxGCM) Free()                          { g.p.Free() }

// newCtxGCM returns real CKM_AES_GCM parameters with a 128-bit tag.
func newCtxGCM(iv, aad []byte) gcmParams {
	p := pkcs11.NewGCMParams(iv, aad, 128)
	return ctxGCM{p: p, mech: []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, p)}}
}
