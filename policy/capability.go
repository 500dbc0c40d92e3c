package policy

// Capability names one thing an identity may be allowed to do. Key
// capabilities apply to key names and are granted on key-name patterns;
// system capabilities apply to the cluster as a whole and take no key.
//
// The HTTP layer maps each route to exactly one capability:
//
//	encrypt     POST /v1/keys/{name}/encrypt (and batch/encrypt)
//	decrypt     POST /v1/keys/{name}/decrypt (and batch/decrypt)
//	rewrap      POST /v1/keys/{name}/reencrypt (and batch/reencrypt)
//	datakey     POST /v1/keys/{name}/datakey (and batch/datakey)
//	sign        POST /v1/keys/{name}/sign (and batch/sign)
//	verify      POST /v1/keys/{name}/verify, verify-hmac (and their batches)
//	hmac        POST /v1/keys/{name}/hmac (and batch/hmac)
//	pseudonym   POST /v1/keys/{name}/pseudonym
//	decrypt-masked
//	            POST /v1/keys/{name}/decrypt and batch/decrypt answer
//	            only a masked form, never the plaintext (when the caller
//	            lacks decrypt); no other route accepts it
//	(fpe/encrypt and fpe/decrypt take encrypt and decrypt)
//	create      POST /v1/keys
//	rotate      POST /v1/keys/{name}/rotate, enable, disable, config:
//	            every lifecycle change that is not a deletion
//	read        GET  /v1/keys/{name} and GET /v1/keys (listing shows only
//	            the names the identity may read)
//	delete      POST /v1/keys/{name}/schedule-deletion, cancel-deletion;
//	            also needed (with create or rotate) to set a retention
//	set-policy  writing and deleting policies: the writer needs set-policy
//	            on every key pattern the new and the replaced policy name
//	            (see [Covers])
//	cluster     join, remove, peers, seal
//	snapshot    taking and restoring snapshots
//	audit-read  reading and verifying the audit trail
//	token-admin creating and revoking tokens and identities; it binds only
//	            policies its holder has rights over ([Covers]), and is
//	            needed to grant any system capability
//
// verify-hmac is [Verify], not [HMAC], on purpose: checking a tag reveals
// only a yes or no, the same as verifying a signature. Custodian actions
// (unseal, root rotation, DR restore approval) have no capability at all:
// they are authorised by custodian shares, never by a token.
type Capability string

// Key capabilities. A rule granting any of them must name key patterns.
const (
	Encrypt Capability = "encrypt"
	Decrypt Capability = "decrypt"
	Rewrap  Capability = "rewrap"
	DataKey Capability = "datakey"
	Sign    Capability = "sign"
	Verify  Capability = "verify"
	HMAC    Capability = "hmac"
	// Pseudonym computes keyed pseudonyms (issue 14).
	Pseudonym Capability = "pseudonym"
	// DecryptMasked decrypts to a masked form only (issue 14).
	DecryptMasked Capability = "decrypt-masked"
	Create        Capability = "create"
	Rotate        Capability = "rotate" // also enable, disable and config
	Read          Capability = "read"
	Delete        Capability = "delete" // schedule and cancel deletion
	SetPolicy     Capability = "set-policy"
	// Versioned secrets (KV), granted on patterns over "kv/" + the
	// secret's path (for example "kv/app1/*"; '*' also matches '/').
	KVRead    Capability = "kv-read"    // GET /v1/kv/{path}, its metadata
	KVWrite   Capability = "kv-write"   // PUT/POST /v1/kv/{path}, metadata settings
	KVDelete  Capability = "kv-delete"  // soft delete and undelete
	KVDestroy Capability = "kv-destroy" // destroy versions, delete the whole secret
	KVList    Capability = "kv-list"    // see the path in GET /v1/kv-list/{prefix}
	// Tokenization, granted on key names. Tokenize never allows
	// detokenize.
	Tokenize   Capability = "tokenize"
	Detokenize Capability = "detokenize"
)

// System capabilities. A rule granting any of them must not name keys.
const (
	Cluster    Capability = "cluster"
	Snapshot   Capability = "snapshot"
	AuditRead  Capability = "audit-read"
	TokenAdmin Capability = "token-admin"
	// Metrics reads GET /v1/sys/metrics (Prometheus text format).
	Metrics Capability = "metrics"
)

// capIndex numbers the capabilities densely so a [Set] can index arrays
// instead of hashing strings on the request path.
type capIndex uint8

const (
	iEncrypt capIndex = iota
	iDecrypt
	iRewrap
	iDataKey
	iSign
	iVerify
	iHMAC
	iPseudonym
	iDecryptMasked
	iCreate
	iRotate
	iRead
	iDelete
	iSetPolicy
	iKVRead
	iKVWrite
	iKVDelete
	iKVDestroy
	iKVList
	iTokenize
	iDetokenize
	iCluster
	iSnapshot
	iAuditRead
	iTokenAdmin
	iMetrics
	numCaps
)

// numKeyCaps splits the index space: i < numKeyCaps is a key capability,
// the rest are system capabilities.
const numKeyCaps = iCluster

// allCaps lists every capability in index order.
var allCaps = [numCaps]Capability{
	Encrypt, Decrypt, Rewrap, DataKey, Sign, Verify, HMAC,
	Pseudonym, DecryptMasked,
	Create, Rotate, Read, Delete, SetPolicy,
	KVRead, KVWrite, KVDelete, KVDestroy, KVList, Tokenize, Detokenize,
	Cluster, Snapshot, AuditRead, TokenAdmin,
	Metrics,
}

// index returns c's index and whether c is a known capability. A switch
// on a string compiles to comparisons and does not allocate.
func (c Capability) index() (capIndex, bool) {
	switch c {
	case Encrypt:
		return iEncrypt, true
	case Decrypt:
		return iDecrypt, true
	case Rewrap:
		return iRewrap, true
	case DataKey:
		return iDataKey, true
	case Sign:
		return iSign, true
	case Verify:
		return iVerify, true
	case HMAC:
		return iHMAC, true
	case Pseudonym:
		return iPseudonym, true
	case DecryptMasked:
		return iDecryptMasked, true
	case Create:
		return iCreate, true
	case Rotate:
		return iRotate, true
	case Read:
		return iRead, true
	case Delete:
		return iDelete, true
	case SetPolicy:
		return iSetPolicy, true
	case KVRead:
		return iKVRead, true
	case KVWrite:
		return iKVWrite, true
	case KVDelete:
		return iKVDelete, true
	case KVDestroy:
		return iKVDestroy, true
	case KVList:
		return iKVList, true
	case Tokenize:
		return iTokenize, true
	case Detokenize:
		return iDetokenize, true
	case Cluster:
		return iCluster, true
	case Snapshot:
		return iSnapshot, true
	case AuditRead:
		return iAuditRead, true
	case TokenAdmin:
		return iTokenAdmin, true
	case Metrics:
		return iMetrics, true
	}
	return 0, false
}

// Known reports whether c is one of the capabilities this package defines.
func (c Capability) Known() bool {
	_, ok := c.index()
	return ok
}

// IsSystem reports whether c is a system capability (one that takes no
// key). It is false for unknown capabilities.
func (c Capability) IsSystem() bool {
	i, ok := c.index()
	return ok && i >= numKeyCaps
}

// isKV reports whether c is a versioned-secret capability, granted on
// "kv/" + path patterns.
func (c Capability) isKV() bool {
	switch c {
	case KVRead, KVWrite, KVDelete, KVDestroy, KVList:
		return true
	}
	return false
}
