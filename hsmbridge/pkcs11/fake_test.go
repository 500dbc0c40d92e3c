//go:build cgo

package pkcs11

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"sync"

	"github.com/keyd/keyd/hsmbridge/internal/envelope"
	"github.com/miekg/pkcs11"
)

// fake is an in-memory PKCS#11 token set implementing module, with AES-GCM
// done by crypto/cipher, per-application login like a real token, and
// hooks to inject errors or block a call.
type fake struct {
	mu       sync.Mutex
	tokens   map[uint]string // slot -> token label
	pin      string
	loggedIn map[uint]bool
	sessions map[pkcs11.SessionHandle]*fakeSession
	objects  map[pkcs11.ObjectHandle]*fakeObject
	next     uint

	open, maxOpen, closedSessions int
	inits, finals, destroys       int
	initErr                       error

	fail         map[string]error      // method -> error, returned once
	block        map[string]*fakeBlock // method -> blocks the next call
	tokenInfoErr error                 // returned by every GetTokenInfo
}

type fakeSession struct {
	slot uint
	op   *fakeOp
	find []pkcs11.ObjectHandle
}

type fakeOp struct {
	encrypt bool
	key     []byte
	iv, aad []byte
}

type fakeObject struct {
	slot  uint
	label string
	key   []byte
}

type fakeBlock struct {
	entered chan struct{} // closed when the call starts
	release chan struct{} // the call returns once this is closed
}

func newFake(pin string, labels ...string) *fake {
	f := &fake{
		tokens:   make(map[uint]string),
		pin:      pin,
		loggedIn: make(map[uint]bool),
		sessions: make(map[pkcs11.SessionHandle]*fakeSession),
		objects:  make(map[pkcs11.ObjectHandle]*fakeObject),
		fail:     make(map[string]error),
		block:    make(map[string]*fakeBlock),
		next:     100,
	}
	for i, l := range labels {
		f.tokens[uint(7+i*1000)] = l // slot ids are arbitrary, like SoftHSM2's
	}
	return f
}

// failNext makes the next call of method return err.
func (f *fake) failNext(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

// blockNext makes the next call of method wait until release is called.
func (f *fake) blockNext(method string) (entered <-chan struct{}, release func()) {
	b := &fakeBlock{entered: make(chan struct{}), release: make(chan struct{})}
	f.mu.Lock()
	f.block[method] = b
	f.mu.Unlock()
	var once sync.Once
	return b.entered, func() { once.Do(func() { close(b.release) }) }
}

// enter runs the hooks for method and locks f. It returns an injected
// error, if any; the caller must unlock.
func (f *fake) enter(method string) error {
	f.mu.Lock()
	b := f.block[method]
	delete(f.block, method)
	if b != nil {
		f.mu.Unlock()
		close(b.entered)
		<-b.release
		f.mu.Lock()
	}
	if err, ok := f.fail[method]; ok {
		delete(f.fail, method)
		return err
	}
	return nil
}

func (f *fake) stats() (open, maxOpen, closed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open, f.maxOpen, f.closedSessions
}

func (f *fake) session(sh pkcs11.SessionHandle) (*fakeSession, error) {
	s, ok := f.sessions[sh]
	if !ok {
		return nil, pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	return s, nil
}

func (f *fake) Initialize(...pkcs11.InitializeOption) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inits++
	return f.initErr
}

func (f *fake) Finalize() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finals++
	return nil
}

func (f *fake) Destroy() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroys++
}

func (f *fake) GetSlotList(bool) ([]uint, error) {
	err := f.enter("GetSlotList")
	defer f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var out []uint
	for s := range f.tokens {
		out = append(out, s)
	}
	return out, nil
}

func (f *fake) GetTokenInfo(slot uint) (pkcs11.TokenInfo, error) {
	err := f.enter("GetTokenInfo")
	defer f.mu.Unlock()
	if err != nil {
		return pkcs11.TokenInfo{}, err
	}
	if f.tokenInfoErr != nil {
		return pkcs11.TokenInfo{}, f.tokenInfoErr
	}
	l, ok := f.tokens[slot]
	if !ok {
		return pkcs11.TokenInfo{}, pkcs11.Error(pkcs11.CKR_SLOT_ID_INVALID)
	}
	return pkcs11.TokenInfo{Label: l}, nil
}

func (f *fake) OpenSession(slot uint, _ uint) (pkcs11.SessionHandle, error) {
	err := f.enter("OpenSession")
	defer f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if _, ok := f.tokens[slot]; !ok {
		return 0, pkcs11.Error(pkcs11.CKR_SLOT_ID_INVALID)
	}
	f.next++
	sh := pkcs11.SessionHandle(f.next)
	f.sessions[sh] = &fakeSession{slot: slot}
	f.open++
	f.maxOpen = max(f.maxOpen, f.open)
	return sh, nil
}

func (f *fake) CloseSession(sh pkcs11.SessionHandle) error {
	err := f.enter("CloseSession")
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	s, err := f.session(sh)
	if err != nil {
		return err
	}
	delete(f.sessions, sh)
	f.open--
	f.closedSessions++
	for _, o := range f.sessions {
		if o.slot == s.slot {
			return nil
		}
	}
	f.loggedIn[s.slot] = false // the last session's close logs the application out
	return nil
}

func (f *fake) Login(sh pkcs11.SessionHandle, _ uint, pin string) error {
	err := f.enter("Login")
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	s, err := f.session(sh)
	if err != nil {
		return err
	}
	if f.loggedIn[s.slot] {
		return pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN) // without checking the PIN, like SoftHSM2
	}
	if pin != f.pin {
		return pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)
	}
	f.loggedIn[s.slot] = true
	return nil
}

func attr(temp []*pkcs11.Attribute, typ uint) []byte {
	for _, a := range temp {
		if a.Type == typ {
			return a.Value
		}
	}
	return nil
}

func (f *fake) FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error {
	err := f.enter("FindObjectsInit")
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	s, err := f.session(sh)
	if err != nil {
		return err
	}
	if s.find != nil {
		return pkcs11.Error(pkcs11.CKR_OPERATION_ACTIVE)
	}
	s.find = []pkcs11.ObjectHandle{}
	if !f.loggedIn[s.slot] {
		return nil // private objects are invisible before login
	}
	label := string(attr(temp, pkcs11.CKA_LABEL))
	for h, o := range f.objects {
		if o.slot == s.slot && o.label == label {
			s.find = append(s.find, h)
		}
	}
	return nil
}

func (f *fake) FindObjects(sh pkcs11.SessionHandle, n int) ([]pkcs11.ObjectHandle, bool, error) {
	err := f.enter("FindObjects")
	defer f.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	s, err := f.session(sh)
	if err != nil {
		return nil, false, err
	}
	if s.find == nil {
		return nil, false, pkcs11.Error(pkcs11.CKR_OPERATION_NOT_INITIALIZED)
	}
	n = min(n, len(s.find))
	out := s.find[:n]
	s.find = s.find[n:]
	return out, false, nil
}

func (f *fake) FindObjectsFinal(sh pkcs11.SessionHandle) error {
	err := f.enter("FindObjectsFinal")
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	s, err := f.session(sh)
	if err != nil {
		return err
	}
	s.find = nil
	return nil
}

func (f *fake) GenerateKey(sh pkcs11.SessionHandle, _ []*pkcs11.Mechanism, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	err := f.enter("GenerateKey")
	defer f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	s, err := f.session(sh)
	if err != nil {
		return 0, err
	}
	if !f.loggedIn[s.slot] {
		return 0, pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	f.next++
	h := pkcs11.ObjectHandle(f.next)
	f.objects[h] = &fakeObject{slot: s.slot, label: string(attr(temp, pkcs11.CKA_LABEL)), key: key}
	return h, nil
}

// destroyKeys removes every key labelled label, as another tool might.
func (f *fake) destroyKeys(label string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for h, o := range f.objects {
		if o.label == label {
			delete(f.objects, h)
		}
	}
}

func (f *fake) opInit(method string, sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle, encrypt bool) error {
	err := f.enter(method)
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	s, err := f.session(sh)
	if err != nil {
		return err
	}
	if s.op != nil {
		return pkcs11.Error(pkcs11.CKR_OPERATION_ACTIVE)
	}
	obj, ok := f.objects[o]
	if !ok || obj.slot != s.slot {
		return pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID)
	}
	if len(m) != 1 || m[0].Mechanism != pkcs11.CKM_AES_GCM || len(m[0].Parameter) < envelope.IVSize {
		return pkcs11.Error(pkcs11.CKR_MECHANISM_PARAM_INVALID)
	}
	p := m[0].Parameter
	s.op = &fakeOp{encrypt: encrypt, key: obj.key, iv: p[:envelope.IVSize], aad: p[envelope.IVSize:]}
	return nil
}

func (f *fake) EncryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	return f.opInit("EncryptInit", sh, m, o, true)
}

func (f *fake) DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	return f.opInit("DecryptInit", sh, m, o, false)
}

func (f *fake) crypt(method string, sh pkcs11.SessionHandle, in []byte, encrypt bool) ([]byte, error) {
	err := f.enter(method)
	defer f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s, err := f.session(sh)
	if err != nil {
		return nil, err
	}
	op := s.op
	s.op = nil // any result but "buffer too small" ends the operation
	if op == nil || op.encrypt != encrypt {
		return nil, pkcs11.Error(pkcs11.CKR_OPERATION_NOT_INITIALIZED)
	}
	block, _ := aes.NewCipher(op.key)
	aead, _ := cipher.NewGCM(block)
	if encrypt {
		return aead.Seal(nil, op.iv, in, op.aad), nil
	}
	pt, err := aead.Open(nil, op.iv, in, op.aad)
	if err != nil {
		return nil, pkcs11.Error(pkcs11.CKR_GENERAL_ERROR) // what SoftHSM2 returns for a bad tag
	}
	return pt, nil
}

func (f *fake) Encrypt(sh pkcs11.SessionHandle, in []byte) ([]byte, error) {
	return f.crypt("Encrypt", sh, in, true)
}

func (f *fake) Decrypt(sh pkcs11.SessionHandle, in []byte) ([]byte, error) {
	return f.crypt("Decrypt", sh, in, false)
}

// fakeGCM carries iv||aad in the mechanism's plain byte parameter, which
// the fake can read (a *pkcs11.GCMParams hides them).
type fakeGCM struct{ mech []*pkcs11.Mechanism }

func newFakeGCM(iv, aad []byte) gcmParams {
	p := append(append([]byte{}, iv...), aad...)
	return fakeGCM{mech: []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, p)}}
}

func (g fakeGCM) Mechanism() []*pkcs11.Mechanism { return g.mech }
func (g fakeGCM) IV() []byte                     { return nil }
func (g fakeGCM) Free()                          {}
