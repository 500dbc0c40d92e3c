package node_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/internal/testcluster"
)

// TestBadInput sends malformed and hostile requests to a single node, as
// a user would, and checks each gets a clear error with a stable code and
// changes nothing.
func TestBadInput(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	c.Init(t, 1, 1)
	c.Unseal(t, 1)
	ctx := ctxT(t)
	cl := c.Client(t)
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "off"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.DisableKey(ctx, "off"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateKey(ctx, api.CreateKeyRequest{Name: "signer", Type: "ed25519"}); err != nil {
		t.Fatal(err)
	}
	enc, err := cl.Encrypt(ctx, "k", []byte("secret"), []byte("ctx"))
	if err != nil {
		t.Fatal(err)
	}
	ct := enc.Ciphertext
	tampered := []byte(ct)
	tampered[len(tampered)-5] ^= 0x01
	if tampered[len(tampered)-5] == '=' {
		tampered[len(tampered)-6] ^= 0x01
	}

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLS()}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	base := "https://" + c.Slot(0).APIAddr
	jsonBody := func(v any) string { b, _ := json.Marshal(v); return string(b) }

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		token      string // "" uses the admin token; "-" sends none
		wantStatus int
		wantCode   api.Code
	}{
		{"no token", "POST", "/v1/keys/k/encrypt", `{"plaintext":"aGk="}`, "-", 401, api.CodeUnauthorized},
		{"wrong token", "POST", "/v1/keys/k/encrypt", `{"plaintext":"aGk="}`, "kd_wrong", 401, api.CodeUnauthorized},
		{"malformed json", "POST", "/v1/keys/k/encrypt", `{"plaintext":`, "", 400, api.CodeBadRequest},
		{"syntax error", "POST", "/v1/keys/k/encrypt", `{"plaintext" "x"}`, "", 400, api.CodeBadRequest},
		{"unknown field", "POST", "/v1/keys/k/encrypt", `{"plaintxt":"aGk="}`, "", 400, api.CodeBadRequest},
		{"wrong type", "POST", "/v1/keys/k/encrypt", `{"plaintext":42}`, "", 400, api.CodeBadRequest},
		{"not base64", "POST", "/v1/keys/k/encrypt", `{"plaintext":"***"}`, "", 400, api.CodeBadRequest},
		{"two values", "POST", "/v1/keys/k/encrypt", `{"plaintext":"aGk="}{}`, "", 400, api.CodeBadRequest},
		{"oversize body", "POST", "/v1/keys/k/encrypt", `{"plaintext":"` + strings.Repeat("A", api.MaxBodyBytes) + `"}`, "", 413, api.CodeTooLarge},
		{"unknown key", "POST", "/v1/keys/nope/encrypt", `{"plaintext":"aGk="}`, "", 404, api.CodeNotFound},
		{"truncated ciphertext", "POST", "/v1/keys/k/decrypt", jsonBody(api.DecryptRequest{Ciphertext: ct[:12], Context: []byte("ctx")}), "", 400, api.CodeDecrypt},
		{"tampered ciphertext", "POST", "/v1/keys/k/decrypt", jsonBody(api.DecryptRequest{Ciphertext: string(tampered), Context: []byte("ctx")}), "", 400, api.CodeDecrypt},
		{"wrong context", "POST", "/v1/keys/k/decrypt", jsonBody(api.DecryptRequest{Ciphertext: ct, Context: []byte("nope")}), "", 400, api.CodeDecrypt},
		{"unknown version", "POST", "/v1/keys/k/decrypt", jsonBody(api.DecryptRequest{Ciphertext: strings.Replace(ct, "keyd:v1:", "keyd:v9:", 1), Context: []byte("ctx")}), "", 400, api.CodeDecrypt},
		{"garbage ciphertext", "POST", "/v1/keys/k/decrypt", `{"ciphertext":"hello"}`, "", 400, api.CodeDecrypt},
		{"disabled key", "POST", "/v1/keys/off/encrypt", `{"plaintext":"aGk="}`, "", 409, api.CodeKeyDisabled},
		{"sign with aes key", "POST", "/v1/keys/k/sign", `{"message":"aGk="}`, "", 400, api.CodeUnsupported},
		{"encrypt with signing key", "POST", "/v1/keys/signer/encrypt", `{"plaintext":"aGk="}`, "", 400, api.CodeUnsupported},
		{"bad key name", "POST", "/v1/keys", `{"name":"../etc"}`, "", 400, api.CodeBadRequest},
		{"bad key type", "POST", "/v1/keys", `{"name":"new","type":"rot13"}`, "", 400, api.CodeBadRequest},
		{"bad rotation period", "POST", "/v1/keys", `{"name":"new","rotation_period":"soon"}`, "", 400, api.CodeBadRequest},
		{"duplicate key", "POST", "/v1/keys", `{"name":"k"}`, "", 409, api.CodeExists},
		{"rotate unknown", "POST", "/v1/keys/nope/rotate", ``, "", 404, api.CodeNotFound},
		{"min version too high", "POST", "/v1/keys/k/config", `{"min_decryption_version":7}`, "", 400, api.CodeBadRequest},
		{"deletion window too short", "POST", "/v1/keys/k/schedule-deletion", `{"pending_window":"1h"}`, "", 400, api.CodeBadRequest},
		{"cancel unscheduled", "POST", "/v1/keys/k/cancel-deletion", ``, "", 409, api.CodeConflict},
		{"bad batch op", "POST", "/v1/keys/k/batch/explode", `{"items":[]}`, "", 400, api.CodeBadRequest},
		{"empty batch", "POST", "/v1/keys/k/batch/encrypt", `{"items":[]}`, "", 400, api.CodeBadRequest},
		{"bad min index", "POST", "/v1/keys/k/encrypt", `{"plaintext":"aGk="}`, "minindex", 400, api.CodeBadRequest},
		{"bad datakey size", "POST", "/v1/keys/k/datakey", `{"bytes":7}`, "", 400, api.CodeBadRequest},
		{"init twice", "POST", "/v1/sys/init", `{"custodians":1,"threshold":1}`, "-", 409, api.CodeAlreadyInitialized},
		{"bad unseal share", "POST", "/v1/sys/unseal", `{"share":"keyd-share-v1-AAAA"}`, "-", 400, api.CodeInvalidShare},
		{"internal route without node cert", "POST", "/v1/internal/seal", `{}`, "-", 403, api.CodeForbidden},
		{"unknown path", "GET", "/v1/nothing", ``, "-", 404, api.CodeResourceNotFound},
	}
	before := stateOf(t, c)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, tt.method, base+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			switch tt.token {
			case "":
				req.Header.Set("Authorization", "Bearer "+c.Token)
			case "-":
			case "minindex":
				req.Header.Set("Authorization", "Bearer "+c.Token)
				req.Header.Set(api.HeaderMinIndex, "-1")
			default:
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var e api.Error
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("reply is not an api.Error: %q", body)
			}
			if resp.StatusCode != tt.wantStatus || e.Code != tt.wantCode {
				t.Fatalf("got %d %s (%s), want %d %s", resp.StatusCode, e.Code, e.Message, tt.wantStatus, tt.wantCode)
			}
			if e.Message == "" {
				t.Fatal("empty error message")
			}
			if bytes.Contains(body, []byte("secret")) || bytes.Contains(body, []byte(c.Token)) {
				t.Fatal("error reply echoes a secret")
			}
		})
	}
	if after := stateOf(t, c); after != before {
		t.Fatal("bad requests changed the replicated state")
	}

	// A sealed node refuses crypto calls with the sealed code.
	c.Node(0).SealLocal()
	if _, err := cl.Encrypt(ctx, "k", []byte("x"), nil); !errorsIsSealed(err) {
		t.Fatalf("sealed node: got %v", err)
	}
}

func stateOf(t *testing.T, c *testcluster.Cluster) string {
	t.Helper()
	var b bytes.Buffer
	if err := c.Node(0).DumpState(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
