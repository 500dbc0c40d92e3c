package drill

import (
	"context"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyd/keyd/api"
)

// Operation kinds.
const (
	kindCreate  = "create"
	kindRotate  = "rotate"
	kindRead    = "read"
	kindEncrypt = "encrypt"
	kindDecrypt = "decrypt"
	kindDataKey = "datakey"
)

// Outcomes.
const (
	statusOK      = "ok"      // acknowledged
	statusFailed  = "failed"  // a definite refusal: not applied
	statusUnknown = "unknown" // may or may not have been applied
)

// Outputs of a metadata operation, as the model sees them.
const (
	outOK       = "ok"
	outExists   = "exists"
	outNotFound = "not_found"
)

// Op is one recorded operation. Call and Return are offsets from the
// drill's start; Return is math.MaxInt64 for an unknown outcome.
type Op struct {
	Worker int
	Kind   string
	Key    string
	Call   time.Duration
	Return time.Duration
	Status string
	// Out is the model's output for metadata ops: outOK, outExists,
	// outNotFound.
	Out string
	// Version is the key version in the reply (create, rotate, read: the
	// latest version; crypto: the version used).
	Version uint32
	Err     string

	// Crypto payloads of acknowledged calls, checked after the drill.
	Plaintext  []byte
	Ciphertext string
}

type history struct {
	mu  sync.Mutex
	ops []*Op
}

func (h *history) begin(worker int, kind, key string, now time.Duration) *Op {
	op := &Op{Worker: worker, Kind: kind, Key: key, Call: now}
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
	return op
}

// snapshot returns copies of the recorded operations.
func (h *history) snapshot() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Op, len(h.ops))
	for i, op := range h.ops {
		out[i] = *op
	}
	return out
}

// finishWrite records a create or rotate reply.
func (r *runner) finishWrite(op *Op, k *api.KeyInfo, err error) {
	now := r.since()
	r.hist.mu.Lock()
	defer r.hist.mu.Unlock()
	switch {
	case err == nil:
		op.Return, op.Status, op.Out, op.Version = now, statusOK, outOK, k.LatestVersion
	case errors.Is(err, api.ErrExists):
		op.Return, op.Status, op.Out = now, statusFailed, outExists
	case errors.Is(err, api.ErrNotFound):
		op.Return, op.Status, op.Out = now, statusFailed, outNotFound
	default:
		op.Return, op.Status, op.Err = math.MaxInt64, statusUnknown, err.Error()
	}
}

// finish records a read or crypto reply; failures of these change
// nothing, so they are "failed", never "unknown".
func (r *runner) finish(op *Op, version uint32, err error) {
	now := r.since()
	r.hist.mu.Lock()
	defer r.hist.mu.Unlock()
	op.Return = now
	switch {
	case err == nil:
		op.Status, op.Out, op.Version = statusOK, outOK, version
	case errors.Is(err, api.ErrNotFound):
		op.Status, op.Out = statusFailed, outNotFound
	default:
		op.Status, op.Err = statusFailed, err.Error()
	}
}

// budget hands out at most n operations.
type budget struct{ left atomic.Int64 }

func newBudget(n int) *budget {
	b := &budget{}
	b.left.Store(int64(n))
	return b
}

func (b *budget) take() bool { return b.left.Add(-1) >= 0 }

// worker runs operations until ctx ends or the budget is spent. Crypto
// workers (even w) encrypt 50%, decrypt 33% (their own acknowledged
// ciphertexts) and generate data keys 17%; metadata workers (odd w)
// rotate 40%, read 40% and create 20%. Separate roles keep a write
// stalled by an election from hiding crypto availability, and the other
// way round.
//
// Calls run under ctx (not load, whose end only stops new calls), so the
// end of the load does not turn calls in flight into failures.
func (r *runner) worker(ctx, load context.Context, w int, b *budget) {
	var mine []*Op // this worker's acknowledged encrypts, for decrypts
	for i := 0; load.Err() == nil && b.take(); i++ {
		key := r.shared[i%len(r.shared)]
		roll := mrand.IntN(60)
		if w%2 == 1 {
			roll = 60 + mrand.IntN(40)
		}
		if roll >= 30 && roll < 50 && len(mine) == 0 {
			roll = 0 // nothing to decrypt yet: encrypt
		}
		cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
		switch {
		case roll < 30:
			op := r.hist.begin(w, kindEncrypt, key, r.since())
			pt := []byte(fmt.Sprintf("w%d-%d-%s", w, i, randHex(6)))
			res, err := r.wl.Encrypt(cctx, key, pt, nil)
			var v uint32
			if err == nil {
				v = res.Version
				op.Plaintext, op.Ciphertext = pt, res.Ciphertext
			}
			r.finish(op, v, err)
			if err == nil {
				mine = append(mine, op)
			}
		case roll < 50:
			src := mine[mrand.IntN(len(mine))]
			op := r.hist.begin(w, kindDecrypt, src.Key, r.since())
			res, err := r.wl.Decrypt(cctx, src.Key, src.Ciphertext, nil)
			var v uint32
			if err == nil {
				v = res.Version
				if string(res.Plaintext) != string(src.Plaintext) {
					err = errWrongPlaintext
				}
			}
			r.finish(op, v, err)
			if errors.Is(err, errWrongPlaintext) {
				r.addCheck("decrypt-during-load", false, fmt.Sprintf("worker %d: a decrypt returned another plaintext", w))
			}
		case roll < 60:
			op := r.hist.begin(w, kindDataKey, key, r.since())
			res, err := r.wl.GenerateDataKey(cctx, key, api.DataKeyRequest{})
			var v uint32
			if err == nil {
				v = res.Version
				op.Plaintext, op.Ciphertext = res.Plaintext, res.Ciphertext
			}
			r.finish(op, v, err)
		case roll < 76:
			op := r.hist.begin(w, kindRotate, key, r.since())
			k, err := r.wl.RotateKey(cctx, key)
			r.finishWrite(op, k, err)
		case roll < 92:
			op := r.hist.begin(w, kindRead, key, r.since())
			k, err := r.wl.ReadKey(cctx, key, true)
			var v uint32
			if err == nil {
				v = k.LatestVersion
			}
			r.finish(op, v, err)
		default:
			name := fmt.Sprintf("drill-%s-w%d-%d", r.runID, w, i)
			op := r.hist.begin(w, kindCreate, name, r.since())
			k, err := r.wl.CreateKey(cctx, api.CreateKeyRequest{Name: name})
			r.finishWrite(op, k, err)
		}
		cancel()
		t := time.NewTimer(r.cfg.Pace)
		select {
		case <-load.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

var errWrongPlaintext = errors.New("drill: decrypt returned a different plaintext")
