// Package devcerts is an in-memory certificate authority for `keyd dev` and
// tests: it issues node certificates carrying the transport node URI and
// API client certificates. Tests use it instead of reading certificates
// from the repository. It is not a production CA: no revocation, no
// key-usage policy beyond what keyd needs, and long validity.
package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"

	"github.com/keyd/keyd/transport"
)

// ErrInvalidCA is returned by LoadCA for PEM that is not a CA certificate
// with its matching EC private key.
var ErrInvalidCA = errors.New("devcerts: invalid CA")

// validity is long because a dev CA persisted in a data directory should
// not expire under a developer's feet; it is not meant for production.
const validity = 10 * 365 * 24 * time.Hour

// skew backdates NotBefore so a slightly slow clock on a peer does not
// reject a certificate issued a moment ago.
const skew = time.Hour

// CA is an ECDSA P-256 certificate authority held in memory. It is safe
// for concurrent use (it is immutable after creation). It holds a private
// key and formats itself without it.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
}

// String names the CA by its subject, never its key.
func (ca *CA) String() string { return "devcerts.CA{" + ca.cert.Subject.CommonName + "}" }

// GoString is String, so %#v cannot print the key.
func (ca *CA) GoString() string { return ca.String() }

// Format makes every verb print String.
func (ca *CA) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(ca.String())) }

// NewCA creates a self-signed CA named name (its subject common name):
// ECDSA P-256, valid for 10 years, IsCA with KeyUsageCertSign.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devcerts: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"keyd dev"}},
		NotBefore:             now.Add(-skew),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // leaves only: this CA signs no intermediates
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("devcerts: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devcerts: parse CA certificate: %w", err)
	}
	return &CA{cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// LoadCA restores a CA from Marshal's output. It returns ErrInvalidCA when
// the PEM is malformed, the certificate is not a CA, or the key does not
// match. The error never contains key bytes.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: no CERTIFICATE block", ErrInvalidCA)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: parse certificate: %w", ErrInvalidCA, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: certificate is not a signing CA", ErrInvalidCA)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: no PRIVATE KEY block", ErrInvalidCA)
	}
	// Deliberately not wrapping the parse error: it could echo key bytes.
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed private key", ErrInvalidCA)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: private key is not ECDSA", ErrInvalidCA)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("%w: key does not match certificate", ErrInvalidCA)
	}
	return &CA{cert: cert, certPEM: pem.EncodeToMemory(cb), key: key}, nil
}

// Marshal returns the CA certificate and its PKCS#8 private key as PEM so
// `keyd dev` can persist the CA. Writing keyPEM with mode 0600 is the
// caller's job. The caller owns both slices.
func (ca *CA) Marshal() (certPEM, keyPEM []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("devcerts: marshal CA key: %w", err)
	}
	return ca.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// CertPEM returns the CA certificate as PEM, a copy the caller owns.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// Pool returns a new pool holding only this CA, which the caller owns.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// IssueNode issues a leaf for node id: URI SAN spiffe://keyd/node/<id>,
// an IP SAN for each host that parses as an IP and a DNS SAN for the others,
// ExtKeyUsage server and client auth, a fresh P-256 key, valid until the CA
// expires. It returns transport.ErrInvalidNodeID for a bad id. The returned
// certificate has Leaf set.
func (ca *CA) IssueNode(id string, hosts ...string) (tls.Certificate, error) {
	if err := transport.ValidateNodeID(id); err != nil {
		return tls.Certificate{}, fmt.Errorf("devcerts: issue node: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: id, Organization: []string{"keyd node"}},
		URIs:        []*url.URL{transport.NodeURI(id)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl)
}

// IssueNodePEM is IssueNode returning the certificate and its PKCS#8 key as
// PEM, for writing to files that transport.LoadIdentity reads. The caller
// owns the slices and must write keyPEM with mode 0600.
func (ca *CA) IssueNodePEM(id string, hosts ...string) (certPEM, keyPEM []byte, err error) {
	cert, err := ca.IssueNode(id, hosts...)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("devcerts: marshal node key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Identity issues a node certificate as IssueNode does and returns it as a
// checked transport.Identity trusting only this CA.
func (ca *CA) Identity(id string, hosts ...string) (transport.Identity, error) {
	cert, err := ca.IssueNode(id, hosts...)
	if err != nil {
		return transport.Identity{}, err
	}
	return transport.NewIdentity(id, cert, ca.Pool())
}

// IssueClient issues a client-auth certificate with subject commonName and
// no node URI, as an API client (or an impostor in tests) would hold. The
// returned certificate has Leaf set.
func (ca *CA) IssueClient(commonName string) (tls.Certificate, error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: []string{"keyd client"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// issue completes tmpl (serial, validity, key usage), signs it with a fresh
// P-256 key and returns the pair.
func (ca *CA) issue(tmpl *x509.Certificate) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("devcerts: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-skew)
	tmpl.NotAfter = ca.cert.NotAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("devcerts: sign certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("devcerts: parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// newSerial returns a random 128-bit serial number, as RFC 5280 recommends
// unpredictable serials.
func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("devcerts: serial: %w", err)
	}
	return s, nil
}
