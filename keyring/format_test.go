package keyring

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		in          string
		wantVersion uint32
		wantPayload []byte
		wantErr     error
	}{
		{"valid", "keyd:v1:AAEC", 1, []byte{0, 1, 2}, nil},
		{"padded", "keyd:v12:AAE=", 12, []byte{0, 1}, nil},
		{"max version", "keyd:v4294967295:AA==", 1<<32 - 1, []byte{0}, nil},
		{"empty", "", 0, nil, ErrMalformed},
		{"missing prefix", "v1:AAEC", 0, nil, ErrMalformed},
		{"wrong prefix case", "KEYD:v1:AAEC", 0, nil, ErrMalformed},
		{"vault prefix", "vault:v1:AAEC", 0, nil, ErrMalformed},
		{"prefix only", "keyd:v", 0, nil, ErrMalformed},
		{"version zero", "keyd:v0:AAEC", 0, nil, ErrMalformed},
		{"leading zero", "keyd:v01:AAEC", 0, nil, ErrMalformed},
		{"overflow", "keyd:v4294967296:AAEC", 0, nil, ErrMalformed},
		{"eleven digits", "keyd:v10000000000:AAEC", 0, nil, ErrMalformed},
		{"long digits", "keyd:v" + strings.Repeat("9", 40) + ":AAEC", 0, nil, ErrMalformed},
		{"sign", "keyd:v+1:AAEC", 0, nil, ErrMalformed},
		{"negative", "keyd:v-1:AAEC", 0, nil, ErrMalformed},
		{"no version", "keyd:v:AAEC", 0, nil, ErrMalformed},
		{"no separator", "keyd:v1", 0, nil, ErrMalformed},
		{"bad separator", "keyd:v1;AAEC", 0, nil, ErrMalformed},
		{"empty payload", "keyd:v1:", 0, nil, ErrMalformed},
		{"missing padding", "keyd:v1:AAE", 0, nil, ErrMalformed},
		{"url alphabet", "keyd:v1:-_-_", 0, nil, ErrMalformed},
		{"non-canonical bits", "keyd:v1:AAF=", 0, nil, ErrMalformed},
		{"trailing garbage", "keyd:v1:AAEC!", 0, nil, ErrMalformed},
		{"trailing padding block", "keyd:v1:AAEC====", 0, nil, ErrMalformed},
		{"trailing newline", "keyd:v1:AAEC\n", 0, nil, ErrMalformed},
		{"embedded newline", "keyd:v1:AA\nEC", 0, nil, ErrMalformed},
		{"embedded CR", "keyd:v1:AA\rEC", 0, nil, ErrMalformed},
		{"space", "keyd:v1: AAEC", 0, nil, ErrMalformed},
		{"second field", "keyd:v1:AAEC:AAEC", 0, nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, p, err := ParseText(tt.in)
			wantErr(t, "ParseText", err, tt.wantErr)
			if v != tt.wantVersion || !bytes.Equal(p, tt.wantPayload) {
				t.Fatalf("got v%d %x, want v%d %x", v, p, tt.wantVersion, tt.wantPayload)
			}
			if err == nil {
				if got := FormatText(v, p); got != tt.in {
					t.Fatalf("FormatText: got %q, want %q", got, tt.in)
				}
			}
		})
	}
}

func TestFormatTextRoundTrip(t *testing.T) {
	t.Parallel()
	for n := 1; n < 70; n++ {
		p := bytes.Repeat([]byte{byte(n), 0xfb}, n)[:n]
		for _, v := range []uint32{1, 9, 10, 99, 100, 1<<32 - 1} {
			s := FormatText(v, p)
			if got := textHeaderLen(v) + b64.EncodedLen(n); len(s) != got {
				t.Fatalf("got text length %d, want %d", len(s), got)
			}
			gv, gp, err := ParseText(s)
			if err != nil || gv != v || !bytes.Equal(gp, p) {
				t.Fatalf("round trip %q: got v%d %x %v, want v%d %x", s, gv, gp, err, v, p)
			}
		}
	}
}

func FuzzParseText(f *testing.F) {
	for _, s := range []string{"keyd:v1:AAEC", "keyd:v4294967295:AA==", "keyd:v01:AAEC", "keyd:v1:AA\nEC", "keyd:v1:", "", "keyd:v99999999999:AA=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, p, err := ParseText(s)
		if err != nil {
			if v != 0 || p != nil {
				t.Fatalf("got v%d %x with error %v, want zero values", v, p, err)
			}
			return
		}
		if v == 0 || len(p) == 0 {
			t.Fatalf("accepted version %d / payload length %d", v, len(p))
		}
		// The format is canonical: whatever parses re-formats to itself.
		if got := FormatText(v, p); got != s {
			t.Fatalf("FormatText(ParseText(%q)) = %q", s, got)
		}
	})
}
