package api

import (
	"strings"
	"time"
)

// Versioned secrets (KV) and tokenization. See docs/KV.md.
//
// Routes (PATH is a secret path like "app1/db": segments of
// [A-Za-z0-9._-] separated by '/'):
//
//	PUT|POST /v1/kv/PATH             write a new version (KVWriteRequest)
//	GET      /v1/kv/PATH[?version=N] read the latest or version N
//	DELETE   /v1/kv/PATH[?versions=1,2] soft-delete the latest or the listed versions
//	POST     /v1/kv-undelete/PATH    undelete versions (KVVersionsRequest)
//	POST     /v1/kv-destroy/PATH     destroy versions for good (KVVersionsRequest)
//	GET      /v1/kv-meta/PATH        versions and settings (KVMetadata)
//	PUT|POST /v1/kv-meta/PATH        change max_versions / cas_required
//	DELETE   /v1/kv-meta/PATH        remove the secret and every version
//	GET      /v1/kv-list/[PREFIX]    list paths starting with PREFIX
//	POST     /v1/keys/{name}/tokenize    {"value","ttl"} -> {"token"}
//	POST     /v1/keys/{name}/detokenize  {"token"} -> {"value"}
const (
	PathKV         = "/v1/kv/"
	PathKVUndelete = "/v1/kv-undelete/"
	PathKVDestroy  = "/v1/kv-destroy/"
	PathKVMeta     = "/v1/kv-meta/"
	PathKVList     = "/v1/kv-list/"
)

// Limits of a secret's value.
const (
	// MaxKVValueBytes bounds a secret version's value, JSON-encoded.
	MaxKVValueBytes = 64 << 10
	// MaxKVFields bounds the fields of one value.
	MaxKVFields = 256
	// MaxKVFieldName bounds a field name.
	MaxKVFieldName = 128
	// MaxTokenizeValue bounds a tokenized value.
	MaxTokenizeValue = 4 << 10
)

// KVWriteRequest writes a new version. With CAS set the write applies
// only if the secret's current version is *CAS (0: only if the secret
// does not exist yet); otherwise it fails with CodeConflict and changes
// nothing.
type KVWriteRequest struct {
	Data map[string]string `json:"data"`
	CAS  *uint32           `json:"cas,omitempty"`
}

// KVSecret is one version of a secret.
type KVSecret struct {
	Path      string            `json:"path"`
	Version   uint32            `json:"version"`
	Data      map[string]string `json:"data,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	// Index is the Raft index of the write (on a write) or the applied
	// index the read was served at.
	Index uint64 `json:"index"`
}

// KVVersionInfo describes one kept version of a secret.
type KVVersionInfo struct {
	Version   uint32     `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
	Destroyed bool       `json:"destroyed,omitempty"`
}

// KVMetadata is a secret's metadata: never a value.
type KVMetadata struct {
	Path           string          `json:"path"`
	CurrentVersion uint32          `json:"current_version"`
	MaxVersions    int             `json:"max_versions"`
	CASRequired    bool            `json:"cas_required"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	Versions       []KVVersionInfo `json:"versions"`
	Index          uint64          `json:"index"`
}

// KVVersionsRequest names versions to undelete or destroy.
type KVVersionsRequest struct {
	Versions []uint32 `json:"versions"`
}

// KVMetadataRequest changes a secret's settings; nil fields stay.
type KVMetadataRequest struct {
	MaxVersions *int  `json:"max_versions,omitempty"`
	CASRequired *bool `json:"cas_required,omitempty"`
}

// KVList is a page of secret paths.
type KVList struct {
	Paths []string `json:"paths"`
	Next  string   `json:"next,omitempty"`
	Index uint64   `json:"index"`
}

// TokenizeRequest asks for a token standing for Value. TTL is a Go
// duration ("720h"); empty: the token does not expire.
//
// Deterministic asks for the value's existing token, if it has one (made
// by an earlier deterministic call on the same key), and otherwise for a
// new token that later deterministic calls will answer. It reveals which
// values are equal; see docs/KV.md.
type TokenizeRequest struct {
	Value         string `json:"value"`
	TTL           string `json:"ttl,omitempty"`
	Deterministic bool   `json:"deterministic,omitempty"`
}

// TokenizeResponse carries the new token.
type TokenizeResponse struct {
	Token     string     `json:"token"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Index     uint64     `json:"index"`
}

// DetokenizeRequest asks for the value a token stands for.
type DetokenizeRequest struct {
	Token string `json:"token"`
}

// DetokenizeResponse carries the value.
type DetokenizeResponse struct {
	Value string `json:"value"`
}

// MaxKVPathLen bounds a secret path.
const MaxKVPathLen = 256

// ValidKVPath reports whether p is a secret path: 1 to MaxKVPathLen
// bytes, segments separated by '/', each segment 1 to 128 characters of
// [A-Za-z0-9._-] and neither "." nor "..". No leading or trailing '/'.
// Paths go into URLs unescaped, so this also keeps a path from changing
// the route.
func ValidKVPath(p string) bool {
	if len(p) == 0 || len(p) > MaxKVPathLen {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if len(seg) == 0 || len(seg) > 128 || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}
