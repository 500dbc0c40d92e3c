package drill

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/keyd/keyd/api"
)

// runChecks checks the history against the healed cluster.
func (r *runner) runChecks(ctx context.Context) {
	ops := r.hist.snapshot()
	r.checkCiphertexts(ctx, ops)
	r.checkWrites(ctx, ops)
	ok, detail := r.samples.verdict()
	r.addCheck("one-leader-per-term", ok, detail)
	verdict, n := checkLinearizable(ops, r.cfg.PorcupineTimeout)
	r.mu.Lock()
	r.porcupine = verdict
	r.mu.Unlock()
	r.addCheck("linearizable", verdict == "ok", fmt.Sprintf("porcupine: %s over %d metadata operations", verdict, n))
}

// checkCiphertexts decrypts every acknowledged ciphertext and data key, in
// batches per key, and compares the plaintexts.
func (r *runner) checkCiphertexts(ctx context.Context, ops []Op) {
	byKey := map[string][]Op{}
	total := 0
	for _, op := range ops {
		if op.Status == statusOK && (op.Kind == kindEncrypt || op.Kind == kindDataKey) && op.Ciphertext != "" {
			byKey[op.Key] = append(byKey[op.Key], op)
			total++
		}
	}
	if total == 0 {
		r.addCheck("ciphertexts-decrypt", false, "no ciphertext was acknowledged: the workload did not run")
		return
	}
	var bad []string
	const batch = 100
	for key, list := range byKey {
		for i := 0; i < len(list); i += batch {
			chunk := list[i:min(i+batch, len(list))]
			items := make([]api.DecryptRequest, len(chunk))
			for j, op := range chunk {
				items[j] = api.DecryptRequest{Ciphertext: op.Ciphertext}
			}
			var res []api.BatchDecryptItem
			err := r.retry(ctx, func(cctx context.Context) error {
				var err error
				res, err = r.wl.BatchDecrypt(cctx, key, items)
				return err
			})
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: batch decrypt: %v", key, err))
				continue
			}
			for j, it := range res {
				if it.Error != nil || string(it.Plaintext) != string(chunk[j].Plaintext) {
					bad = append(bad, fmt.Sprintf("%s: %s acknowledged at +%dms does not decrypt to its plaintext", key, chunk[j].Kind, chunk[j].Return.Milliseconds()))
				}
			}
		}
	}
	if len(bad) > 0 {
		r.addCheck("ciphertexts-decrypt", false, summarize(bad))
		return
	}
	r.addCheck("ciphertexts-decrypt", true, fmt.Sprintf("%d acknowledged ciphertexts and data keys decrypt", total))
}

// checkWrites checks that no acknowledged write was lost and none was
// applied twice.
func (r *runner) checkWrites(ctx context.Context, ops []Op) {
	type keyWrites struct {
		created           bool // acknowledged create, or exists
		rotOK, rotUnknown int
		ackedVersions     map[uint32]int
	}
	keys := map[string]*keyWrites{}
	get := func(k string) *keyWrites {
		if keys[k] == nil {
			keys[k] = &keyWrites{ackedVersions: map[uint32]int{}}
		}
		return keys[k]
	}
	for _, op := range ops {
		switch op.Kind {
		case kindCreate:
			w := get(op.Key)
			// An "exists" reply is a retried setup create.
			if op.Status == statusOK || op.Out == outExists {
				w.created = true
			}
		case kindRotate:
			w := get(op.Key)
			switch op.Status {
			case statusOK:
				w.rotOK++
				w.ackedVersions[op.Version]++
			case statusUnknown:
				w.rotUnknown++
			}
		}
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	var lost, twice []string
	created, rotated := 0, 0
	for _, name := range names {
		w := keys[name]
		if !w.created && w.rotOK == 0 {
			continue // never acknowledged: may or may not exist
		}
		var info *api.KeyInfo
		err := r.retry(ctx, func(cctx context.Context) error {
			var err error
			info, err = r.wl.ReadKey(cctx, name, true)
			return err
		})
		if err != nil {
			lost = append(lost, fmt.Sprintf("%s: acknowledged but unreadable: %v", name, err))
			continue
		}
		if w.created {
			created++
		}
		rotated += w.rotOK
		have := map[uint32]bool{}
		for _, v := range info.Versions {
			have[v.Version] = true
		}
		for v, n := range w.ackedVersions {
			if n > 1 {
				twice = append(twice, fmt.Sprintf("%s: %d acknowledged rotations replied version %d", name, n, v))
			}
			if v > info.LatestVersion || (len(info.Versions) > 0 && !have[v]) {
				lost = append(lost, fmt.Sprintf("%s: acknowledged version %d missing (latest %d)", name, v, info.LatestVersion))
			}
		}
		lo, hi := uint32(1+w.rotOK), uint32(1+w.rotOK+w.rotUnknown)
		if info.LatestVersion < lo {
			lost = append(lost, fmt.Sprintf("%s: at version %d after %d acknowledged rotations", name, info.LatestVersion, w.rotOK))
		}
		if info.LatestVersion > hi {
			twice = append(twice, fmt.Sprintf("%s: at version %d, more than 1 + %d acknowledged + %d unknown rotations", name, info.LatestVersion, w.rotOK, w.rotUnknown))
		}
	}
	if len(lost) > 0 {
		r.addCheck("no-acked-write-lost", false, summarize(lost))
	} else {
		r.addCheck("no-acked-write-lost", true, fmt.Sprintf("%d acknowledged creates and %d acknowledged rotations present", created, rotated))
	}
	if len(twice) > 0 {
		r.addCheck("none-applied-twice", false, summarize(twice))
	} else {
		r.addCheck("none-applied-twice", true, "every key's version count within acknowledged + unknown rotations")
	}
}

// retry runs fn with the call timeout until it succeeds or the settle
// timeout passes; a definite api error (not found, ...) stops at once.
func (r *runner) retry(ctx context.Context, fn func(context.Context) error) error {
	e := &Env{Cluster: r.cl, Config: r.cfg, run: r}
	var last error
	err := e.poll(ctx, func() error {
		cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
		defer cancel()
		last = fn(cctx)
		var ae *api.Error
		if last != nil && errors.As(last, &ae) && (errors.Is(last, api.ErrNotFound) || errors.Is(last, api.ErrForbidden) || errors.Is(last, api.ErrBadRequest)) {
			return nil
		}
		return last
	})
	if last != nil {
		return last
	}
	return err
}

func summarize(s []string) string {
	if len(s) > 5 {
		return fmt.Sprintf("%s (and %d more)", strings.Join(s[:5], "; "), len(s)-5)
	}
	return strings.Join(s, "; ")
}
