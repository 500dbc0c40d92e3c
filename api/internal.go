package api

// Node-to-node routes. They are served on the API listener and accept
// only callers presenting a cluster node certificate of a current member
// (see docs/API.md, "Internal routes"). PathInternalAuditAnchor is in
// audit.go.
//
//	POST /v1/internal/unseal-share   UnsealRequest          a peer relays a custodian share it verified
//	POST /v1/internal/seal           {}                     a peer relays an operator seal
//	POST /v1/internal/node-share     NodeShareDelivery      the leader delivers a node share (sealed to the voter's pinned delivery key)
//	POST /v1/internal/delivery-key   {} -> DeliveryKey      the leader asks a voter for its delivery key, to pin it before the voter's first share
//	POST /v1/internal/share-request  sharex.Request -> sharex.Response   a rejoining voter asks for a node share
//	POST /v1/internal/deal-me-in     {} -> WriteResponse    a voter without a share of the current dealing asks the leader to deal
//	POST /v1/internal/audit-anchor   AuditAnchorRequest     a node anchors its audit chain through the leader
const (
	PathInternalUnsealShare  = "/v1/internal/unseal-share"
	PathInternalSeal         = "/v1/internal/seal"
	PathInternalNodeShare    = "/v1/internal/node-share"
	PathInternalShareRequest = "/v1/internal/share-request"
	PathInternalDealMeIn     = "/v1/internal/deal-me-in"
	PathInternalDeliveryKey  = "/v1/internal/delivery-key"
)

// DeliveryKey is a node's node-share delivery public key (X25519), whose
// private half only that node's HSM unwraps.
type DeliveryKey struct {
	Node      string `json:"node"`
	PublicKey []byte `json:"public_key"`
}
