package node

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/keyring"
)

// bboltKeystore returns a keystore over a real FSM (bbolt) holding n
// AES keys named k0..k(n-1), with a cache of cacheSize keys.
func bboltKeystore(b *testing.B, n, cacheSize int) *keystore {
	b.Helper()
	f, err := fsm.Open(filepath.Join(b.TempDir(), "state.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	s, _, recs := newTestStore(b, keyring.AES256GCM, cacheSize)
	s.src = f
	logs := make([]*raft.Log, 0, 1000)
	flush := func() {
		for _, r := range f.ApplyBatch(logs) {
			if res := r.(*fsm.Result); res.Err != nil {
				b.Fatal(res.Err)
			}
		}
		logs = logs[:0]
	}
	initCmd, err := fsm.Encode(&fsm.Init{Meta: fsm.Meta{At: time.Now().UTC()}, Custodians: 1, Threshold: 1,
		Commitments: []byte{1}, WrappedBarrier: []byte{1}, AdminTokenHash: []byte{1}})
	if err != nil {
		b.Fatal(err)
	}
	logs = append(logs, &raft.Log{Index: 1, Type: raft.LogCommand, Data: initCmd})
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("k%d", i)
		rec := recs.rec(name, 1, fsm.StateEnabled)
		data, err := fsm.Encode(&fsm.CreateKey{Meta: fsm.Meta{At: time.Now().UTC()}, Name: name, Type: rec.Type, First: rec.Versions[0]})
		if err != nil {
			b.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(i + 2), Type: raft.LogCommand, Data: data})
		if len(logs) == cap(logs) {
			flush()
		}
	}
	flush()
	return s
}

// BenchmarkKeystoreGet measures acquiring a key for a crypto call over a
// bbolt state of 100,000 keys: a hit (one key), and a miss (a random key,
// cache of 16: one bbolt read, one record decode, one unwrap, one
// eviction each time).
func BenchmarkKeystoreGet(b *testing.B) {
	const keys = 100000
	s := bboltKeystore(b, keys, 16)
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			lk, err := s.get("k1")
			if err != nil {
				b.Fatal(err)
			}
			lk.release()
		}
	})
	b.Run("miss", func(b *testing.B) {
		r := rand.New(rand.NewPCG(1, 2))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			lk, err := s.get(fmt.Sprintf("k%d", r.IntN(keys)))
			if err != nil {
				b.Fatal(err)
			}
			lk.release()
		}
	})
}
