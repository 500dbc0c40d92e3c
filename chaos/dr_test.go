package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/internal/testcluster"
)

// drKeys is the number of keys the DR drill loads: KEYD_DR_KEYS, default
// 200 (the figure in docs/BENCHMARKS.md uses 100000).
func drKeys() int {
	if n, err := strconv.Atoi(os.Getenv("KEYD_DR_KEYS")); err == nil && n > 0 && n <= 1_000_000 {
		return n
	}
	return 200
}

// parallel runs fn(i) for i in [0, n) on workers goroutines and returns
// the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// TestDRDrill is the disaster-recovery drill: load N keys and one
// ciphertext per key, save a snapshot, write a few more keys (lost by
// design: the RPO), destroy the cluster and its data directories, build
// a new cluster on new (software) HSMs, restore, unseal with the original
// custodian shares, and decrypt every ciphertext. It reports RTO (destroy
// to serving) and RPO in the test log.
//
//	go test -run TestDRDrill -v ./chaos/                    # N = 200
//	KEYD_DR_KEYS=100000 go test -run TestDRDrill -v -timeout 60m ./chaos/
func TestDRDrill(t *testing.T) {
	n := drKeys()
	const workers = 16
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()

	old := testcluster.New(t, testcluster.Options{Nodes: 3, Regions: []string{"a", "b", "c"}, HSM: testcluster.HSMSoft})
	old.Init(t, 5, 3)
	old.Unseal(t, 3)
	cl := old.Client(t)
	name := func(i int) string { return fmt.Sprintf("dr-%06d", i) }
	plain := func(i int) string { return fmt.Sprintf("record %d of the drill", i) }
	cts := make([]string, n)
	loadStart := time.Now()
	err := parallel(n, workers, func(i int) error {
		if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: name(i)}); err != nil && !errors.Is(err, api.ErrExists) {
			return fmt.Errorf("create %s: %w", name(i), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("DR drill: %d keys created in %s", n, time.Since(loadStart).Round(time.Millisecond))
	// Every node has every key before the ciphertexts are made (a
	// retried create answered key_exists carries no index to wait for).
	old.WaitApplied(t, old.Node(old.WaitLeader(t)).AppliedIndex())
	err = parallel(n, workers, func(i int) error {
		res, err := cl.Encrypt(ctx, name(i), []byte(plain(i)), nil)
		if err != nil {
			return fmt.Errorf("encrypt %s: %w", name(i), err)
		}
		cts[i] = res.Ciphertext
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	load := time.Since(loadStart)

	saveStart := time.Now()
	var snap bytes.Buffer
	if err := cl.SnapshotSave(ctx, &snap); err != nil {
		t.Fatal(err)
	}
	save := time.Since(saveStart)
	file := filepath.Join(t.TempDir(), "dr.snap")
	if err := os.WriteFile(file, snap.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	// Writes after the snapshot: lost by design.
	var lost []string
	for i := 0; i < 3; i++ {
		nm := fmt.Sprintf("after-snapshot-%d", i)
		if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: nm}); err != nil {
			t.Fatal(err)
		}
		lost = append(lost, nm)
	}
	shares, token := old.Shares, old.Token

	// Disaster: every node and every data directory (Raft log, state,
	// HSM-wrapped node shares, the soft HSMs themselves) is gone.
	destroyStart := time.Now()
	old.Close()
	for i := 0; i < old.Size(); i++ {
		if err := os.RemoveAll(old.Slot(i).Dir); err != nil {
			t.Fatal(err)
		}
	}
	// The RTO clock starts once the old cluster is gone (stopping it
	// gracefully in process is not part of a real disaster).
	destroyed := time.Now()
	destroy := destroyed.Sub(destroyStart)

	fresh := testcluster.New(t, testcluster.Options{Nodes: 3, Regions: []string{"a", "b", "c"}, HSM: testcluster.HSMSoft})
	fresh.WaitLeader(t)
	built := time.Since(destroyed)
	anon, err := client.New(ctx, client.Config{Addrs: fresh.Addrs(), TLS: fresh.TLS(), Timeout: 30 * time.Second, MaxRetries: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	restoreStart := time.Now()
	res, err := anon.SnapshotRestore(ctx, data, false)
	if err != nil {
		t.Fatal(err)
	}
	restore := time.Since(restoreStart)
	if res.Counts.Keys != n {
		t.Fatalf("restored %d keys, want %d", res.Counts.Keys, n)
	}
	unsealStart := time.Now()
	fresh.Shares, fresh.Token = shares, token
	fresh.Unseal(t, 3)
	ncl := fresh.Client(t)
	fresh.Eventually(t, 60*time.Second, func() error {
		got, err := ncl.Decrypt(ctx, name(0), cts[0], nil)
		if err != nil {
			return err
		}
		if string(got.Plaintext) != plain(0) {
			return errors.New("wrong plaintext")
		}
		return nil
	})
	unseal := time.Since(unsealStart)
	rto := time.Since(destroyed)

	verifyStart := time.Now()
	err = parallel(n, workers, func(i int) error {
		got, err := ncl.Decrypt(ctx, name(i), cts[i], nil)
		if err != nil {
			return fmt.Errorf("decrypt %s after restore: %w", name(i), err)
		}
		if string(got.Plaintext) != plain(i) {
			return fmt.Errorf("decrypt %s after restore: wrong plaintext", name(i))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	verify := time.Since(verifyStart)
	var stillLost []string
	for _, nm := range lost {
		if _, err := ncl.ReadKey(ctx, nm, true); err == nil {
			t.Fatalf("%s, written after the snapshot, exists after the restore", nm)
		} else if !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("read %s: %v", nm, err)
		}
		stillLost = append(stillLost, nm)
	}
	t.Logf("DR drill: %d keys and %d ciphertexts loaded in %s; snapshot %d bytes saved in %s", n, n, load.Round(time.Millisecond), snap.Len(), save.Round(time.Millisecond))
	t.Logf("DR drill: RTO (destroy -> serving) %s = new cluster %s + restore %s + unseal and first decrypt %s", rto.Round(time.Millisecond), built.Round(time.Millisecond), restore.Round(time.Millisecond), unseal.Round(time.Millisecond))
	t.Logf("DR drill: all %d ciphertexts decrypted in %s (stopping the old cluster took %s, not counted)", n, verify.Round(time.Millisecond), destroy.Round(time.Millisecond))
	t.Logf("DR drill: RPO: %d writes after the snapshot lost by design: %v", len(stillLost), stillLost)
}
