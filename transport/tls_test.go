package transport_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/transport"
)

func TestNodeURIRoundTrip(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "node-1", "n.2_x", strings.Repeat("z", 128)} {
		t.Run(id[:min(len(id), 16)], func(t *testing.T) {
			t.Parallel()
			u := transport.NodeURI(id)
			want := "spiffe://keyd/node/" + id
			if got := u.String(); got != want {
				t.Fatalf("NodeURI(%q) = %q, want %q", id, got, want)
			}
			parsed, err := url.Parse(u.String())
			if err != nil {
				t.Fatal(err)
			}
			got, ok := transport.NodeIDFromURI(parsed)
			if !ok || got != id {
				t.Fatalf("NodeIDFromURI = %q, %v, want %q, true", got, ok, id)
			}
		})
	}
}

func TestNodeIDFromURIRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, uri string }{
		{"other scheme", "https://keyd/node/a"},
		{"other trust domain", "spiffe://other/node/a"},
		{"port", "spiffe://keyd:1/node/a"},
		{"user", "spiffe://u@keyd/node/a"},
		{"not node", "spiffe://keyd/client/a"},
		{"empty id", "spiffe://keyd/node/"},
		{"nested path", "spiffe://keyd/node/a/b"},
		{"dot dot", "spiffe://keyd/node/.."},
		{"escaped", "spiffe://keyd/node/a%2Fb"},
		{"query", "spiffe://keyd/node/a?x=1"},
		{"empty query", "spiffe://keyd/node/a?"},
		{"fragment", "spiffe://keyd/node/a#f"},
		{"too long", "spiffe://keyd/node/" + strings.Repeat("z", 129)},
		{"space", "spiffe://keyd/node/a%20b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(tt.uri)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := transport.NodeIDFromURI(u); ok {
				t.Fatalf("NodeIDFromURI(%q) = %q, true, want false", tt.uri, got)
			}
		})
	}
	if _, ok := transport.NodeIDFromURI(nil); ok {
		t.Fatal("NodeIDFromURI(nil) = true, want false")
	}
}

func FuzzNodeIDFromURI(f *testing.F) {
	for _, s := range []string{"spiffe://keyd/node/a", "spiffe://keyd/node/", "spiffe://keyd/node/a/b", "spiffe://keyd/node/%41", "SPIFFE://keyd/node/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		id, ok := transport.NodeIDFromURI(u)
		if !ok {
			return
		}
		if err := transport.ValidateNodeID(id); err != nil {
			t.Fatalf("accepted %q with invalid id %q: %v", s, id, err)
		}
		back, ok := transport.NodeIDFromURI(transport.NodeURI(id))
		if !ok || back != id {
			t.Fatalf("round trip of %q: got %q, %v", id, back, ok)
		}
	})
}

func TestValidateNodeID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id      string
		wantErr error
	}{
		{"n1", nil},
		{"A.b_c-9", nil},
		{"", transport.ErrInvalidNodeID},
		{".", transport.ErrInvalidNodeID},
		{"..", transport.ErrInvalidNodeID},
		{"a/b", transport.ErrInvalidNodeID},
		{"a b", transport.ErrInvalidNodeID},
		{"é", transport.ErrInvalidNodeID},
		{strings.Repeat("x", 129), transport.ErrInvalidNodeID},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.12q", tt.id), func(t *testing.T) {
			t.Parallel()
			if err := transport.ValidateNodeID(tt.id); !errors.Is(err, tt.wantErr) {
				t.Fatalf("ValidateNodeID(%q) = %v, want %v", tt.id, err, tt.wantErr)
			}
		})
	}
}

func TestNewIdentity(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "cluster")
	other := newCA(t, "other")
	node, err := ca.IssueNode("n1", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.IssueClient("app")
	if err != nil {
		t.Fatal(err)
	}
	noLeaf := node
	noLeaf.Leaf = nil
	raw := newRawCA(t)
	tests := []struct {
		name    string
		id      string
		cert    tls.Certificate
		cas     *x509.CertPool
		wantErr error
	}{
		{"ok", "n1", node, ca.Pool(), nil},
		{"ok without Leaf", "n1", noLeaf, ca.Pool(), nil},
		{"wrong id", "n2", node, ca.Pool(), transport.ErrInvalidIdentity},
		{"invalid id", "n/1", node, ca.Pool(), transport.ErrInvalidNodeID},
		{"foreign CA", "n1", node, other.Pool(), transport.ErrInvalidIdentity},
		{"nil pool", "n1", node, nil, transport.ErrInvalidIdentity},
		{"no node URI", "n1", client, ca.Pool(), transport.ErrInvalidIdentity},
		{"empty cert", "n1", tls.Certificate{}, ca.Pool(), transport.ErrInvalidIdentity},
		{"two node URIs", "a", raw.issue(t, "spiffe://keyd/node/a", "spiffe://keyd/node/b"), raw.pool(), transport.ErrInvalidIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := transport.NewIdentity(tt.id, tt.cert, tt.cas)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("NewIdentity err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (got.NodeID != tt.id || got.Cert.Leaf == nil) {
				t.Fatalf("got NodeID %q, Leaf %v; want %q, non-nil", got.NodeID, got.Cert.Leaf != nil, tt.id)
			}
		})
	}
}

func TestLoadIdentity(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "cluster")
	dir := t.TempDir()
	certPEM, keyPEM, err := ca.IssueNodePEM("n1", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certF, keyF, caF := write("node.pem", certPEM), write("node.key", keyPEM), write("ca.pem", ca.CertPEM())
	garbage := write("garbage", []byte("not pem"))

	tests := []struct {
		name              string
		id, cert, key, ca string
		wantErr           error
	}{
		{"ok", "n1", certF, keyF, caF, nil},
		{"wrong id", "n2", certF, keyF, caF, transport.ErrInvalidIdentity},
		{"missing cert", "n1", filepath.Join(dir, "nope"), keyF, caF, transport.ErrInvalidIdentity},
		{"missing CA", "n1", certF, keyF, filepath.Join(dir, "nope"), os.ErrNotExist},
		{"garbage CA", "n1", certF, keyF, garbage, transport.ErrInvalidIdentity},
		{"key is cert", "n1", certF, certF, caF, transport.ErrInvalidIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := transport.LoadIdentity(tt.id, tt.cert, tt.key, tt.ca)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("LoadIdentity err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && id.NodeID != tt.id {
				t.Fatalf("got NodeID %q, want %q", id.NodeID, tt.id)
			}
			if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("error leaks key file contents: %v", err)
			}
		})
	}
}

func TestIdentityRedacts(t *testing.T) {
	t.Parallel()
	id := nodeIdentity(t, newCA(t, "c"), "n1")
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		got := fmt.Sprintf(verb, id)
		if got != "transport.Identity{NodeID:n1}" {
			t.Errorf("Sprintf(%s) = %q, want the redacted form", verb, got)
		}
	}
}

// handshake runs a TLS handshake over loopback TCP (kernel buffers let the
// server send its alert after the TLS 1.3 client has finished) and returns
// the server's state and both sides' errors. A client-side failure that
// shows only after the handshake (TLS 1.3 client-certificate rejection)
// is reported through a one-byte read.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) (tls.ConnectionState, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	type result struct {
		cs  tls.ConnectionState
		err error
	}
	srvc := make(chan result, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			srvc <- result{err: err}
			return
		}
		defer raw.Close()
		s := tls.Server(raw, srvCfg)
		err = s.HandshakeContext(ctx)
		if err == nil {
			_, err = s.Write([]byte{1}) // lets the client observe success
		}
		srvc <- result{cs: s.ConnectionState(), err: err}
	}()

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, cliCfg)
	defer c.Close()
	cliErr := c.HandshakeContext(ctx)
	if cliErr == nil {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, cliErr = c.Read(make([]byte, 1))
	}
	r := <-srvc
	return r.cs, r.err, cliErr
}

// forceCert makes cfg send its first certificate even when the server's
// CertificateRequest names other CAs (crypto/tls would otherwise send none),
// as a hostile client would.
func forceCert(cfg *tls.Config) *tls.Config {
	cert := cfg.Certificates[0]
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg
}

func TestPeerConfigs(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "cluster")
	other := newCA(t, "other")
	raw := newRawCA(t)
	a := nodeIdentity(t, ca, "a")
	b := nodeIdentity(t, ca, "b")
	foreign := nodeIdentity(t, other, "b")
	// impostor trusts the cluster CA but holds a certificate from another.
	impostor := transport.Identity{NodeID: "b", Cert: foreign.Cert, CAs: ca.Pool()}
	appCert, err := ca.IssueClient("app")
	if err != nil {
		t.Fatal(err)
	}
	// An app certificate has no node URI; the struct literal bypasses
	// NewIdentity on purpose, as an impostor would.
	app := transport.Identity{NodeID: "app", Cert: appCert, CAs: ca.Pool()}
	rawNoURI := transport.Identity{NodeID: "x", Cert: raw.issue(t), CAs: raw.pool()}
	rawTwo := transport.Identity{NodeID: "x", Cert: raw.issue(t, "spiffe://keyd/node/x", "spiffe://keyd/node/y"), CAs: raw.pool()}
	rawNode := transport.Identity{NodeID: "n", Cert: raw.issue(t, "spiffe://keyd/node/n"), CAs: raw.pool()}
	tls12 := transport.PeerClientConfig(b)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	var certErr *tls.CertificateVerificationError
	tests := []struct {
		name       string
		srv, cli   *tls.Config
		wantPeer   string
		srvErr     error // sentinel, or nil
		srvErrAs   any   // errors.As target, or nil
		wantCliErr error
	}{
		{name: "nodes of one cluster", srv: transport.PeerServerConfig(a), cli: transport.PeerClientConfig(b), wantPeer: "b"},
		{name: "pinned peer matches", srv: transport.PeerServerConfig(a), cli: transport.PeerClientConfigFor(b, "a"), wantPeer: "b"},
		{name: "pinned peer differs", srv: transport.PeerServerConfig(a), cli: transport.PeerClientConfigFor(b, "c"), wantCliErr: transport.ErrPeerMismatch},
		{name: "client from other CA", srv: transport.PeerServerConfig(a), cli: forceCert(transport.PeerClientConfig(impostor)), srvErrAs: &certErr},
		{name: "client trusting other CA", srv: transport.PeerServerConfig(a), cli: transport.PeerClientConfig(foreign), wantCliErr: transport.ErrUntrustedPeer},
		{name: "client without node URI", srv: transport.PeerServerConfig(a), cli: transport.PeerClientConfig(app), srvErr: transport.ErrNoNodeID},
		{name: "client with two node URIs", srv: transport.PeerServerConfig(rawNode), cli: transport.PeerClientConfig(rawTwo), srvErr: transport.ErrNoNodeID},
		{name: "server from other CA", srv: transport.PeerServerConfig(foreign), cli: transport.PeerClientConfig(a), wantCliErr: transport.ErrUntrustedPeer},
		{name: "server without node URI", srv: transport.PeerServerConfig(rawNoURI), cli: transport.PeerClientConfig(rawNode), wantCliErr: transport.ErrNoNodeID},
		{name: "server with app cert", srv: transport.PeerServerConfig(app), cli: transport.PeerClientConfig(a), wantCliErr: transport.ErrUntrustedPeer},
		{name: "client without certificate", srv: transport.PeerServerConfig(a), cli: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, srvErr: nil, srvErrAs: nil, wantCliErr: nil, wantPeer: "-fail"},
		{name: "TLS 1.2 client", srv: transport.PeerServerConfig(a), cli: tls12, wantPeer: "-fail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs, srvErr, cliErr := handshake(t, tt.srv, tt.cli)
			switch {
			case tt.wantPeer == "-fail":
				if srvErr == nil {
					t.Fatal("server handshake succeeded, want failure")
				}
				return
			case tt.srvErr != nil:
				if !errors.Is(srvErr, tt.srvErr) {
					t.Fatalf("server err = %v, want %v", srvErr, tt.srvErr)
				}
				return
			case tt.srvErrAs != nil:
				if !errors.As(srvErr, tt.srvErrAs) {
					t.Fatalf("server err = %v (%T), want %T", srvErr, srvErr, tt.srvErrAs)
				}
				return
			case tt.wantCliErr != nil:
				if !errors.Is(cliErr, tt.wantCliErr) {
					t.Fatalf("client err = %v, want %v", cliErr, tt.wantCliErr)
				}
				if srvErr == nil {
					t.Fatal("server handshake succeeded after client rejected it")
				}
				return
			}
			if srvErr != nil || cliErr != nil {
				t.Fatalf("server err %v, client err %v, want none", srvErr, cliErr)
			}
			if cs.Version != tls.VersionTLS13 {
				t.Errorf("version %x, want TLS 1.3", cs.Version)
			}
			if got, ok := transport.PeerNodeID(cs); !ok || got != tt.wantPeer {
				t.Errorf("PeerNodeID = %q, %v, want %q, true", got, ok, tt.wantPeer)
			}
		})
	}
}

func TestAPIServerConfig(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "cluster")
	other := newCA(t, "other")
	srv := nodeIdentity(t, ca, "a")
	peer := nodeIdentity(t, ca, "b")
	appCert, err := ca.IssueClient("app")
	if err != nil {
		t.Fatal(err)
	}
	foreignCert, err := other.IssueClient("app")
	if err != nil {
		t.Fatal(err)
	}
	client := func(certs ...tls.Certificate) *tls.Config {
		// An ordinary HTTPS client that verifies the API host name.
		return &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: certs, NextProtos: []string{"h2"}}
	}
	tests := []struct {
		name     string
		cli      *tls.Config
		wantPeer string // "" for no peer node
		wantFail bool
	}{
		{name: "bearer-token client without certificate", cli: client()},
		{name: "client certificate without node URI", cli: client(appCert)},
		{name: "peer node", cli: client(peer.Cert), wantPeer: "b"},
		{name: "certificate from other CA", cli: forceCert(client(foreignCert)), wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs, srvErr, cliErr := handshake(t, transport.APIServerConfig(srv), tt.cli)
			if tt.wantFail {
				if srvErr == nil {
					t.Fatal("server handshake succeeded, want failure")
				}
				return
			}
			if srvErr != nil || cliErr != nil {
				t.Fatalf("server err %v, client err %v, want none", srvErr, cliErr)
			}
			if cs.NegotiatedProtocol != "h2" {
				t.Errorf("ALPN %q, want h2", cs.NegotiatedProtocol)
			}
			got, ok := transport.PeerNodeID(cs)
			if got != tt.wantPeer || ok != (tt.wantPeer != "") {
				t.Errorf("PeerNodeID = %q, %v, want %q", got, ok, tt.wantPeer)
			}
		})
	}
	cfg := transport.APIServerConfig(srv)
	if cfg.MinVersion != tls.VersionTLS13 || cfg.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Errorf("MinVersion %x ClientAuth %v, want TLS 1.3 and VerifyClientCertIfGiven", cfg.MinVersion, cfg.ClientAuth)
	}
}
