package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/keyd/keyd/api"
)

// checkFastDecode asserts, for one body, what FuzzFastBatchDecode asserts:
// a body the fast decoder takes decodes with encoding/json alone to the
// same value, and decode (fast path then fallback) answers exactly as
// encoding/json alone, value and error.
func checkFastDecode(t *testing.T, body []byte) (encOK, decOK bool) {
	t.Helper()
	var fe api.BatchEncryptRequest
	encOK = fastDecode(body, &fe)
	var fd api.BatchDecryptRequest
	decOK = fastDecode(body, &fd)
	for _, c := range []struct {
		fast, full, slow any
		ok               bool
	}{
		{&fe, new(api.BatchEncryptRequest), new(api.BatchEncryptRequest), encOK},
		{&fd, new(api.BatchDecryptRequest), new(api.BatchDecryptRequest), decOK},
	} {
		slowErr := decodeJSON(body, c.slow)
		if c.ok {
			if slowErr != nil {
				t.Fatalf("fast decoder took %q, encoding/json refused it: %v", body, slowErr)
			}
			if !reflect.DeepEqual(c.fast, c.slow) {
				t.Fatalf("%q: fast %#v, encoding/json %#v", body, c.fast, c.slow)
			}
		}
		fullErr := decodeBody(body, c.full)
		if len(bytes.TrimSpace(body)) == 0 {
			// decode takes a blank body as {} before either decoder.
			if fullErr != nil || !reflect.DeepEqual(c.full, reflect.New(reflect.TypeOf(c.full).Elem()).Interface()) {
				t.Fatalf("%q: blank body gave %#v, %v", body, c.full, fullErr)
			}
			continue
		}
		if fmt.Sprint(fullErr) != fmt.Sprint(slowErr) {
			t.Fatalf("%q: decode error %v, encoding/json alone %v", body, fullErr, slowErr)
		}
		if !reflect.DeepEqual(c.full, c.slow) {
			t.Fatalf("%q: decode %#v, encoding/json alone %#v", body, c.full, c.slow)
		}
	}
	return encOK, decOK
}

func FuzzFastBatchDecode(f *testing.F) {
	for _, tc := range fastDecodeCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastDecode(t, body)
	})
}

// fastDecodeCases: enc and dec say whether the fast decoder takes the
// body as a batch encrypt or batch decrypt request; either way decode
// must answer as encoding/json does.
var fastDecodeCases = []struct {
	name, body string
	enc, dec   bool
}{
	{"empty object", `{}`, true, true},
	{"empty items", `{"items":[]}`, true, true},
	{"empty item", `{"items":[{}]}`, true, true},
	{"plaintext", `{"items":[{"plaintext":"aGVsbG8="}]}`, true, false},
	{"plaintext and context", `{"items":[{"plaintext":"aGVsbG8=","context":"Y3R4"},{"context":"","plaintext":""}]}`, true, false},
	{"ciphertext", `{"items":[{"ciphertext":"keyd:v1:AAAA","context":"Y3R4","mask":"last4"}]}`, false, true},
	{"whitespace", " \t\r\n{ \"items\" : [ { \"plaintext\" : \"QQ==\" } , { } ] } \n", true, false},
	{"escaped slash in base64", `{"items":[{"plaintext":"a\/8="}]}`, true, false},
	{"escaped newline in base64", `{"items":[{"plaintext":"aGVs\nbG8="}]}`, true, false},
	{"unicode escape in base64", `{"items":[{"plaintext":"\u0061GVsbG8="}]}`, true, false},
	{"escapes in ciphertext", `{"items":[{"ciphertext":"a\"b\\c\/d\b\f\n\r\t\u00e9\u0000"}]}`, false, true},
	{"surrogate pair", `{"items":[{"ciphertext":"\ud83d\ude00"}]}`, false, true},
	{"lone high surrogate", `{"items":[{"ciphertext":"\ud83d"}]}`, false, false},
	{"lone low surrogate", `{"items":[{"ciphertext":"\ude00x"}]}`, false, false},
	{"reversed surrogates", `{"items":[{"ciphertext":"\ude00\ud83d"}]}`, false, false},
	{"high then plain escape", `{"items":[{"ciphertext":"\ud83d\u0041"}]}`, false, false},
	{"bad escape", `{"items":[{"ciphertext":"\x"}]}`, false, false},
	{"short unicode escape", `{"items":[{"ciphertext":"\u12"}]}`, false, false},
	{"raw UTF-8", `{"items":[{"ciphertext":"é€😀"}]}`, false, true},
	{"invalid UTF-8", "{\"items\":[{\"ciphertext\":\"\xff\xfe\"}]}", false, false},
	{"control byte", "{\"items\":[{\"ciphertext\":\"a\x01\"}]}", false, false},
	{"null items", `{"items":null}`, false, false},
	{"null item", `{"items":[null]}`, false, false},
	{"null field", `{"items":[{"plaintext":null}]}`, false, false},
	{"duplicate field", `{"items":[{"plaintext":"QQ==","plaintext":"Qg=="}]}`, false, false},
	{"duplicate items", `{"items":[{"plaintext":"QQ=="}],"items":[{}]}`, false, false},
	{"other case", `{"Items":[{"Plaintext":"QQ=="}]}`, false, false},
	{"escaped key", `{"items":[{"pl\u0061intext":"QQ=="}]}`, false, false},
	{"unknown field", `{"items":[{"plaintext":"QQ==","extra":1}]}`, false, false},
	{"number", `{"items":[{"plaintext":1e999}]}`, false, false},
	{"huge number", `{"items":[{"mask":123456789012345678901234567890}]}`, false, false},
	{"bad base64", `{"items":[{"plaintext":"QQ"}]}`, false, false},
	{"base64 url alphabet", `{"items":[{"plaintext":"-_-_"}]}`, false, false},
	{"base64 inside padding", `{"items":[{"plaintext":"QQ==QQ=="}]}`, false, false},
	{"trailing comma in array", `{"items":[{},]}`, false, false},
	{"trailing comma in object", `{"items":[{"plaintext":"QQ==",}]}`, false, false},
	{"two values", `{"items":[]} {}`, false, false},
	{"trailing bracket", `{"items":[]}]`, false, false},
	{"truncated", `{"items":[{"plaintext":"QQ==`, false, false},
	{"truncated after item", `{"items":[{}`, false, false},
	{"truncated escape", `{"items":[{"ciphertext":"\`, false, false},
	{"not an object", `[]`, false, false},
	{"items not an array", `{"items":{}}`, false, false},
	{"item not an object", `{"items":["QQ=="]}`, false, false},
	{"whitespace only", " \n", false, false},
	{"unicode space around", "\u00a0{}", false, false},
}

func TestFastBatchDecodeCases(t *testing.T) {
	for _, tc := range fastDecodeCases {
		t.Run(tc.name, func(t *testing.T) {
			enc, dec := checkFastDecode(t, []byte(tc.body))
			if enc != tc.enc || dec != tc.dec {
				t.Fatalf("fast decoder took it as encrypt %v, decrypt %v; want %v, %v", enc, dec, tc.enc, tc.dec)
			}
		})
	}
}

// TestFastBatchDecodeSizes: the largest batch, and values that do not
// alias the body (which goes back to a pool).
func TestFastBatchDecodeSizes(t *testing.T) {
	items := make([]api.EncryptRequest, api.MaxBatchItems)
	for i := range items {
		items[i] = api.EncryptRequest{Plaintext: bytes.Repeat([]byte{byte(i)}, i%70), Context: []byte(fmt.Sprint(i))}
	}
	body, err := json.Marshal(api.BatchEncryptRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	if enc, _ := checkFastDecode(t, body); !enc {
		t.Fatal("fast decoder refused a max-size batch")
	}
	var got api.BatchEncryptRequest
	if !fastDecode(body, &got) {
		t.Fatal("refused")
	}
	for i := range body {
		body[i] = 'x'
	}
	if !reflect.DeepEqual(got.Items, items) {
		t.Fatal("decoded items changed with the body")
	}

	dItems := make([]api.DecryptRequest, api.MaxBatchItems+1)
	for i := range dItems {
		dItems[i] = api.DecryptRequest{Ciphertext: "keyd:v1:" + strings.Repeat("A", i%90), Mask: "full"}
	}
	body, err = json.Marshal(api.BatchDecryptRequest{Items: dItems})
	if err != nil {
		t.Fatal(err)
	}
	if _, dec := checkFastDecode(t, body); !dec {
		t.Fatal("fast decoder refused a large batch")
	}
	var gotD api.BatchDecryptRequest
	if !fastDecode(body, &gotD) {
		t.Fatal("refused")
	}
	for i := range body {
		body[i] = 'x'
	}
	if !reflect.DeepEqual(gotD.Items, dItems) {
		t.Fatal("decoded items changed with the body")
	}
}

// TestFastDecodeLeavesOthers: other request types and non-zero targets
// are not the fast decoder's.
func TestFastDecodeLeavesOthers(t *testing.T) {
	body := []byte(`{"items":[]}`)
	if fastDecode(body, new(api.BatchSignRequest)) {
		t.Fatal("took a sign request")
	}
	r := &api.BatchEncryptRequest{Items: []api.EncryptRequest{{}}}
	if fastDecode(body, r) || len(r.Items) != 1 {
		t.Fatal("took a non-zero target")
	}
}

// checkFastEncode asserts fastEncode writes what json.Encoder writes.
func checkFastEncode(t *testing.T, v any) {
	t.Helper()
	var want bytes.Buffer
	if err := json.NewEncoder(&want).Encode(v); err != nil {
		t.Fatal(err)
	}
	got, ok := fastEncode(nil, v)
	if !ok {
		return
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("fast %q\nencoding/json %q", got, want.Bytes())
	}
}

func FuzzFastBatchEncode(f *testing.F) {
	f.Add("keyd:v1:AAAA", uint32(1), []byte("pt"), "masked", "bad_request", "bad <ciphertext> & \"x\"", uint8(0))
	f.Add("", uint32(0), []byte{}, "", "", "", uint8(0xff))
	f.Add("\u2028\xff\x00é", uint32(1<<31), []byte{0, 1}, "\\", "c", "\t", uint8(0x5a))
	f.Fuzz(func(t *testing.T, s string, version uint32, pt []byte, masked, code, msg string, shape uint8) {
		e := &api.BatchItemError{Code: api.Code(code), Message: msg}
		var er api.BatchEncryptResponse
		var dr api.BatchDecryptResponse
		// shape picks, per item, which fields are set.
		for i := 0; i < 4; i++ {
			bits := shape >> (2 * i)
			ei := api.BatchEncryptItem{Ciphertext: s, Version: version}
			di := api.BatchDecryptItem{Plaintext: pt, Masked: masked, Ciphertext: s, Version: version}
			if bits&1 != 0 {
				ei.Error, di.Error = e, e
			}
			if bits&2 != 0 {
				ei, di = api.BatchEncryptItem{Error: e}, api.BatchDecryptItem{}
			}
			er.Results = append(er.Results, ei)
			dr.Results = append(dr.Results, di)
		}
		checkFastEncode(t, &er)
		checkFastEncode(t, &dr)
		checkFastEncode(t, &api.BatchEncryptResponse{Results: er.Results[:0]})
	})
}

func TestFastBatchEncodeCases(t *testing.T) {
	e := &api.BatchItemError{Code: api.CodeBadRequest, Message: "a <b> & \"c\" \u2028 \xff"}
	for _, v := range []any{
		&api.BatchEncryptResponse{Results: []api.BatchEncryptItem{}},
		&api.BatchEncryptResponse{Results: []api.BatchEncryptItem{{}, {Ciphertext: "keyd:v1:AA+/", Version: 4294967295}, {Error: e}}},
		&api.BatchDecryptResponse{Results: []api.BatchDecryptItem{{}, {Plaintext: []byte{}, Version: 1}, {Plaintext: []byte("\x00\xff"), Masked: "****1234", Ciphertext: "x", Version: 2, Error: e}}},
	} {
		if _, ok := fastEncode(nil, v); !ok {
			t.Fatalf("fastEncode refused %#v", v)
		}
		checkFastEncode(t, v)
	}
	for _, v := range []any{(*api.BatchEncryptResponse)(nil), &api.BatchDecryptResponse{}, &api.BatchSignResponse{}} {
		if _, ok := fastEncode(nil, v); ok {
			t.Fatalf("fastEncode took %#v", v)
		}
	}
}

func benchBody(b *testing.B) []byte {
	items := make([]api.EncryptRequest, 100)
	for i := range items {
		items[i] = api.EncryptRequest{Plaintext: bytes.Repeat([]byte{0x5a}, 64)}
	}
	body, err := json.Marshal(api.BatchEncryptRequest{Items: items})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkBatchDecode: a 100-item batch encrypt body of 64-byte
// plaintexts, as keyd-load's batch scenario sends.
func BenchmarkBatchDecode(b *testing.B) {
	body := benchBody(b)
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var r api.BatchEncryptRequest
			if err := decodeBody(body, &r); err != nil || len(r.Items) != 100 {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var r api.BatchEncryptRequest
			if err := decodeJSON(body, &r); err != nil || len(r.Items) != 100 {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBatchEncode: the reply to that batch.
func BenchmarkBatchEncode(b *testing.B) {
	resp := &api.BatchEncryptResponse{Results: make([]api.BatchEncryptItem, 100)}
	for i := range resp.Results {
		resp.Results[i] = api.BatchEncryptItem{Ciphertext: "keyd:v1:" + strings.Repeat("QUJD", 31), Version: 1}
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = fastEncode(buf[:0], resp)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			_ = json.NewEncoder(&buf).Encode(resp)
		}
	})
}

// TestFastJSONKnowsEveryField: fastjson.go names the fields of these types
// by hand. A field added to one of them must be added there too (the
// encoder would leave it out; the decoder would only fall back).
func TestFastJSONKnowsEveryField(t *testing.T) {
	for _, c := range []struct {
		v    any
		tags string
	}{
		{api.BatchEncryptRequest{}, "items"},
		{api.BatchDecryptRequest{}, "items"},
		{api.EncryptRequest{}, "plaintext context,omitempty"},
		{api.DecryptRequest{}, "ciphertext context,omitempty mask,omitempty"},
		{api.BatchEncryptResponse{}, "results"},
		{api.BatchDecryptResponse{}, "results"},
		{api.BatchEncryptItem{}, "ciphertext,omitempty version,omitempty error,omitempty"},
		{api.BatchDecryptItem{}, "plaintext,omitempty masked,omitempty ciphertext,omitempty version,omitempty error,omitempty"},
		{api.BatchItemError{}, "code message"},
	} {
		typ := reflect.TypeOf(c.v)
		var tags []string
		for i := range typ.NumField() {
			tags = append(tags, typ.Field(i).Tag.Get("json"))
		}
		if got := strings.Join(tags, " "); got != c.tags {
			t.Errorf("%s has fields %q; fastjson.go knows %q: update it", typ, got, c.tags)
		}
	}
}
