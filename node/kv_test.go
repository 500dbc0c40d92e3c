package node_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
	"github.com/keyd/keyd/internal/testcluster"
)

func clientWithToken(t *testing.T, c *testcluster.Cluster, token string) *client.Client {
	t.Helper()
	cl, err := client.New(context.Background(), client.Config{Addrs: c.Addrs(), Token: token, TLS: c.TLS(), Timeout: 5 * time.Second, MaxRetries: 10, ConnectTimeout: testcluster.Scaled(client.DefaultConnectTimeout)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func u32(v uint32) *uint32 { return &v }

// TestKVAndTokenizationEndToEnd drives versioned secrets and
// tokenization through the client against three nodes: check-and-set,
// versions, soft delete, destroy, policies on paths (an app token as the
// attacker), tokenize without detokenize, and finally a scan of every
// file of every node for the plaintexts.
func TestKVAndTokenizationEndToEnd(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Scaled(60*time.Second))
	defer cancel()
	admin := c.Client(t)
	const secret1, secret2, card = "PLAINTEXT-PASSWORD-ONE-7c1f", "PLAINTEXT-PASSWORD-TWO-9d2e", "PLAINTEXT-CARD-4111111111111111"

	// Check-and-set: create-only, then a stale cas; nothing changes.
	w1, err := admin.KVPut(ctx, "app1/db", map[string]string{"user": "svc", "password": secret1}, u32(0))
	if err != nil || w1.Version != 1 {
		t.Fatalf("create: %+v %v", w1, err)
	}
	if _, err := admin.KVPut(ctx, "app1/db", map[string]string{"password": "x"}, u32(0)); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("create-only over an existing secret: %v, want conflict", err)
	}
	if _, err := admin.KVPut(ctx, "app1/db", map[string]string{"password": "x"}, u32(7)); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("stale cas: %v, want conflict", err)
	}
	if m, err := admin.KVMetadata(ctx, "app1/db"); err != nil || m.CurrentVersion != 1 || len(m.Versions) != 1 {
		t.Fatalf("after refused writes: %+v %v", m, err)
	}
	w2, err := admin.KVPut(ctx, "app1/db", map[string]string{"user": "svc", "password": secret2}, u32(1))
	if err != nil {
		t.Fatal(err)
	}
	got, err := admin.KVGet(ctx, "app1/db", 0)
	if err != nil || got.Version != 2 || got.Data["password"] != secret2 {
		t.Fatalf("latest: %+v %v", got, err)
	}
	if got, err := admin.KVGet(ctx, "app1/db", 1); err != nil || got.Data["password"] != secret1 {
		t.Fatalf("version 1: %+v %v", got, err)
	}
	// Every node serves the read from its own state.
	c.WaitApplied(t, w2.Index)
	for i := range c.Size() {
		cl := c.ClientFor(t, c.Slot(i).APIAddr)
		if got, err := cl.KVGet(ctx, "app1/db", 2); err != nil || got.Data["user"] != "svc" {
			t.Fatalf("node %d: %+v %v", i, got, err)
		}
	}

	// Soft delete and undelete.
	if _, err := admin.KVDelete(ctx, "app1/db"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.KVGet(ctx, "app1/db", 0); !errors.Is(err, api.ErrResourceNotFound) {
		t.Fatalf("deleted latest: %v", err)
	}
	if _, err := admin.KVUndelete(ctx, "app1/db", 2); err != nil {
		t.Fatal(err)
	}
	if got, err := admin.KVGet(ctx, "app1/db", 0); err != nil || got.Version != 2 {
		t.Fatalf("after undelete: %+v %v", got, err)
	}
	// Destroy version 1: gone for good, undelete does not bring it back.
	if _, err := admin.KVDestroy(ctx, "app1/db", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.KVUndelete(ctx, "app1/db", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.KVGet(ctx, "app1/db", 1); !errors.Is(err, api.ErrResourceNotFound) {
		t.Fatalf("destroyed version: %v", err)
	}
	if _, err := admin.KVGet(ctx, "app1/db", 9); !errors.Is(err, api.ErrResourceNotFound) {
		t.Fatalf("missing version: %v", err)
	}
	if _, err := admin.KVPut(ctx, "app1/../x", map[string]string{"a": "b"}, nil); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("bad path: %v", err)
	}
	if _, err := admin.KVPut(ctx, "app1/empty", map[string]string{}, nil); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("empty value: %v", err)
	}
	if _, err := admin.KVPut(ctx, "app1/big", map[string]string{"a": string(bytes.Repeat([]byte("x"), api.MaxKVValueBytes))}, nil); !errors.Is(err, api.ErrTooLarge) {
		t.Fatalf("oversized value: %v", err)
	}
	if _, err := admin.KVPut(ctx, "app2/x", map[string]string{"k": "other-app"}, nil); err != nil {
		t.Fatal(err)
	}

	// An app token with kv/app1/* reads app1's secrets only, sees only
	// them in a list, and cannot destroy (no kv-destroy).
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}}
	t.Cleanup(hc.CloseIdleConnections)
	r := &raw{t: t, c: c, hc: hc}
	policies := map[string]string{
		"app1kv":      `{"rules":[{"effect":"allow","capabilities":["kv-read","kv-write","kv-list"],"keys":["kv/app1/*"]}]}`,
		"tokenizer":   `{"rules":[{"effect":"allow","capabilities":["tokenize"],"keys":["pii"]}]}`,
		"detokenizer": `{"rules":[{"effect":"allow","capabilities":["detokenize"],"keys":["pii"]}]}`,
	}
	for name, doc := range policies {
		if st, code := r.do(0, "PUT", api.PathPolicies+"/"+name, c.Token, []byte(doc), nil); st != 200 {
			t.Fatalf("write policy %s: %d %s", name, st, code)
		}
	}
	appTok, _ := r.token("app1kv")
	app := clientWithToken(t, c, appTok)
	if got, err := app.KVGet(ctx, "app1/db", 0); err != nil || got.Data["password"] != secret2 {
		t.Fatalf("app reads its secret: %+v %v", got, err)
	}
	if _, err := app.KVGet(ctx, "app2/x", 0); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("app reads another app's secret: %v", err)
	}
	if _, err := app.KVMetadata(ctx, "app2/x"); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("app reads another app's metadata: %v", err)
	}
	if _, err := app.KVPut(ctx, "app2/x", map[string]string{"k": "overwritten"}, nil); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("app writes another app's secret: %v", err)
	}
	if _, err := app.KVDestroy(ctx, "app1/db", 2); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("app destroys without kv-destroy: %v", err)
	}
	list, err := app.KVList(ctx, "", "", 0)
	if err != nil || !slices.Equal(list.Paths, []string{"app1/db"}) {
		t.Fatalf("app lists %v (%v), want only app1/db", list, err)
	}
	if list, err := admin.KVList(ctx, "app", "", 0); err != nil || !slices.Equal(list.Paths, []string{"app1/db", "app2/x"}) {
		t.Fatalf("admin lists %v (%v)", list, err)
	}
	if got, err := admin.KVGet(ctx, "app2/x", 0); err != nil || got.Data["k"] != "other-app" || got.Version != 1 {
		t.Fatalf("app2/x changed: %+v %v", got, err)
	}

	// Tokenization: tokenize never allows detokenize.
	if _, err := admin.CreateKey(ctx, api.CreateKeyRequest{Name: "pii"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateKey(ctx, api.CreateKeyRequest{Name: "other"}); err != nil {
		t.Fatal(err)
	}
	tokTok, _ := r.token("tokenizer")
	detTok, _ := r.token("detokenizer")
	tokenizer, detokenizer := clientWithToken(t, c, tokTok), clientWithToken(t, c, detTok)
	tr, err := tokenizer.Tokenize(ctx, "pii", card, "")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains([]byte(tr.Token), []byte("4111")) {
		t.Fatal("token shows the value")
	}
	if tr2, err := tokenizer.Tokenize(ctx, "pii", card, ""); err != nil || tr2.Token == tr.Token {
		t.Fatalf("same value tokenized twice: %v, tokens equal %v", err, tr2 != nil && tr2.Token == tr.Token)
	}
	// Deterministic: the same value answers the same token, another value
	// another token; both detokenize.
	d1, err := tokenizer.TokenizeRequest(ctx, "pii", api.TokenizeRequest{Value: card, Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := tokenizer.TokenizeRequest(ctx, "pii", api.TokenizeRequest{Value: card, Deterministic: true})
	if err != nil || d2.Token != d1.Token || d1.Token == tr.Token {
		t.Fatalf("deterministic twice: %v, same %v, equal to the random one %v", err, d2 != nil && d2.Token == d1.Token, d1.Token == tr.Token)
	}
	// TTL poisoning: a short-lived deterministic token planted first is not
	// handed to a caller asking for a longer (or no) expiry.
	if _, err := tokenizer.TokenizeRequest(ctx, "pii", api.TokenizeRequest{Value: "planted", Deterministic: true, TTL: "48h"}); err != nil {
		t.Fatal(err)
	}
	for _, ttl := range []string{"", "72h"} {
		if _, err := tokenizer.TokenizeRequest(ctx, "pii", api.TokenizeRequest{Value: "planted", Deterministic: true, TTL: ttl}); !errors.Is(err, api.ErrConflict) {
			t.Fatalf("deterministic token with ttl %q over a 48h one: %v, want conflict", ttl, err)
		}
	}
	if _, err := tokenizer.TokenizeRequest(ctx, "pii", api.TokenizeRequest{Value: "planted", Deterministic: true, TTL: "24h"}); err != nil {
		t.Fatalf("a shorter ttl gets the existing token: %v", err)
	}
	d3, err := tokenizer.TokenizeRequest(ctx, "pii", api.TokenizeRequest{Value: card + "0", Deterministic: true})
	if err != nil || d3.Token == d1.Token {
		t.Fatalf("another value: %v", err)
	}
	if v, err := detokenizer.Detokenize(ctx, "pii", d1.Token); err != nil || v != card {
		t.Fatalf("detokenize deterministic: %q %v", v, err)
	}
	if _, err := tokenizer.Detokenize(ctx, "pii", tr.Token); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("tokenizer detokenizes: %v", err)
	}
	if _, err := detokenizer.Tokenize(ctx, "pii", "x", ""); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("detokenizer tokenizes: %v", err)
	}
	if v, err := detokenizer.Detokenize(ctx, "pii", tr.Token); err != nil || v != card {
		t.Fatalf("detokenize: %q %v", v, err)
	}
	if _, err := admin.Detokenize(ctx, "other", tr.Token); !errors.Is(err, api.ErrResourceNotFound) {
		t.Fatalf("token of another key: %v", err)
	}
	// The last character replaced by another one (a fixed "A" equals the
	// real token once in 64 runs).
	last := "A"
	if strings.HasSuffix(tr.Token, "A") {
		last = "B"
	}
	if _, err := admin.Detokenize(ctx, "pii", "kdt_"+tr.Token[4:len(tr.Token)-1]+last); !errors.Is(err, api.ErrResourceNotFound) {
		t.Fatalf("forged token: %v", err)
	}
	// An expiring token stops working and is purged by the leader.
	short, err := admin.Tokenize(ctx, "pii", "short-lived", "1s")
	if err != nil {
		t.Fatal(err)
	}
	c.Eventually(t, 20*time.Second, func() error {
		if _, err := admin.Detokenize(ctx, "pii", short.Token); !errors.Is(err, api.ErrResourceNotFound) {
			return errors.New("expired token still answers")
		}
		for i := range c.Size() {
			if c.Node(i).TokensExpiredBy(time.Now().Add(time.Hour)) {
				return errors.New("expired token not purged yet")
			}
		}
		return nil
	})

	// Wait for every node to apply everything, then look for the
	// plaintexts in every file of every node (state, Raft log,
	// snapshots, audit log).
	info, err := admin.KVPut(ctx, "app1/last", map[string]string{"k": "v"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(t, info.Index)
	control := 0 // files holding a path (stored in the clear): the scan sees the data
	for i := range c.Size() {
		err := filepath.WalkDir(c.Slot(i).Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte("app1/last")) {
				control++
			}
			for _, s := range []string{secret1, secret2, card} {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("node %d: %s holds the plaintext %q", i, p, s[:14])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if control < c.Size() {
		t.Fatalf("the scan found the secret path in %d files, want one per node at least", control)
	}
}
