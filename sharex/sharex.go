// Package sharex is the node-share exchange used by warm rejoin: a sealed
// node asks unsealed peers for their node shares of the root secret, and
// each peer answers with its share encrypted to the requester's ephemeral
// X25519 key. The root itself never crosses the network, and a share in
// flight is readable only by the requester, on top of the mutual TLS that
// already authenticates both ends.
//
// The requester's TLS certificate and key are files on its disk, so mutual
// TLS alone would let anyone with root on one node's disk (but not its
// HSM) impersonate it and collect k shares from its peers. A request
// therefore also carries a proof that the requester knows its own node
// share (which only its HSM can unwrap): a Schnorr proof against the
// dealing's Feldman commitments (shamir.ProveShare), bound to the
// requester, the dealing and the request's ephemeral key, so a captured
// proof cannot be reused with another key. Peers check it with
// VerifyProof before answering.
package sharex

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/keyd/keyd/shamir"
)

// Errors. Callers branch with errors.Is.
var (
	ErrMalformed = errors.New("sharex: malformed message")
	ErrOpen      = errors.New("sharex: cannot open share")
	// ErrProof: the request carries no valid proof that the requester
	// holds its own share of the dealing.
	ErrProof = errors.New("sharex: requester did not prove it holds its share")
)

// MaxMessageSize bounds an encoded request or response.
const MaxMessageSize = 4 << 10

// Request asks a peer for its node share of the dealing Fingerprint.
// Index and Proof prove that NodeID knows its own share (index Index) of
// that dealing; see Prove and VerifyProof.
type Request struct {
	NodeID      string `json:"node_id"`
	Fingerprint string `json:"fingerprint"`
	Ephemeral   []byte `json:"ephemeral"`
	Index       int    `json:"index,omitempty"`
	Proof       []byte `json:"proof,omitempty"`
}

// proofContext is what a request's proof is bound to: the requester, the
// dealing and the ephemeral key the answers will be sealed to. Each field
// is length-prefixed so no two requests share a context.
func proofContext(r Request) []byte {
	var b bytes.Buffer
	b.WriteString("keyd sharex pok v1\x00")
	for _, f := range [][]byte{[]byte(r.NodeID), []byte(r.Fingerprint), r.Ephemeral} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		b.Write(n[:])
		b.Write(f)
	}
	return b.Bytes()
}

// Prove sets r.Index and r.Proof: a proof that the requester knows own,
// its share of the dealing c, bound to r's node id, fingerprint and
// ephemeral key. Call it after NewRequest; changing any of those fields
// afterwards invalidates the proof. own must verify against c and c must be
// the dealing named by r.Fingerprint.
func (r *Request) Prove(c *shamir.Commitments, own shamir.Share) error {
	if c.Fingerprint() != r.Fingerprint {
		return fmt.Errorf("sharex: prove: commitments are not the requested dealing")
	}
	p, err := shamir.ProveShare(c, own, proofContext(*r), rand.Reader)
	if err != nil {
		return fmt.Errorf("sharex: prove: %w", err)
	}
	r.Index, r.Proof = own.Index, p
	return nil
}

// VerifyProof checks that req proves knowledge of the share with index
// index (the index the dealing recorded for req.NodeID) of the dealing c.
// It returns nil or an error wrapping ErrProof: no proof, another index,
// another dealing, or a proof that does not verify for this requester and
// ephemeral key. The error carries no secret.
func VerifyProof(c *shamir.Commitments, req Request, index int) error {
	if len(req.Proof) == 0 {
		return fmt.Errorf("%w: no proof", ErrProof)
	}
	if req.Index != index {
		return fmt.Errorf("%w: proof is for share %d, the requester holds share %d", ErrProof, req.Index, index)
	}
	if c.Fingerprint() == "" || c.Fingerprint() != req.Fingerprint {
		return fmt.Errorf("%w: another dealing", ErrProof)
	}
	if err := c.VerifyShareProof(index, req.Proof, proofContext(req)); err != nil {
		return fmt.Errorf("%w: proof does not verify", ErrProof)
	}
	return nil
}

// Response carries one peer's share, sealed to the request's ephemeral key.
type Response struct {
	Responder   string `json:"responder"`
	Fingerprint string `json:"fingerprint"`
	Ephemeral   []byte `json:"ephemeral"`
	Sealed      []byte `json:"sealed"`
}

// NewRequest creates a request and the ephemeral private key that opens
// the responses. The key must be used for this exchange only.
func NewRequest(nodeID, fingerprint string) (Request, *ecdh.PrivateKey, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return Request{}, nil, fmt.Errorf("sharex: ephemeral key: %w", err)
	}
	return Request{NodeID: nodeID, Fingerprint: fingerprint, Ephemeral: priv.PublicKey().Bytes()}, priv, nil
}

func info(req Request, responder string) []byte {
	var b bytes.Buffer
	b.WriteString("keyd share exchange v1\x00")
	b.WriteString(req.NodeID)
	b.WriteByte(0)
	b.WriteString(responder)
	b.WriteByte(0)
	b.WriteString(req.Fingerprint)
	return b.Bytes()
}

func aeadFor(shared, reqPub, respPub, inf []byte) (cipher.AEAD, error) {
	salt := append(append([]byte(nil), reqPub...), respPub...)
	key, err := hkdf.Key(sha256.New, shared, salt, string(inf), 32)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal answers req with sh, sealed to the requester's ephemeral key and
// bound to both node ids and the dealing.
func Seal(req Request, responder string, sh shamir.Share) (Response, error) {
	eph, sealed, err := sealShare(req.Ephemeral, info(req, responder), sh)
	if err != nil {
		return Response{}, err
	}
	return Response{Responder: responder, Fingerprint: req.Fingerprint, Ephemeral: eph, Sealed: sealed}, nil
}

// Open decrypts a response to req with the request's private key. It
// returns ErrOpen for a response sealed to another key, another requester,
// another responder or another dealing, or tampered in any way.
func Open(priv *ecdh.PrivateKey, req Request, resp Response) (shamir.Share, error) {
	if resp.Fingerprint != req.Fingerprint {
		return shamir.Share{}, fmt.Errorf("%w: dealing mismatch", ErrOpen)
	}
	return openShare(priv, resp.Ephemeral, resp.Sealed, info(req, resp.Responder))
}

// sealShare encrypts sh to the X25519 public key to (ECDH with a fresh
// ephemeral key, HKDF-SHA256 over both public keys, AES-256-GCM binding
// inf) and returns the ephemeral public key and nonce || ciphertext.
func sealShare(to, inf []byte, sh shamir.Share) (ephemeral, sealed []byte, err error) {
	peer, err := ecdh.X25519().NewPublicKey(to)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: recipient key", ErrMalformed)
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("sharex: ephemeral key: %w", err)
	}
	shared, err := eph.ECDH(peer)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: recipient key", ErrMalformed)
	}
	defer clear(shared)
	aead, err := aeadFor(shared, to, eph.PublicKey().Bytes(), inf)
	if err != nil {
		return nil, nil, err
	}
	pt, err := sh.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	defer clear(pt)
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(pt)+aead.Overhead())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, nil, err
	}
	return eph.PublicKey().Bytes(), aead.Seal(nonce, nonce, pt, inf), nil
}

// openShare reverses sealShare with the recipient's private key.
func openShare(priv *ecdh.PrivateKey, ephemeral, sealed, inf []byte) (shamir.Share, error) {
	peer, err := ecdh.X25519().NewPublicKey(ephemeral)
	if err != nil {
		return shamir.Share{}, fmt.Errorf("%w: ephemeral key", ErrMalformed)
	}
	shared, err := priv.ECDH(peer)
	if err != nil {
		return shamir.Share{}, fmt.Errorf("%w: ephemeral key", ErrOpen)
	}
	defer clear(shared)
	aead, err := aeadFor(shared, priv.PublicKey().Bytes(), ephemeral, inf)
	if err != nil {
		return shamir.Share{}, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return shamir.Share{}, fmt.Errorf("%w: truncated", ErrOpen)
	}
	ns := aead.NonceSize()
	pt, err := aead.Open(nil, sealed[:ns], sealed[ns:], inf)
	if err != nil {
		return shamir.Share{}, ErrOpen
	}
	defer clear(pt)
	sh, err := shamir.UnmarshalShare(pt)
	if err != nil {
		return shamir.Share{}, fmt.Errorf("%w: share encoding", ErrOpen)
	}
	return sh, nil
}

func decodeStrict(b []byte, v any) error {
	if len(b) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: json", ErrMalformed)
	}
	if d.More() {
		return fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	return nil
}

// DecodeRequest parses and checks a request.
func DecodeRequest(b []byte) (Request, error) {
	var r Request
	if err := decodeStrict(b, &r); err != nil {
		return Request{}, err
	}
	if r.NodeID == "" || len(r.NodeID) > 128 || r.Fingerprint == "" || len(r.Fingerprint) > 64 || len(r.Ephemeral) != 32 {
		return Request{}, fmt.Errorf("%w: missing or oversized field", ErrMalformed)
	}
	// Index and Proof may be absent (VerifyProof refuses such a request)
	// but never out of range.
	if r.Index < 0 || r.Index > shamir.MaxShares || len(r.Proof) > shamir.ProofSize {
		return Request{}, fmt.Errorf("%w: share index or proof out of range", ErrMalformed)
	}
	return r, nil
}

// DecodeResponse parses and checks a response.
func DecodeResponse(b []byte) (Response, error) {
	var r Response
	if err := decodeStrict(b, &r); err != nil {
		return Response{}, err
	}
	if r.Responder == "" || len(r.Responder) > 128 || r.Fingerprint == "" || len(r.Fingerprint) > 64 || len(r.Ephemeral) != 32 || len(r.Sealed) == 0 {
		return Response{}, fmt.Errorf("%w: missing or oversized field", ErrMalformed)
	}
	return r, nil
}
