package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/policy"
)

// runCmdErr runs one keyd command line in process and returns stdout,
// stderr and the error.
func runCmdErr(t *testing.T, env map[string]string, stdin string, args ...string) (string, string, error) {
	t.Helper()
	c, out, errb := testCLI(t.Context(), env, strings.NewReader(stdin))
	err := c.run(args)
	return out.String(), errb.String(), err
}

// withEnv returns a copy of env with the given changes; an empty value
// deletes the variable.
func withEnv(env map[string]string, kv ...string) map[string]string {
	out := maps.Clone(env)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(out, kv[i])
		} else {
			out[kv[i]] = kv[i+1]
		}
	}
	return out
}

// TestAdminEndToEnd runs the access-control, topology and audit commands
// against an in-process 3-node dev cluster, as an operator would.
func TestAdminEndToEnd(t *testing.T) {
	t.Parallel()
	d := startDev(t, "-listen", "127.0.0.1:0", "-nodes", "3")
	env := d.env
	nodes := strings.Split(env[envAddr], ",")
	dir := t.TempDir()

	t.Run("whoami", func(t *testing.T) {
		out, err := runCmd(t, env, "", "whoami", "-json")
		if err != nil {
			t.Fatalf("whoami: %v", err)
		}
		var who api.WhoAmI
		if err := json.Unmarshal([]byte(out), &who); err != nil {
			t.Fatalf("whoami -json: %v in %q", err, out)
		}
		if who.Identity == "" || !strings.Contains(strings.Join(who.Policies, ","), "admin") {
			t.Fatalf("got %+v, want the admin token's identity with the admin policy", who)
		}
	})

	t.Run("peers", func(t *testing.T) {
		out, err := runCmd(t, env, "", "peers")
		if err != nil {
			t.Fatalf("peers: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "NODE") || !strings.Contains(lines[0], "LAST-CONTACT") {
			t.Fatalf("got\n%s\nwant a header and 3 rows", out)
		}
		leaders := 0
		for i, id := range []string{"n1", "n2", "n3"} {
			f := strings.Fields(lines[i+1])
			// keyd dev runs without gossip: only the answering node knows
			// its own seal state ("-" for the others).
			if len(f) != 9 || f[0] != id || f[1] != devRegion || f[3] != "voter" || (f[6] != "false" && f[6] != "-") {
				t.Fatalf("row %d: got %q, want %s in %s, a voter, unsealed or unknown", i, lines[i+1], id, devRegion)
			}
			if f[4] == "*" {
				leaders++
			}
		}
		if leaders != 1 {
			t.Fatalf("got %d leaders in\n%s\nwant 1", leaders, out)
		}
		js, err := runCmd(t, env, "", "peers", "-json")
		var ci api.ClusterInfo
		if err != nil || json.Unmarshal([]byte(js), &ci) != nil || len(ci.Nodes) != 3 || ci.LeaderID == "" {
			t.Fatalf("peers -json: got %q, %v", js, err)
		}
	})

	t.Run("policy round trip", func(t *testing.T) {
		doc := `{"rules":[{"effect":"allow","capabilities":["encrypt","decrypt"],"keys":["app1-*"]},` +
			`{"effect":"deny","capabilities":["decrypt"],"keys":["app1-secret"]}]}`
		file := filepath.Join(dir, "app1.json")
		if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := runCmd(t, env, "", "policy", "write", "app1", file); err != nil || !strings.Contains(out, "app1") {
			t.Fatalf("policy write: got %q, %v", out, err)
		}
		got, err := runCmd(t, env, "", "policy", "read", "app1")
		if err != nil {
			t.Fatalf("policy read: %v", err)
		}
		want, _ := policy.Parse("app1", []byte(doc))
		back, err := policy.Parse("app1", []byte(got))
		if err != nil || !reflect.DeepEqual(back, want) {
			t.Fatalf("policy read: got %q (%v), want the document written", got, err)
		}
		// Its output can be written back, from stdin.
		if _, err := runCmd(t, env, got, "policy", "write", "app1", "-"); err != nil {
			t.Fatalf("policy write from stdin: %v", err)
		}
		if _, err := runCmd(t, env, "", "policy", "write", "app2", "-app", "app2-*,shared-*"); err != nil {
			t.Fatalf("policy write -app: %v", err)
		}
		list, err := runCmd(t, env, "", "policy", "list")
		if err != nil {
			t.Fatalf("policy list: %v", err)
		}
		for _, w := range [][]string{{"admin", "built-in"}, {"auditor", "built-in"}, {"app1", "stored"}, {"app2", "stored"}} {
			if !hasRow(list, w...) {
				t.Fatalf("policy list: got\n%s\nwant a row %v", list, w)
			}
		}
		if _, err := runCmd(t, env, "", "policy", "delete", "app1"); err != nil {
			t.Fatalf("policy delete: %v", err)
		}
		if _, err := runCmd(t, env, "", "policy", "read", "app1"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("policy read after delete: got %v, want %v", err, api.ErrNotFound)
		}
		if _, err := runCmd(t, env, "", "policy", "delete", "admin"); !errors.Is(err, api.ErrBadRequest) {
			t.Fatalf("policy delete admin: got %v, want %v", err, api.ErrBadRequest)
		}
		bad := `{"rules":[{"effect":"allow","capabilities":["fly"],"keys":["*"]}]}`
		if _, err := runCmd(t, env, bad, "policy", "write", "bad", "-"); !errors.Is(err, policy.ErrUnknownCapability) {
			t.Fatalf("policy write with an unknown capability: got %v, want %v", err, policy.ErrUnknownCapability)
		}
	})

	t.Run("token lifecycle", func(t *testing.T) {
		if _, err := runCmd(t, env, "", "policy", "write", "app3", "-app", "app3-*"); err != nil {
			t.Fatalf("policy write: %v", err)
		}
		for _, k := range []string{"app3-k", "other-k"} {
			if _, err := runCmd(t, env, "", "key", "create", k); err != nil {
				t.Fatalf("key create %s: %v", k, err)
			}
		}
		out, errOut, err := runCmdErr(t, env, "", "token", "create", "-policy", "app3", "-ttl", "1h", "-name", "svc3")
		if err != nil {
			t.Fatalf("token create: %v", err)
		}
		tok := strings.TrimSpace(out)
		if !strings.HasPrefix(tok, "kd_") || strings.Count(out, "\n") != 1 {
			t.Fatalf("token create: got stdout %q, want the token alone", out)
		}
		if strings.Contains(errOut, tok) || !strings.Contains(errOut, "shown once") || !strings.Contains(errOut, "Accessor: ") {
			t.Fatalf("token create: got stderr %q, want the warning and accessor, not the token", errOut)
		}
		_, after, _ := strings.Cut(errOut, "Accessor: ")
		accessor := strings.Fields(after)[0]

		app := withEnv(env, envToken, tok)
		who, err := runCmd(t, app, "", "whoami")
		if err != nil || !strings.Contains(who, "token:"+accessor) || !strings.Contains(who, "Policies: app3") {
			t.Fatalf("whoami with the new token: got %q, %v", who, err)
		}
		// Right after create, on every node: token create waited for them.
		for _, n := range nodes {
			if _, err := runCmd(t, app, "hello", "key", "encrypt", "app3-k", "-addr", n); err != nil {
				t.Fatalf("encrypt with the app token on %s: %v", n, err)
			}
		}
		if _, err := runCmd(t, app, "hello", "key", "encrypt", "other-k"); !errors.Is(err, api.ErrForbidden) {
			t.Fatalf("encrypt another app's key: got %v, want %v", err, api.ErrForbidden)
		}
		list, err := runCmd(t, env, "", "token", "list")
		if err != nil || !hasRow(list, accessor, "svc3", "app3") || strings.Contains(list, tok) {
			t.Fatalf("token list: got\n%s\n%v, want the accessor row and no token", list, err)
		}
		if _, err := runCmd(t, env, "", "token", "revoke", accessor); err != nil {
			t.Fatalf("token revoke: %v", err)
		}
		for _, n := range nodes {
			if _, err := runCmd(t, app, "hello", "key", "encrypt", "app3-k", "-addr", n); !errors.Is(err, api.ErrUnauthorized) {
				t.Fatalf("encrypt with the revoked token on %s: got %v, want %v", n, err, api.ErrUnauthorized)
			}
		}
		if _, err := runCmd(t, env, "", "token", "create", "-policy", "no-such-policy"); !errors.Is(err, api.ErrBadRequest) {
			t.Fatalf("token create with an unknown policy: got %v, want %v", err, api.ErrBadRequest)
		}
	})

	t.Run("certificate identity", func(t *testing.T) {
		certFile, keyFile := writeClientCert(t, dir)
		out, err := runCmd(t, env, "", "identity", "create", "-cert", certFile, "-policy", "auditor", "-name", "audit-bot", "-json")
		if err != nil {
			t.Fatalf("identity create: %v", err)
		}
		var info api.IdentityInfo
		if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.ID) != 64 {
			t.Fatalf("identity create -json: got %q, %v", out, err)
		}
		list, err := runCmd(t, env, "", "identity", "list")
		if err != nil || !hasRow(list, info.ID, "audit-bot", "auditor") {
			t.Fatalf("identity list: got\n%s\n%v", list, err)
		}
		certEnv := withEnv(env, envToken, "", envClientCert, certFile, envClientKey, keyFile)
		who, err := runCmd(t, certEnv, "", "whoami")
		if err != nil || !strings.Contains(who, "cert:"+info.ID[:16]) || !strings.Contains(who, "Policies: auditor") {
			t.Fatalf("whoami with the client certificate: got %q, %v", who, err)
		}
		if _, err := runCmd(t, env, "", "identity", "delete", info.ID); err != nil {
			t.Fatalf("identity delete: %v", err)
		}
		if _, err := runCmd(t, certEnv, "", "whoami"); !errors.Is(err, api.ErrUnauthorized) {
			t.Fatalf("whoami after identity delete: got %v, want %v", err, api.ErrUnauthorized)
		}
	})

	t.Run("audit fetch and verify", func(t *testing.T) {
		file := filepath.Join(dir, "n1-audit.log")
		// n1 anchors its head every two seconds; wait for the first.
		var out string
		deadline := time.Now().Add(30 * time.Second)
		for {
			var err error
			out, err = runCmd(t, env, "", "audit", "fetch", "-addr", nodes[0], "-anchors-from", nodes[1], "-out", file)
			if err != nil {
				t.Fatalf("audit fetch: %v", err)
			}
			if !strings.HasPrefix(out, "Fetched 0 anchors") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no anchors: %q", out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(out, "keyd audit verify -anchors "+file+".anchors "+file) {
			t.Fatalf("audit fetch: got %q, want the verify hint", out)
		}
		log, err := os.ReadFile(file)
		if err != nil || len(log) == 0 || log[len(log)-1] != '\n' {
			t.Fatalf("got a log of %d bytes (%v), want whole lines", len(log), err)
		}
		// Every node audits what it serves: the encrypt calls made on
		// each node above are in n1's log.
		if !bytes.Contains(log, []byte(`"key.encrypt"`)) {
			t.Fatalf("the audit log lacks the key.encrypt records")
		}
		anchors := file + ".anchors"
		got, err := runCmd(t, env, "", "audit", "verify", "-anchors", anchors, file)
		if err != nil || !strings.HasPrefix(got, "OK: ") {
			t.Fatalf("audit verify: got %q, %v, want OK", got, err)
		}
	})

	d.stop(t)
}

// hasRow reports whether some line of a table holds all of fields, in
// order, as whole fields.
func hasRow(table string, fields ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		i := 0
		for _, x := range f {
			if i < len(fields) && x == fields[i] {
				i++
			}
		}
		if i == len(fields) {
			return true
		}
	}
	return false
}

// writeClientCert writes a self-signed client certificate and its key.
func writeClientCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "audit-bot"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
