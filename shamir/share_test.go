package shamir

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// fixedShare is a deterministic share so typo tests are reproducible.
func fixedShare() Share {
	v := make([]byte, 32)
	for i := range v {
		v[i] = byte(i + 1)
	}
	v[31] = 0x0f // below the group order
	return Share{Index: 3, Value: v}
}

// goldenShare pins the v1 text format: changing the encoding breaks every
// custodian's printed share, so it must not change silently.
const goldenShare = "keyd-share-v1-AQMBAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fD9wi8V8"

// payload builds a binary share payload with a correct checksum.
func payload(version, index byte, value []byte) []byte {
	b := append([]byte{version, index}, value...)
	sum := sha256.Sum256(b)
	return append(b, sum[:4]...)
}

func TestEncodeShareGolden(t *testing.T) {
	t.Parallel()
	if got := EncodeShare(fixedShare()); got != goldenShare {
		t.Fatalf("EncodeShare: got %q, want %q", got, goldenShare)
	}
	got, err := DecodeShare(goldenShare)
	if err != nil {
		t.Fatalf("DecodeShare: %v", err)
	}
	if want := fixedShare(); got.Index != want.Index || !bytes.Equal(got.Value, want.Value) {
		t.Fatalf("DecodeShare: got index %d, want %d (or values differ)", got.Index, want.Index)
	}
}

func TestShareEncodingRoundTrip(t *testing.T) {
	t.Parallel()
	_, shares, c := deal(t, 3, 5)
	for _, sh := range shares {
		text := EncodeShare(sh)
		if got, want := len(text), len(ShareTextPrefix)+51; got != want {
			t.Fatalf("share %d: got %d characters, want %d", sh.Index, got, want)
		}
		for _, in := range []string{text, "  " + text + "\n", "\t" + text + "\r\n"} {
			got, err := DecodeShare(in)
			if err != nil {
				t.Fatalf("DecodeShare(share %d): %v", sh.Index, err)
			}
			if got.Index != sh.Index || !bytes.Equal(got.Value, sh.Value) {
				t.Fatalf("DecodeShare(share %d): got a different share", sh.Index)
			}
			if err := c.Verify(got); err != nil {
				t.Fatalf("Verify(decoded share %d): %v", sh.Index, err)
			}
		}
		bin, err := sh.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(bin), 38; got != want {
			t.Fatalf("binary length: got %d, want %d", got, want)
		}
		got, err := UnmarshalShare(bin)
		if err != nil || got.Index != sh.Index || !bytes.Equal(got.Value, sh.Value) {
			t.Fatalf("UnmarshalShare: got error %v or a different share", err)
		}
		// The decoded share must not alias the input buffer.
		clear(bin)
		if bytes.Equal(got.Value, make([]byte, 32)) {
			t.Fatal("UnmarshalShare aliases its input")
		}
	}
}

func TestShareRefusesJSON(t *testing.T) {
	t.Parallel()
	for _, v := range []any{fixedShare(), []Share{fixedShare()}, struct{ S *Share }{&Share{Index: 1, Value: fixedShare().Value}}} {
		b, err := json.Marshal(v)
		if err == nil {
			t.Fatalf("json.Marshal(%T): got %s, want an error", v, b)
		}
	}
}

// TestDecodeShareTypos changes every character after the prefix to several
// other base64url characters; the checksum (or strict base64) must catch each.
func TestDecodeShareTypos(t *testing.T) {
	t.Parallel()
	text := EncodeShare(fixedShare())
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	tried := 0
	for i := len(ShareTextPrefix); i < len(text); i++ {
		for _, r := range []byte{'A', 'b', '7', '-', '_', alphabet[(strings.IndexByte(alphabet, text[i])+1)%64]} {
			if r == text[i] {
				continue
			}
			typo := text[:i] + string(r) + text[i+1:]
			tried++
			_, err := DecodeShare(typo)
			if !errors.Is(err, ErrShareEncoding) {
				t.Fatalf("typo at %d: got %v, want %v", i, err, ErrShareEncoding)
			}
			if strings.Contains(err.Error(), text[len(ShareTextPrefix):len(ShareTextPrefix)+8]) {
				t.Fatalf("typo at %d: error %q echoes the share", i, err)
			}
		}
	}
	if tried < 51*4 {
		t.Fatalf("tried %d typos, want at least %d", tried, 51*4)
	}
	// A swap of two adjacent different characters is caught too.
	i := len(ShareTextPrefix) + 10
	if text[i] != text[i+1] {
		swapped := text[:i] + string(text[i+1]) + string(text[i]) + text[i+2:]
		if _, err := DecodeShare(swapped); !errors.Is(err, ErrShareEncoding) {
			t.Fatalf("swap: got %v, want %v", err, ErrShareEncoding)
		}
	}
}

func TestDecodeShareMalformed(t *testing.T) {
	t.Parallel()
	text := EncodeShare(fixedShare())
	body := text[len(ShareTextPrefix):]
	value := fixedShare().Value
	b64Payload := func(p []byte) string { return ShareTextPrefix + b64.EncodeToString(p) }
	tests := []struct {
		name    string
		in      string
		wantMsg string // which check must be named
	}{
		{"empty", "", "prefix"},
		{"prefix only", ShareTextPrefix, "characters"},
		{"no prefix", body, "prefix"},
		{"upper-case prefix", strings.ToUpper(ShareTextPrefix) + body, "prefix"},
		{"future version", "keyd-share-v2-" + body, "version"},
		{"truncated by one", text[:len(text)-1], "truncated"},
		{"truncated by four", text[:len(text)-4], "truncated"},
		{"extended", text + "A", "extended"},
		{"embedded newline", text[:30] + "\n" + text[30:], "character"},
		{"embedded space", text[:30] + " " + text[30:], "character"},
		{"padding", text + "=", "character"},
		{"std base64 alphabet", text[:30] + "+" + text[31:], "character"},
		{"version 2 payload", b64Payload(payload(2, 3, value)), "version"},
		{"index 0", b64Payload(payload(1, 0, value)), "index"},
		{"non-canonical value", b64Payload(payload(1, 3, bytes.Repeat([]byte{0xff}, 32))), "canonical"},
		{"checksum", b64Payload(append(payload(1, 3, value)[:34], 0, 0, 0, 0)), "checksum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeShare(tt.in)
			if !errors.Is(err, ErrShareEncoding) {
				t.Fatalf("got %v, want %v", err, ErrShareEncoding)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q: want it to name the %q check", err, tt.wantMsg)
			}
			if got.Value != nil || got.Index != 0 {
				t.Fatal("got a share with an error")
			}
		})
	}
}

func TestMarshalShareErrors(t *testing.T) {
	t.Parallel()
	v := fixedShare().Value
	tests := []struct {
		name string
		sh   Share
	}{
		{"index 0", Share{Index: 0, Value: v}},
		{"index 256", Share{Index: 256, Value: v}},
		{"negative index", Share{Index: -3, Value: v}},
		{"nil value", Share{Index: 1}},
		{"short value", Share{Index: 1, Value: v[:31]}},
		{"non-canonical value", Share{Index: 1, Value: bytes.Repeat([]byte{0xff}, 32)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := tt.sh.MarshalBinary(); !errors.Is(err, ErrShareEncoding) {
				t.Fatalf("MarshalBinary: got %v, want %v", err, ErrShareEncoding)
			}
			if _, err := tt.sh.encodeText(); !errors.Is(err, ErrShareEncoding) {
				t.Fatalf("encodeText: got %v, want %v", err, ErrShareEncoding)
			}
			if got := EncodeShare(tt.sh); got != "" {
				t.Fatalf("EncodeShare: got %q, want empty", got)
			}
		})
	}
}

func TestShareDestroy(t *testing.T) {
	t.Parallel()
	sh := fixedShare()
	cp := sh // copies alias Value
	sh.Destroy()
	if !bytes.Equal(cp.Value, make([]byte, 32)) {
		t.Fatal("Destroy: got non-zero value, want zeros")
	}
	Share{}.Destroy() // must not panic
}
