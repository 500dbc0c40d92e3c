package devcerts_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/keyd/keyd/transport"
	"github.com/keyd/keyd/transport/devcerts"
)

func newCA(t testing.TB) *devcerts.CA {
	t.Helper()
	ca, err := devcerts.NewCA("test ca")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestNewCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	b, _ := pem.Decode(ca.CertPEM())
	if b == nil {
		t.Fatal("CertPEM is not PEM")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("IsCA %v KeyUsage %v, want CA with CertSign", cert.IsCA, cert.KeyUsage)
	}
	if cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm %v, want ECDSA", cert.PublicKeyAlgorithm)
	}
	if got := cert.NotAfter.Sub(cert.NotBefore).Hours() / 24 / 365; got < 9.9 {
		t.Errorf("validity %.1f years, want about 10", got)
	}
	// The caller may not corrupt the CA through the returned slice.
	pemCopy := ca.CertPEM()
	pemCopy[0] ^= 0xff
	if bytes.Equal(pemCopy, ca.CertPEM()) {
		t.Error("CertPEM returned the internal buffer")
	}
}

func TestIssueNode(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	cert, err := ca.IssueNode("n1", "127.0.0.1", "::1", "node1.example")
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if got := fmt.Sprint(leaf.URIs); got != "[spiffe://keyd/node/n1]" {
		t.Errorf("URIs %s, want [spiffe://keyd/node/n1]", got)
	}
	if len(leaf.IPAddresses) != 2 || !slices.Equal(leaf.DNSNames, []string{"node1.example"}) {
		t.Errorf("IPs %v DNS %v, want 2 IPs and node1.example", leaf.IPAddresses, leaf.DNSNames)
	}
	for _, ku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{ku}}); err != nil {
			t.Errorf("verify for %v: %v", ku, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "node1.example"}); err != nil {
		t.Errorf("verify DNS SAN: %v", err)
	}
	if _, err := ca.IssueNode("bad/id"); !errors.Is(err, transport.ErrInvalidNodeID) {
		t.Errorf("IssueNode(bad/id): got %v, want %v", err, transport.ErrInvalidNodeID)
	}
}

func TestIdentityAndPEM(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	id, err := ca.Identity("n2", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if id.NodeID != "n2" {
		t.Errorf("NodeID %q, want n2", id.NodeID)
	}
	certPEM, keyPEM, err := ca.IssueNodePEM("n3")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	want := &url.URL{Scheme: "spiffe", Host: "keyd", Path: "/node/n3"}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want.String() {
		t.Errorf("URIs %v, want [%v]", leaf.URIs, want)
	}
	if k, _ := pem.Decode(keyPEM); k == nil || k.Type != "PRIVATE KEY" {
		t.Error("key PEM is not a PRIVATE KEY block")
	}
}

func TestIssueClient(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	cert, err := ca.IssueClient("app")
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Leaf.URIs) != 0 {
		t.Errorf("client cert has URIs %v, want none", cert.Leaf.URIs)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify client cert: %v", err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client cert verifies for server auth, want failure")
	}
}

func TestMarshalLoadCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	certPEM, keyPEM, err := ca.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := devcerts.LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	// A leaf issued by the reloaded CA verifies under the original pool.
	leaf, err := loaded.IssueNode("n1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err != nil {
		t.Errorf("leaf from reloaded CA: %v", err)
	}

	other := newCA(t)
	_, otherKey, err := other.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, nodeKey, err := ca.IssueNodePEM("n1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		cert, key []byte
	}{
		{"empty", nil, nil},
		{"garbage cert", []byte("x"), keyPEM},
		{"key swapped in", keyPEM, keyPEM},
		{"wrong key", certPEM, otherKey},
		{"leaf as CA", nodeCert, nodeKey},
		{"garbage key", certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("nope")})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := devcerts.LoadCA(tt.cert, tt.key); !errors.Is(err, devcerts.ErrInvalidCA) {
				t.Errorf("LoadCA: got %v, want %v", err, devcerts.ErrInvalidCA)
			}
		})
	}
}

func TestCARedacts(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		if got := fmt.Sprintf(verb, ca); got != "devcerts.CA{test ca}" {
			t.Errorf("Sprintf(%s) = %q, want devcerts.CA{test ca}", verb, got)
		}
	}
}

func FuzzLoadCA(f *testing.F) {
	ca, err := devcerts.NewCA("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(certPEM, keyPEM)
	f.Add(certPEM, []byte("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, c, k []byte) {
		loaded, err := devcerts.LoadCA(c, k)
		if err != nil {
			if !errors.Is(err, devcerts.ErrInvalidCA) {
				t.Fatalf("error %v does not wrap ErrInvalidCA", err)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Fatalf("error echoes input: %v", err)
			}
			return
		}
		if _, err := loaded.IssueNode("n"); err != nil {
			t.Fatalf("loaded CA cannot issue: %v", err)
		}
	})
}
