package sharex

import (
	"bytes"
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
	shares, c := dealingF(f)
	proved, _, _ := NewRequest("n1", c.Fingerprint())
	if err := proved.Prove(c, shares[0]); err != nil {
		f.Fatal(err)
	}
	pb, _ := json.Marshal(proved)
	f.Add(pb)
	f.Add([]byte(`{"node_id":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(r.Ephemeral) != 32 || r.NodeID == "" || r.Index < 0 || r.Index > shamir.MaxShares || len(r.Proof) > shamir.ProofSize {
			t.Fatal("accepted an invalid request")
		}
		// Only the genuine proof verifies, and only for its own request.
		if VerifyProof(c, r, 1) == nil && (r.NodeID != proved.NodeID || !bytes.Equal(r.Ephemeral, proved.Ephemeral) || !bytes.Equal(r.Proof, proved.Proof)) {
			t.Fatal("a fuzzed request's proof verified")
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

// TestVerifyProof: a requester proves it holds its own share; a thief with
// the requester's identity but not its share, or replaying a captured
// proof with its own ephemeral key, is refused.
func TestVerifyProof(t *testing.T) {
	t.Parallel()
	shares, c := dealing(t)
	_, other := dealing(t)
	req, _, err := NewRequest("n1", c.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Prove(c, shares[0]); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(req)
	got, err := DecodeRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyProof(c, got, shares[0].Index); err != nil {
		t.Fatalf("genuine proof refused: %v", err)
	}

	// The thief cannot prove with a share it does not hold.
	thief, _, _ := NewRequest("n1", c.Fingerprint())
	if err := thief.Prove(c, shamir.Share{Index: 1, Value: shares[1].Value}); err == nil {
		t.Fatal("proved with a wrong share")
	}
	if err := thief.Prove(other, shares[0]); err == nil {
		t.Fatal("proved against another dealing")
	}
	// Nor replay the genuine proof with its own ephemeral key.
	replay := thief
	replay.Index, replay.Proof = req.Index, req.Proof
	// Another holder's genuine proof, claimed for n1.
	n2, _, _ := NewRequest("n2", c.Fingerprint())
	if err := n2.Prove(c, shares[1]); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		c     *shamir.Commitments
		req   func() Request
		index int
	}{
		{"no proof", c, func() Request { r := req; r.Index, r.Proof = 0, nil; return r }, 1},
		{"index only", c, func() Request { r := req; r.Proof = nil; return r }, 1},
		{"replayed with another ephemeral key", c, func() Request { return replay }, 1},
		{"replayed for another node", c, func() Request { r := req; r.NodeID = "n3"; return r }, 1},
		{"another holder's proof", c, func() Request { r := n2; r.NodeID = "n1"; return r }, 2},
		{"another holder's proof at the recorded index", c, func() Request { r := n2; r.NodeID = "n1"; r.Index = 1; return r }, 1},
		{"recorded index differs", c, func() Request { return req }, 2},
		{"another dealing", other, func() Request { return req }, 1},
		{"other fingerprint", c, func() Request { r := req; r.Fingerprint = "ffff"; return r }, 1},
		{"flipped proof", c, func() Request {
			r := req
			r.Proof = append([]byte(nil), req.Proof...)
			r.Proof[40] ^= 1
			return r
		}, 1},
		{"truncated proof", c, func() Request { r := req; r.Proof = req.Proof[:31]; return r }, 1},
		{"nil commitments", nil, func() Request { return req }, 1},
	}
	for _, tt := range tests {
		if err := VerifyProof(tt.c, tt.req(), tt.index); !errors.Is(err, ErrProof) {
			t.Errorf("%s: got %v, want ErrProof", tt.name, err)
		}
	}
	// Out-of-range index or an oversized proof is malformed on the wire.
	for _, mut := range []func(*Request){
		func(r *Request) { r.Index = -1 },
		func(r *Request) { r.Index = 256 },
		func(r *Request) { r.Proof = make([]byte, shamir.ProofSize+1) },
	} {
		r := req
		mut(&r)
		b, _ := json.Marshal(r)
		if _, err := DecodeRequest(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeRequest accepted %d/%d: %v", r.Index, len(r.Proof), err)
		}
	}
}
