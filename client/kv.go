package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/keyd/keyd/api"
)

// Versioned secrets (KV) and tokenization. Writes are routed to the
// leader with one request id across retries; reads go to any healthy
// node, at least as fresh as the client's last write.

func checkKVPath(path string) error {
	if !api.ValidKVPath(path) {
		return fmt.Errorf("client: invalid secret path: %w", api.ErrBadRequest)
	}
	return nil
}

// KVPut writes a new version of the secret at path. With cas non-nil the
// write applies only if the secret is at version *cas (0: only if it does
// not exist); otherwise it fails with api.ErrConflict and nothing
// changes.
func (c *Client) KVPut(ctx context.Context, path string, data map[string]string, cas *uint32) (*api.KVSecret, error) {
	if err := checkKVPath(path); err != nil {
		return nil, err
	}
	var out api.KVSecret
	in := api.KVWriteRequest{Data: data, CAS: cas}
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPut, path: api.PathKV + path, in: in, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// KVGet reads version (0: the latest) of the secret at path. A deleted,
// destroyed or missing version is api.ErrResourceNotFound.
func (c *Client) KVGet(ctx context.Context, path string, version uint32) (*api.KVSecret, error) {
	if err := checkKVPath(path); err != nil {
		return nil, err
	}
	p := api.PathKV + path
	if version != 0 {
		p += "?version=" + strconv.FormatUint(uint64(version), 10)
	}
	var out api.KVSecret
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: p, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// KVMetadata returns the secret's versions and settings (no value).
func (c *Client) KVMetadata(ctx context.Context, path string) (*api.KVMetadata, error) {
	if err := checkKVPath(path); err != nil {
		return nil, err
	}
	var out api.KVMetadata
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: api.PathKVMeta + path, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// KVConfigure changes the secret's max_versions or cas_required.
func (c *Client) KVConfigure(ctx context.Context, path string, req api.KVMetadataRequest) (*api.WriteResponse, error) {
	return c.kvWrite(ctx, http.MethodPut, api.PathKVMeta, path, req)
}

// KVDelete soft-deletes versions of the secret (none: the latest).
func (c *Client) KVDelete(ctx context.Context, path string, versions ...uint32) (*api.WriteResponse, error) {
	if err := checkKVPath(path); err != nil {
		return nil, err
	}
	p := api.PathKV + path
	if len(versions) > 0 {
		s := make([]string, len(versions))
		for i, v := range versions {
			s[i] = strconv.FormatUint(uint64(v), 10)
		}
		p += "?versions=" + strings.Join(s, ",")
	}
	var out api.WriteResponse
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodDelete, path: p, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// KVUndelete restores soft-deleted versions.
func (c *Client) KVUndelete(ctx context.Context, path string, versions ...uint32) (*api.WriteResponse, error) {
	return c.kvWrite(ctx, http.MethodPost, api.PathKVUndelete, path, api.KVVersionsRequest{Versions: versions})
}

// KVDestroy removes versions' values from the cluster's state for good.
func (c *Client) KVDestroy(ctx context.Context, path string, versions ...uint32) (*api.WriteResponse, error) {
	return c.kvWrite(ctx, http.MethodPost, api.PathKVDestroy, path, api.KVVersionsRequest{Versions: versions})
}

// KVDeleteAll removes the secret with every version and its settings.
func (c *Client) KVDeleteAll(ctx context.Context, path string) (*api.WriteResponse, error) {
	return c.kvWrite(ctx, http.MethodDelete, api.PathKVMeta, path, nil)
}

func (c *Client) kvWrite(ctx context.Context, method, base, path string, in any) (*api.WriteResponse, error) {
	if err := checkKVPath(path); err != nil {
		return nil, err
	}
	var out api.WriteResponse
	if err := c.do(ctx, call{pol: polWrite, method: method, path: base + path, in: in, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// KVList lists the secret paths starting with prefix that the caller may
// list or read, a page of up to limit (0: the server's maximum) after
// `after`.
func (c *Client) KVList(ctx context.Context, prefix, after string, limit int) (*api.KVList, error) {
	if len(prefix) > api.MaxKVPathLen || strings.ContainsAny(prefix, "?#%") {
		return nil, fmt.Errorf("client: invalid secret prefix: %w", api.ErrBadRequest)
	}
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	p := api.PathKVList + prefix
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var out api.KVList
	if err := c.do(ctx, call{pol: polRead, method: http.MethodGet, path: p, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// Tokenize stores value in the key's token vault and returns a new random
// token; ttl 0 means it never expires. Needs the tokenize capability.
func (c *Client) Tokenize(ctx context.Context, key, value string, ttl string) (*api.TokenizeResponse, error) {
	return c.TokenizeRequest(ctx, key, api.TokenizeRequest{Value: value, TTL: ttl})
}

// TokenizeRequest is Tokenize with every option (Deterministic: the
// same value gets the same token; see docs/KV.md).
func (c *Client) TokenizeRequest(ctx context.Context, key string, req api.TokenizeRequest) (*api.TokenizeResponse, error) {
	if err := checkName(key); err != nil {
		return nil, err
	}
	var out api.TokenizeResponse
	if err := c.do(ctx, call{pol: polWrite, method: http.MethodPost, path: api.KeyPath(key, "tokenize"), in: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// Detokenize returns the value a token of the key stands for. Needs the
// detokenize capability; an unknown or expired token is
// api.ErrResourceNotFound.
func (c *Client) Detokenize(ctx context.Context, key, token string) (string, error) {
	if err := checkName(key); err != nil {
		return "", err
	}
	var out api.DetokenizeResponse
	if err := c.do(ctx, call{pol: polRead, method: http.MethodPost, path: api.KeyPath(key, "detokenize"), in: api.DetokenizeRequest{Token: token}, out: &out}); err != nil {
		return "", err
	}
	return out.Value, nil
}
