package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Errors returned by this package. Handshake failures caused by a peer's
// certificate wrap one of ErrUntrustedPeer, ErrNoNodeID or ErrPeerMismatch;
// branch with errors.Is.
var (
	// ErrInvalidNodeID reports a node id that cannot appear in a node URI.
	ErrInvalidNodeID = errors.New("transport: invalid node id")
	// ErrInvalidIdentity reports an Identity whose certificate, key or CA
	// pool is missing, unreadable or inconsistent with its node id.
	ErrInvalidIdentity = errors.New("transport: invalid identity")
	// ErrUntrustedPeer reports a peer certificate that does not chain to the
	// cluster CA (or is expired, or lacks the needed extended key usage).
	ErrUntrustedPeer = errors.New("transport: peer certificate not trusted")
	// ErrNoNodeID reports a trusted peer certificate that carries no node
	// URI SAN, such as an API client certificate.
	ErrNoNodeID = errors.New("transport: peer certificate has no node identity")
	// ErrPeerMismatch reports a peer whose node id differs from the one
	// the caller expected (see PeerClientConfigFor).
	ErrPeerMismatch = errors.New("transport: peer node id mismatch")
)

const (
	nodeURIScheme = "spiffe"
	nodeURIHost   = "keyd"
	nodeURIPrefix = "/node/"
	maxNodeIDLen  = 128
)

// ValidateNodeID reports whether id may be used as a node id: 1 to 128
// characters from [A-Za-z0-9._-], not "." or "..". The restriction keeps the
// id verbatim in a URI path with no escaping, so the id in a certificate
// and the id Raft uses compare byte for byte. It returns ErrInvalidNodeID.
func ValidateNodeID(id string) error {
	if id == "" || len(id) > maxNodeIDLen || id == "." || id == ".." {
		return fmt.Errorf("%w: length or dot segment", ErrInvalidNodeID)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("%w: character at offset %d", ErrInvalidNodeID, i)
		}
	}
	return nil
}

// NodeURI returns spiffe://keyd/node/<id>, the URI SAN that names node id
// in its certificate. It does not validate id; certificate issuers should
// call ValidateNodeID first, and PeerNodeID ignores URIs with invalid ids.
// The caller owns the returned URL.
func NodeURI(id string) *url.URL {
	return &url.URL{Scheme: nodeURIScheme, Host: nodeURIHost, Path: nodeURIPrefix + id}
}

// NodeIDFromURI returns the node id named by u if u is exactly a node URI
// (spiffe://keyd/node/<id> with a valid id and no user, port, query,
// fragment or escaping), and false otherwise.
func NodeIDFromURI(u *url.URL) (string, bool) {
	if u == nil || u.Scheme != nodeURIScheme || u.Host != nodeURIHost || u.Opaque != "" ||
		u.User != nil || u.RawPath != "" || u.RawQuery != "" || u.ForceQuery ||
		u.Fragment != "" || u.RawFragment != "" || u.OmitHost {
		return "", false
	}
	id, ok := strings.CutPrefix(u.Path, nodeURIPrefix)
	if !ok || ValidateNodeID(id) != nil {
		return "", false
	}
	return id, true
}

// nodeIDFromCert returns the node id of cert. A certificate must carry
// exactly one node URI: two would make the identity ambiguous.
func nodeIDFromCert(cert *x509.Certificate) (string, bool) {
	if cert == nil {
		return "", false
	}
	var found string
	n := 0
	for _, u := range cert.URIs {
		if id, ok := NodeIDFromURI(u); ok {
			found = id
			n++
		}
	}
	if n != 1 {
		return "", false
	}
	return found, true
}

// PeerNodeID returns the node id from the leaf of the first verified chain
// in cs, and false when there is no verified chain or the leaf carries no
// single valid node URI.
//
// It reads only VerifiedChains, which crypto/tls fills on the server side of
// PeerServerConfig and APIServerConfig (when the client sent a certificate).
// The client side of PeerClientConfig verifies the server in
// VerifyConnection instead of by host name (see PeerClientConfig), so its
// VerifiedChains is empty and PeerNodeID returns false there; use
// [Conn.PeerNodeID] or PeerClientConfigFor to know or pin the server's id.
func PeerNodeID(cs tls.ConnectionState) (string, bool) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	return nodeIDFromCert(cs.VerifiedChains[0][0])
}

// Identity is a node's certificate and the cluster CA pool used to verify
// peers. Build it with NewIdentity or LoadIdentity so it is checked. An
// Identity holds a private key: it formats itself without it, and configs
// built from it share Cert, which callers must not mutate afterwards.
type Identity struct {
	NodeID string
	Cert   tls.Certificate
	CAs    *x509.CertPool
}

// String returns the node id only, never key material.
func (id Identity) String() string { return "transport.Identity{NodeID:" + id.NodeID + "}" }

// GoString is String, so %#v cannot print the private key.
func (id Identity) GoString() string { return id.String() }

// Format makes every verb print String, so no fmt verb reaches the key.
func (id Identity) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(id.String())) }

// NewIdentity checks that cert's leaf chains to cas for both server and
// client authentication and carries the node URI of nodeID, and returns the
// Identity. Errors wrap ErrInvalidNodeID or ErrInvalidIdentity. It fills
// cert.Leaf when it is nil.
func NewIdentity(nodeID string, cert tls.Certificate, cas *x509.CertPool) (Identity, error) {
	if err := ValidateNodeID(nodeID); err != nil {
		return Identity{}, err
	}
	if cas == nil {
		return Identity{}, fmt.Errorf("%w: no CA pool", ErrInvalidIdentity)
	}
	if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return Identity{}, fmt.Errorf("%w: no certificate or key", ErrInvalidIdentity)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return Identity{}, fmt.Errorf("%w: parse leaf: %w", ErrInvalidIdentity, err)
		}
		cert.Leaf = leaf
	}
	got, ok := nodeIDFromCert(cert.Leaf)
	if !ok {
		return Identity{}, fmt.Errorf("%w: certificate has no node URI", ErrInvalidIdentity)
	}
	if got != nodeID {
		return Identity{}, fmt.Errorf("%w: certificate names node %q, want %q", ErrInvalidIdentity, got, nodeID)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: parse intermediate: %w", ErrInvalidIdentity, err)
		}
		inter.AddCert(c)
	}
	// A node is both a server and a client on peer links, so its own
	// certificate must be acceptable to peers in both roles.
	for _, ku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: cas, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{ku}}
		if _, err := cert.Leaf.Verify(opts); err != nil {
			return Identity{}, fmt.Errorf("%w: verify own certificate: %w", ErrInvalidIdentity, err)
		}
	}
	return Identity{NodeID: nodeID, Cert: cert, CAs: cas}, nil
}

// LoadIdentity reads a PEM certificate chain, its PEM private key and the
// PEM cluster CA bundle from files and checks them with NewIdentity. Errors
// name the file but never include its contents; they wrap
// ErrInvalidIdentity or ErrInvalidNodeID, or the os error for an unreadable
// file.
func LoadIdentity(nodeID, certFile, keyFile, caFile string) (Identity, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: load key pair %s, %s: %w", ErrInvalidIdentity, certFile, keyFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return Identity{}, fmt.Errorf("transport: read CA file: %w", err)
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(caPEM) {
		return Identity{}, fmt.Errorf("%w: no certificates in CA file %s", ErrInvalidIdentity, caFile)
	}
	return NewIdentity(nodeID, cert, cas)
}

// verifyNodeLeaf is the server-side VerifyConnection of peer links. crypto/tls
// has already verified the client chain against ClientCAs
// (RequireAndVerifyClientCert); this adds the node identity check, and
// because VerifyConnection also runs on resumed sessions the check cannot be
// skipped by resumption.
func verifyNodeLeaf(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 {
		return ErrUntrustedPeer
	}
	if _, ok := PeerNodeID(cs); !ok {
		return ErrNoNodeID
	}
	return nil
}

// verifyServerNode returns the client-side VerifyConnection of peer links:
// it verifies the server chain against cas for server authentication and
// requires a node URI, equal to want when want is not empty.
func verifyServerNode(cas *x509.CertPool, want string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		_, err := verifyPeerChain(cs, cas, x509.ExtKeyUsageServerAuth, want)
		return err
	}
}

// verifyPeerChain verifies cs.PeerCertificates against cas for usage and
// returns the leaf's node id, which must equal want when want is not empty.
func verifyPeerChain(cs tls.ConnectionState, cas *x509.CertPool, usage x509.ExtKeyUsage, want string) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", fmt.Errorf("%w: no certificate", ErrUntrustedPeer)
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	opts := x509.VerifyOptions{
		Roots:         cas,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
		CurrentTime:   time.Now(),
	}
	if _, err := leaf.Verify(opts); err != nil {
		return "", fmt.Errorf("%w: %w", ErrUntrustedPeer, err)
	}
	got, ok := nodeIDFromCert(leaf)
	if !ok {
		return "", ErrNoNodeID
	}
	if want != "" && got != want {
		return "", fmt.Errorf("%w: got %q, want %q", ErrPeerMismatch, got, want)
	}
	return got, nil
}

// PeerServerConfig returns the server side of a node-to-node link (Raft and
// the internal API): TLS 1.3 only, the node's certificate, and
// RequireAndVerifyClientCert against id.CAs. Any node of the cluster is
// accepted: a client certificate must chain to the CA for client
// authentication and carry exactly one node URI, checked in
// VerifyConnection (so also on resumed sessions); failures wrap ErrNoNodeID
// or are crypto/tls chain errors. Each call returns a new config the caller
// owns.
func PeerServerConfig(id Identity) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{id.Cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        id.CAs,
		VerifyConnection: verifyNodeLeaf,
	}
}

// PeerClientConfig returns the client side of a node-to-node link: TLS 1.3
// only, presenting the node's certificate, and accepting a server of any
// node id of the cluster.
//
// Nodes are addressed by IP:port, and the address a peer is dialed at need
// not appear in its certificate (NAT, container networks, re-addressing),
// so the server is authenticated by its node identity instead of its host
// name: InsecureSkipVerify turns off only crypto/tls's built-in host-name
// and chain check, and VerifyConnection — which crypto/tls runs on every
// handshake, resumed or not — verifies the chain against id.CAs for server
// authentication and requires a node URI. Failures wrap ErrUntrustedPeer or
// ErrNoNodeID. Each call returns a new config the caller owns.
func PeerClientConfig(id Identity) *tls.Config {
	return PeerClientConfigFor(id, "")
}

// PeerClientConfigFor is PeerClientConfig that also requires the server to
// be node peer (when peer is not empty), for callers that know whom they are
// dialing, such as leader forwarding. A different node fails the handshake
// with ErrPeerMismatch.
func PeerClientConfigFor(id Identity, peer string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		RootCAs:      id.CAs,
		// Not insecure: VerifyConnection below does the full chain check
		// against id.CAs; only the host-name match is replaced by the
		// node-URI match (see the doc comment).
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection:   verifyServerNode(id.CAs, peer),
	}
}

// APIServerConfig returns the HTTPS API server config: TLS 1.3 minimum, the
// node's certificate, NextProtos h2 and http/1.1, and ClientAuth
// VerifyClientCertIfGiven against id.CAs. Applications authenticate with
// bearer tokens and need no certificate; a certificate, when sent, must
// chain to the cluster CA, and handlers of internal endpoints recognise a
// peer node with PeerNodeID(r.TLS). Each call returns a new config the
// caller owns.
func APIServerConfig(id Identity) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    id.CAs,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}
