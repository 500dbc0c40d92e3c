package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/keyd/keyd/api"
)

// FuzzKVWriteRequest decodes a KV write body as the HTTP layer does and
// checks the value: a typed error, or an encoding within the limits that
// decodes back to the same map.
func FuzzKVWriteRequest(f *testing.F) {
	for _, s := range []string{`{"data":{"a":"b"}}`, `{"data":{}}`, `{"data":{"":"x"}}`, `{"data":{"a":"b"},"cas":0}`, `{"data":null}`, `{"data":{"a":"\u0000"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d := json.NewDecoder(bytes.NewReader(body))
		d.DisallowUnknownFields()
		var req api.KVWriteRequest
		if d.Decode(&req) != nil {
			return
		}
		b, err := encodeKVValue(req.Data)
		if err != nil {
			var ae *api.Error
			if !errors.As(err, &ae) || (ae.Code != api.CodeBadRequest && ae.Code != api.CodeTooLarge) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(b) > api.MaxKVValueBytes || len(req.Data) == 0 || len(req.Data) > api.MaxKVFields {
			t.Fatalf("accepted a value outside the limits: %d bytes, %d fields", len(b), len(req.Data))
		}
		var back map[string]string
		if err := json.Unmarshal(b, &back); err != nil || len(back) != len(req.Data) {
			t.Fatalf("encoding does not decode back: %v", err)
		}
		for k, v := range req.Data {
			if back[k] != v {
				t.Fatalf("field %q changed", k)
			}
		}
	})
}
