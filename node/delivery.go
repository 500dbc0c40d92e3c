package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
	"github.com/keyd/keyd/hsmbridge"
	"github.com/keyd/keyd/sharex"
)

// Delivery keys (README, "Delivery keys"): every node with an HSM has an
// X25519 key pair whose private half only its HSM unwraps; the leader
// pins each member's public half through Raft (write once) and every node
// share it deals, and every custodian share a node relays, is sealed to
// the receiver's pinned key. A node's certificate is a file on its disk;
// without its HSM it receives nothing usable.

// deliveryState is the leader's pinning state and this node's check of
// its own pin.
type deliveryState struct {
	// pinBy spaces the attempts to pin a member that has not answered
	// with a key (down, or without an HSM).
	pinBy voterBackoff
	// refusedBy spaces re-dealings for a voter that refused the share it
	// was dealt (it cannot open it: its key or HSM is gone), so it does
	// not make the leader re-deal on every check.
	refusedBy voterBackoff

	mu sync.Mutex
	// checked is the pin last compared with this node's own key, and
	// problem the result ("" when they match).
	checked []byte
	problem string
	// told holds the members whose failure to answer with a key was
	// logged (once per member until it is pinned).
	told map[string]bool
	// ownPub is this node's delivery public key once read, so that
	// answering the route costs no HSM unwrap.
	ownPub []byte
}

// tell reports whether id's failure to be pinned is news to the log.
func (d *deliveryState) tell(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.told[id] {
		return false
	}
	if d.told == nil {
		d.told = map[string]bool{}
	}
	d.told[id] = true
	return true
}

// pinMembers pins the delivery key of every member of the Raft
// configuration (voters and non-voters, this node included) that has
// none pinned yet: as soon as it joins, whether the cluster is sealed or
// not, so relays of a cold unseal are sealed to it and the window in
// which a stolen certificate could pin a key of its own is the moment the
// node joins. A member that does not answer with a key (down, no HSM) is
// asked again later, backing off to the node-share interval times 32.
// Leader only.
func (n *Node) pinMembers(ctx context.Context) {
	servers, ok := n.raftServers()
	if !ok {
		return
	}
	now := time.Now()
	for id := range servers {
		if n.fsm.Removed(id) || id == n.cfg.NodeID && n.hsm.dev == nil {
			continue
		}
		if pub, err := n.fsm.DeliveryKey(id); err != nil || pub != nil {
			continue
		}
		if !n.sealer.delivery.pinBy.allow(id, now, 32*n.cfg.NodeShareInterval) {
			continue
		}
		// Bounded: a member that is down must not hold up the others or
		// the dealing check.
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := n.pinDeliveryKey(cctx, id)
		cancel()
		if err != nil {
			if n.sealer.delivery.tell(id) {
				n.log.Debug("member's delivery key not pinned yet (asked again later)", "peer", id, "err", err)
			}
			continue
		}
		n.sealer.delivery.pinBy.forget(id)
	}
}

// deliveryKeys returns the receivers the leader can seal a node share to
// and their pinned delivery keys (this node needs none: it stores its own
// share directly). A voter not pinned yet is pinned now; one that cannot
// be asked is left out of this dealing. A voter whose data directory or
// HSM was replaced no longer opens what is sealed to its pin and is never
// a holder again under that id (it rejoins under a new node id).
func (n *Node) deliveryKeys(ctx context.Context, receivers []string) (ok []string, keys map[string][]byte) {
	keys = map[string][]byte{}
	for _, id := range receivers {
		pub, err := n.fsm.DeliveryKey(id)
		if err != nil {
			n.log.Warn("reading a voter's pinned delivery key", "peer", id, "err", err)
			continue
		}
		if pub == nil {
			pub, err = n.pinDeliveryKey(ctx, id)
		}
		switch {
		case id == n.cfg.NodeID:
			// Its own share is stored directly; the pin is for the
			// leaders and relays after this one.
			if err != nil {
				n.log.Info("own delivery key not pinned", "err", err)
			}
		case err != nil:
			n.log.Info("voter's delivery key not pinned: left out of this dealing", "peer", id, "err", err)
			continue
		default:
			keys[id] = pub
		}
		ok = append(ok, id)
	}
	return ok, keys
}

// pinDeliveryKey asks member id (or this node's vault) for its delivery
// key and pins it through Raft (write once: a different key already
// pinned is fsm.ErrConflict).
func (n *Node) pinDeliveryKey(ctx context.Context, id string) ([]byte, error) {
	var dk api.DeliveryKey
	if id == n.cfg.NodeID {
		own, err := n.DeliveryKey(ctx)
		if err != nil {
			return nil, err
		}
		dk = *own
	} else if err := n.peers.postJSON(ctx, id, api.PathInternalDeliveryKey, []byte("{}"), &dk); err != nil {
		return nil, err
	}
	if dk.Node != id {
		return nil, fmt.Errorf("node: %s answered with the delivery key of %q", id, dk.Node)
	}
	if _, err := sharex.ParseDeliveryKey(dk.PublicKey); err != nil || len(dk.PublicKey) != sharex.DeliveryKeySize {
		return nil, fmt.Errorf("node: %s answered a malformed delivery key", id)
	}
	if _, err := n.apply(ctx, &fsm.PinDeliveryKey{Meta: fsm.Meta{At: time.Now().UTC()}, Node: id, PublicKey: dk.PublicKey}); err != nil {
		return nil, err
	}
	n.log.Info("delivery key pinned", "peer", id)
	return dk.PublicKey, nil
}

// DeliveryKey answers PathInternalDeliveryKey: this node's delivery
// public key, made (and wrapped by the HSM) on first use, but never once
// a key is pinned for this node: a lost key cannot be replaced under the
// same node id.
func (n *Node) DeliveryKey(ctx context.Context) (*api.DeliveryKey, error) {
	if n.removedSelf() {
		return nil, errRemoved
	}
	if n.hsm.dev == nil {
		return nil, &api.Error{Code: api.CodeUnavailable, Message: "this node has no HSM, so no delivery key"}
	}
	d := &n.sealer.delivery
	d.mu.Lock()
	pub := d.ownPub
	d.mu.Unlock()
	if pub != nil {
		return &api.DeliveryKey{Node: n.cfg.NodeID, PublicKey: pub}, nil
	}
	pinned, err := n.fsm.DeliveryKey(n.cfg.NodeID)
	if err != nil {
		return nil, err
	}
	pub, err = n.vault().DeliveryPublic(ctx, pinned == nil)
	if err != nil {
		if pinned != nil && errors.Is(err, os.ErrNotExist) {
			return nil, &api.Error{Code: api.CodeConflict, Message: errLostDeliveryKey}
		}
		return nil, &api.Error{Code: api.CodeUnavailable, Message: "this node's delivery key is unavailable: " + err.Error()}
	}
	d.mu.Lock()
	d.ownPub = pub
	d.mu.Unlock()
	return &api.DeliveryKey{Node: n.cfg.NodeID, PublicKey: pub}, nil
}

const errLostDeliveryKey = "this node's delivery key is lost or is not the one pinned for it (its data directory or HSM was replaced): node shares and relayed custodian shares sealed to it cannot be opened; remove the node and add the machine back under a new node id"

// checkOwnPin compares the key pinned for this node with its own, once
// per pin, and remembers a mismatch for status (deliveryProblem): a node
// whose data directory or HSM was replaced, or whose key an impostor
// pinned before it joined, can never open what is sealed to it.
func (n *Node) checkOwnPin(ctx context.Context) {
	if n.hsm.dev == nil {
		return
	}
	pinned, err := n.fsm.DeliveryKey(n.cfg.NodeID)
	if err != nil || pinned == nil {
		return
	}
	d := &n.sealer.delivery
	d.mu.Lock()
	done := bytes.Equal(d.checked, pinned)
	d.mu.Unlock()
	if done {
		return
	}
	own, err := n.vault().DeliveryPublic(ctx, false)
	problem := ""
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, hsmbridge.ErrUnwrap) || err == nil && !bytes.Equal(own, pinned):
		problem = "off: " + errLostDeliveryKey
		n.log.Error("delivery key mismatch: this node cannot receive node shares or relayed custodian shares", "reason", errLostDeliveryKey)
	case err != nil:
		return // the HSM may be down: look again on the next check
	}
	d.mu.Lock()
	d.checked, d.problem = pinned, problem
	d.mu.Unlock()
}

// openFailed turns a failure to open a sealed share (what) into the API
// error the sender sees: invalid_share for a share that does not open,
// conflict when this node's delivery key is gone or its HSM is not the one
// that wrapped it (permanent: the sender backs off), unavailable
// otherwise (the HSM may come back).
func openFailed(what string, err error) error {
	switch {
	case errors.Is(err, sharex.ErrOpen), errors.Is(err, sharex.ErrMalformed):
		return &api.Error{Code: api.CodeInvalidShare, Message: what + " does not open with this node's delivery key"}
	case errors.Is(err, os.ErrNotExist), errors.Is(err, hsmbridge.ErrUnwrap):
		return &api.Error{Code: api.CodeConflict, Message: errLostDeliveryKey}
	}
	return &api.Error{Code: api.CodeUnavailable, Message: "cannot open the " + what + ": " + err.Error()}
}

// deliveryProblem is checkOwnPin's finding ("" when none).
func (n *Node) deliveryProblem() string {
	d := &n.sealer.delivery
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.problem
}
