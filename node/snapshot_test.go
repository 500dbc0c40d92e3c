package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/internal/testcluster"
	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/shamir"
)

func wantCode(t *testing.T, what string, err error, code api.Code) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("%s: err %v, want %s", what, err, code)
	}
}

// anonClient is a client without a token, as on a fresh cluster.
func anonClient(t *testing.T, c *testcluster.Cluster) *client.Client {
	t.Helper()
	cl, err := client.New(context.Background(), client.Config{Addrs: c.Addrs(), TLS: c.TLS(), Timeout: 5 * time.Second, MaxRetries: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func dumpAll(t *testing.T, c *testcluster.Cluster) []string {
	t.Helper()
	var out []string
	for i := 0; i < c.Size(); i++ {
		var b bytes.Buffer
		if err := c.Node(i).DumpState(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b.String())
	}
	return out
}

// fixDigest recomputes the unkeyed digest after an edit, as an attacker
// would.
func fixDigest(file []byte) {
	end := len(file) - fsm.BackupMACSize - sha256.Size
	sum := sha256.Sum256(file[:end])
	copy(file[end:], sum[:])
}

// TestSnapshotRestoreIntoNewCluster saves a snapshot of a working
// cluster, refuses damaged files on a brand-new cluster (new nodes, new
// HSMs) without changing it, restores the real one, refuses shares of
// another cluster, unseals with the original custodians' shares, and
// checks every key, version, policy and token is back.
func TestSnapshotRestoreIntoNewCluster(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	old := testcluster.New(t, testcluster.Options{Nodes: 3, HSM: testcluster.HSMSoft})
	old.Init(t, 5, 3)
	old.Unseal(t, 3)
	waitDealt(t, old)
	cl := old.Client(t)
	cts := map[string]string{}
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("k%d", i)
		if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := cl.RotateKey(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
		res, err := cl.Encrypt(ctx, name, []byte("secret of "+name), nil)
		if err != nil {
			t.Fatal(err)
		}
		cts[name] = res.Ciphertext
	}
	if _, err := cl.PutPolicy(ctx, "app", []byte(`{"name":"app","rules":[{"effect":"allow","capabilities":["encrypt","decrypt"],"keys":["k*"]}]}`)); err != nil {
		t.Fatal(err)
	}
	tok, err := cl.CreateToken(ctx, api.CreateTokenRequest{Name: "app", Policies: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	old.WaitApplied(t, tok.Index) // the new client may reach any node

	// A token without the snapshot capability cannot save.
	appOld, err := client.New(ctx, client.Config{Addrs: old.Addrs(), Token: tok.Token, TLS: old.TLS(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer appOld.Close()
	wantCode(t, "save without the snapshot capability", appOld.SnapshotSave(ctx, &bytes.Buffer{}), api.CodeForbidden)

	var file bytes.Buffer
	if err := cl.SnapshotSave(ctx, &file); err != nil {
		t.Fatal(err)
	}
	// A write after the snapshot is lost by design (the RPO).
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "late"}); err != nil {
		t.Fatal(err)
	}
	oldShares, oldToken := old.Shares, old.Token
	old.Close()

	fresh := testcluster.New(t, testcluster.Options{Nodes: 3, HSM: testcluster.HSMSoft})
	fresh.WaitLeader(t)
	// The leader pins its members' delivery keys as they join: let that
	// settle before comparing the state.
	waitPinned(t, fresh)
	anon := anonClient(t, fresh)
	before := dumpAll(t, fresh)
	data := file.Bytes()
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x01
	foreignMagic := bytes.Clone(data)
	copy(foreignMagic, "NOTKEYD!")
	for name, bad := range map[string][]byte{
		"corrupt":   flipped,
		"truncated": data[:len(data)-40],
		"not keyd":  foreignMagic,
		"empty":     {},
	} {
		_, err := anon.SnapshotRestore(ctx, bad, false)
		wantCode(t, name, err, api.CodeBadRequest)
		if !strings.Contains(err.Error(), "snapshot refused") {
			t.Fatalf("%s: unclear error %v", name, err)
		}
	}
	if after := dumpAll(t, fresh); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("a refused snapshot changed the state")
	}
	for i := 0; i < fresh.Size(); i++ {
		if fresh.Node(i).Initialized() {
			t.Fatal("a refused snapshot initialised the cluster")
		}
	}

	res, err := anon.SnapshotRestore(ctx, data, false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Sealed || res.Counts.Keys != 4 || res.Counts.Versions != 5 || res.Counts.Policies < 1 || res.Counts.Tokens != 2 {
		t.Fatalf("restore reply %+v", res)
	}
	// Every replica receives the restored state (followers through a
	// Raft snapshot) and stays sealed.
	fresh.Eventually(t, 20*time.Second, func() error {
		for i := 0; i < fresh.Size(); i++ {
			n := fresh.Node(i)
			if !n.Initialized() || !n.Sealed() {
				return fmt.Errorf("%s after restore: initialised %v sealed %v", n.ID(), n.Initialized(), n.Sealed())
			}
		}
		return nil
	})
	fresh.EnsureSameState(t)
	// Restoring again needs force, and force needs a token.
	_, err = anon.SnapshotRestore(ctx, data, false)
	wantCode(t, "restore over an initialised cluster", err, api.CodeAlreadyInitialized)
	_, err = anon.SnapshotRestore(ctx, data, true)
	wantCode(t, "forced restore without a token", err, api.CodeUnauthorized)

	// Shares of another cluster do not verify against the snapshot's
	// commitments.
	other, err := shamir.NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherShares, _, err := shamir.Split(other, 3, 5, rand.Reader)
	other.Destroy()
	if err != nil {
		t.Fatal(err)
	}
	_, err = anon.UnsealAt(ctx, fresh.Addrs()[0], shamir.EncodeShare(otherShares[0]))
	wantCode(t, "foreign share", err, api.CodeInvalidShare)

	fresh.Shares, fresh.Token = oldShares, oldToken
	fresh.Unseal(t, 3)
	waitDealt(t, fresh) // node shares dealt to the new HSMs
	ncl := fresh.Client(t)
	for name, ct := range cts {
		got, err := ncl.Decrypt(ctx, name, ct, nil)
		if err != nil || string(got.Plaintext) != "secret of "+name {
			t.Fatalf("decrypt %s after restore: %v", name, err)
		}
	}
	app, err := client.New(ctx, client.Config{Addrs: fresh.Addrs(), Token: tok.Token, TLS: fresh.TLS(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if got, err := app.Decrypt(ctx, "k1", cts["k1"], nil); err != nil || string(got.Plaintext) != "secret of k1" {
		t.Fatalf("restored app token: %v", err)
	}
	if _, err := app.Decrypt(ctx, "late", cts["k1"], nil); err == nil {
		t.Fatal("the restored policy no longer limits the app token")
	}
	if _, err := ncl.ReadKey(ctx, "late", true); err == nil {
		t.Fatal("a key created after the snapshot exists after the restore")
	}
	if info, err := ncl.ReadKey(ctx, "k0", true); err != nil || info.LatestVersion != 2 {
		t.Fatalf("k0 after restore: %+v %v", info, err)
	}
	// The restored state is durable: a restarted node comes back with it
	// and rejoins from the node shares dealt to the new HSMs.
	victim := (fresh.WaitLeader(t) + 1) % fresh.Size()
	fresh.Stop(t, victim)
	fresh.Restart(t, victim)
	waitUnsealedBy(t, fresh, victim, node.UnsealedByWarmRejoin)
	vcl := fresh.ClientFor(t, fresh.Slot(victim).APIAddr)
	if got, err := vcl.Decrypt(ctx, "k2", cts["k2"], nil); err != nil || string(got.Plaintext) != "secret of k2" {
		t.Fatalf("decrypt on a restarted node after restore: %v", err)
	}
}

// TestSnapshotTamperedRefusedAtUnseal: a file altered with a recomputed
// digest passes every check that needs no secret, but its MAC fails with
// the root once custodians unseal: every node stays sealed and says why.
// A forced restore of the genuine file over the live cluster then works.
func TestSnapshotTamperedRefusedAtUnseal(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	cl := c.Client(t)
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	ct, err := cl.Encrypt(ctx, "a", []byte("pt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	if err := cl.SnapshotSave(ctx, &file); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "late"}); err != nil {
		t.Fatal(err)
	}

	// Without force the live cluster is left alone.
	_, err = cl.SnapshotRestore(ctx, file.Bytes(), false)
	wantCode(t, "restore without force", err, api.CodeAlreadyInitialized)
	if _, err := cl.ReadKey(ctx, "late", true); err != nil {
		t.Fatalf("refused restore changed the state: %v", err)
	}

	tampered := bytes.Clone(file.Bytes())
	i := bytes.Index(tampered, []byte(`"node":"n`))
	if i < 0 {
		t.Fatal("no node name in the header")
	}
	tampered[i+len(`"node":"n`)] = 'X'
	fixDigest(tampered)
	if _, err := cl.SnapshotRestore(ctx, tampered, true); err != nil {
		t.Fatalf("tampered file with a fresh digest: %v", err)
	}
	c.Eventually(t, 15*time.Second, func() error {
		for i := 0; i < c.Size(); i++ {
			if !c.Node(i).Sealed() {
				return fmt.Errorf("%s still unsealed after a forced restore", c.Node(i).ID())
			}
		}
		return nil
	})
	anon := anonClient(t, c)
	var lastErr error
	for _, sh := range c.Shares[:2] {
		_, lastErr = anon.UnsealAt(ctx, c.Addrs()[0], sh)
	}
	wantCode(t, "unseal of a tampered restore", lastErr, api.CodeForbidden)
	c.Eventually(t, 15*time.Second, func() error {
		for i := 0; i < c.Size(); i++ {
			st := c.Node(i).Status()
			if !st.Sealed {
				return fmt.Errorf("%s unsealed a tampered snapshot", st.NodeID)
			}
			if !strings.Contains(st.SealReason, "MAC") {
				return fmt.Errorf("%s: seal reason %q", st.NodeID, st.SealReason)
			}
		}
		return nil
	})

	// Nor can the custodians rotate the root of the tampered state (which
	// would end the MAC check with the old root).
	// A rotation needs an unsealed leader, so the start itself is refused;
	// seal.Custodians also checks the MAC before re-rooting.
	_, lastErr = anon.StartRootRotationWith(ctx, api.RotateRootStart{Custodians: 3, Threshold: 2, PlaintextShares: true, Share: c.Shares[0]})
	wantCode(t, "root rotation of a tampered restore", lastErr, api.CodeSealed)

	// The genuine file restores (forced; the admin token of the
	// restored state is the same) and unseals.
	if _, err := cl.SnapshotRestore(ctx, file.Bytes(), true); err != nil {
		t.Fatal(err)
	}
	c.Unseal(t, 2)
	ncl := c.Client(t)
	if got, err := ncl.Decrypt(ctx, "a", ct.Ciphertext, nil); err != nil || string(got.Plaintext) != "pt" {
		t.Fatalf("decrypt after forced restore: %v", err)
	}
	// A client that saw the live cluster's later index still reads: the
	// restored state counts as applied at the restore's index, which is
	// above anything the cluster acknowledged before.
	before := cl.LastIndex()
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	if got, err := cl.Decrypt(rctx, "a", ct.Ciphertext, nil); err != nil || string(got.Plaintext) != "pt" {
		t.Fatalf("decrypt by a client that saw index %d before the restore: %v", before, err)
	}
	if _, err := ncl.ReadKey(ctx, "late", true); err == nil {
		t.Fatal("key created after the snapshot survived the forced restore")
	}
}

// TestScheduledSnapshots: with a short interval only the unsealed leader
// writes, every file is complete (verifies), 0600, and the count stays
// within the retention.
func TestScheduledSnapshots(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dirs := make([]string, 3)
	for i := range dirs {
		dirs[i] = filepath.Join(base, fmt.Sprint(i))
	}
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Configure: func(i int, cfg *node.Config) {
		cfg.SnapshotInterval = 100 * time.Millisecond
		cfg.SnapshotDir = dirs[i]
		cfg.SnapshotRetain = 3
	}})
	c.Init(t, 3, 2)
	c.Unseal(t, 2)
	leader := c.WaitLeader(t)
	list := func(dir string) []string {
		m, _ := filepath.Glob(filepath.Join(dir, "keyd-snapshot-*.snap"))
		return m
	}
	var first string
	c.Eventually(t, 20*time.Second, func() error {
		got := list(dirs[leader])
		if len(got) == 0 {
			return errors.New("no scheduled snapshot yet")
		}
		if first == "" {
			first = got[0]
		}
		if len(got) > 3 {
			return fmt.Errorf("%d snapshots kept, retention is 3", len(got))
		}
		if slices.Contains(got, first) {
			return fmt.Errorf("the first snapshot %s is not pruned yet", filepath.Base(first))
		}
		return nil
	})
	if n := len(list(dirs[leader])); n > 3 {
		t.Fatalf("%d snapshots kept, retention is 3", n)
	}
	for i, d := range dirs {
		if i != leader && len(list(d)) != 0 && c.WaitLeader(t) == leader {
			t.Fatalf("follower %d wrote scheduled snapshots", i)
		}
	}
	files := list(dirs[leader])
	last := files[len(files)-1]
	fi, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	f, err := os.Open(last)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := fsm.VerifyBackup(f, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatalf("scheduled snapshot does not verify: %v", err)
	}
	if b.Header.Counts.Tokens != 1 {
		t.Fatalf("header %+v", b.Header)
	}
}
