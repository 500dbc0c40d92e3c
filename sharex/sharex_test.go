package sharex

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"

	"github.com/keyd/keyd/shamir"
)

func dealing(t *testing.T) ([]shamir.Share, *shamir.Commitments) {
	t.Helper()
	s, err := shamir.NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	shares, c, err := shamir.Split(s, 2, 3, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return shares, c
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	shares, c := dealing(t)
	req, priv, err := NewRequest("n1", c.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(req)
	got, err := DecodeRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := Seal(got, "n2", shares[1])
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := json.Marshal(resp)
	resp2, err := DecodeResponse(rb)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := Open(priv, req, resp2)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(sh); err != nil || sh.Index != shares[1].Index {
		t.Fatalf("opened share does not verify: %v", err)
	}
}

func TestOpenRejects(t *testing.T) {
	t.Parallel()
	shares, c := dealing(t)
	req, priv, _ := NewRequest("n1", c.Fingerprint())
	resp, err := Seal(req, "n2", shares[1])
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, _ := NewRequest("n1", c.Fingerprint())
	tests := []struct {
		name string
		priv func() any
		req  func() Request
		resp func() Response
	}{
		{"other private key", func() any { return otherPriv }, func() Request { return req }, func() Response { return resp }},
		{"other requester", nil, func() Request { r := req; r.NodeID = "n3"; return r }, func() Response { return resp }},
		{"other responder", nil, func() Request { return req }, func() Response { r := resp; r.Responder = "n3"; return r }},
		{"other dealing", nil, func() Request { r := req; r.Fingerprint = "ffff"; return r }, func() Response { r := resp; r.Fingerprint = "ffff"; return r }},
		{"flipped bit", nil, func() Request { return req }, func() Response {
			r := resp
			r.Sealed = append([]byte(nil), resp.Sealed...)
			r.Sealed[len(r.Sealed)-1] ^= 1
			return r
		}},
		{"truncated", nil, func() Request { return req }, func() Response { r := resp; r.Sealed = resp.Sealed[:10]; return r }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := priv
			if tt.priv != nil {
				p = otherPriv
			}
			if _, err := Open(p, tt.req(), tt.resp()); !errors.Is(err, ErrOpen) {
				t.Fatalf("got %v, want ErrOpen", err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	for _, b := range []string{``, `{}`, `{"node_id":"n1","fingerprint":"ab","ephemeral":"AAAA"}`, `{"node_id":"n1","fingerprint":"ab","ephemeral":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","x":1}`, `[1]`} {
		if _, err := DecodeRequest([]byte(b)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeRequest(%q): got %v", b, err)
		}
		if _, err := DecodeResponse([]byte(b)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeResponse(%q): got %v", b, err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	req, _, _ := NewRequest("n1", "abcd")
	b, _ := json.Marshal(req)
	f.Add(b)
	f.Add([]byte(`{"node_id":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(r.Ephemeral) != 32 || r.NodeID == "" {
			t.Fatal("accepted an invalid request")
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	shares, c := dealingF(f)
	req, _, _ := NewRequest("n1", c.Fingerprint())
	resp, _ := Seal(req, "n2", shares[0])
	b, _ := json.Marshal(resp)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResponse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		_, priv, _ := NewRequest("n1", r.Fingerprint)
		if _, err := Open(priv, Request{NodeID: "n1", Fingerprint: r.Fingerprint, Ephemeral: priv.PublicKey().Bytes()}, r); err == nil {
			t.Fatal("opened a fuzzed response")
		}
	})
}

func dealingF(f *testing.F) ([]shamir.Share, *shamir.Commitments) {
	s, _ := shamir.NewSecret(rand.Reader)
	shares, c, err := shamir.Split(s, 2, 3, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	return shares, c
}
