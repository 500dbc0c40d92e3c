package sharex

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/keyd/keyd/shamir"
)

// Share delivery: the leader deals a voter its node share, and a node
// relays a custodian share to a peer, sealed to the receiver's delivery
// key, an X25519 key pair whose private half the receiver keeps only
// wrapped by its HSM and whose public half the cluster pinned through Raft
// when the receiver joined. Mutual TLS alone is not enough: a node's
// certificate and key are files on its disk, so root on that disk could
// answer at the node's address while it is down and receive its new share
// (then prove it in share requests and collect the root) or the custodian
// shares of a cold unseal. A delivery sealed to the pinned key opens only
// with the receiver's HSM.

// DeliveryKeySize is the size of a delivery public key (X25519).
const DeliveryKeySize = 32

// Kind says what a delivery carries; it is bound into the seal, so a
// share sealed as one kind never opens as the other.
type Kind string

const (
	// NodeShare: a node share the leader deals a voter (Epoch: the
	// dealing's epoch, Fingerprint: its commitments).
	NodeShare Kind = "node-share"
	// CustodianRelay: a custodian share one node relays to a peer during
	// an unseal (Epoch: the relayer's applied index when the share was
	// given, Fingerprint: the root commitments). The same attacker (a
	// peer's certificate at its address while it is down) would
	// otherwise collect every relayed custodian share.
	CustodianRelay Kind = "custodian-relay"
)

// Delivery names what a sealed share is bound to: its kind, the receiving
// node, the sending node, an epoch and a commitments fingerprint. A
// delivery opened with other values fails.
type Delivery struct {
	Kind        Kind
	Receiver    string
	Dealer      string
	Epoch       uint64
	Fingerprint string
}

func (d Delivery) info() []byte {
	var b bytes.Buffer
	b.WriteString("keyd share delivery v1\x00")
	for _, f := range []string{string(d.Kind), d.Receiver, d.Dealer, d.Fingerprint} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		b.Write(n[:])
		b.WriteString(f)
	}
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], d.Epoch)
	b.Write(e[:])
	return b.Bytes()
}

// NewDeliveryKey creates a delivery key pair.
func NewDeliveryKey() (*ecdh.PrivateKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sharex: delivery key: %w", err)
	}
	return k, nil
}

// ParseDeliveryKey parses a delivery public key.
func ParseDeliveryKey(pub []byte) (*ecdh.PublicKey, error) {
	k, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: delivery key", ErrMalformed)
	}
	return k, nil
}

// SealDelivery seals sh to the receiver's delivery public key, bound to d.
// It returns the ephemeral public key and the sealed share.
func SealDelivery(to []byte, d Delivery, sh shamir.Share) (ephemeral, sealed []byte, err error) {
	if len(to) != DeliveryKeySize {
		return nil, nil, fmt.Errorf("%w: delivery key", ErrMalformed)
	}
	return sealShare(to, d.info(), sh)
}

// OpenDelivery opens a share sealed by SealDelivery with the receiver's
// delivery private key. It returns ErrOpen for a share sealed to another
// key, bound to another receiver, dealer, epoch or dealing, or tampered
// with, and ErrMalformed for an ephemeral key of the wrong form.
func OpenDelivery(priv *ecdh.PrivateKey, d Delivery, ephemeral, sealed []byte) (shamir.Share, error) {
	if len(ephemeral) != DeliveryKeySize {
		return shamir.Share{}, fmt.Errorf("%w: ephemeral key", ErrMalformed)
	}
	return openShare(priv, ephemeral, sealed, d.info())
}
