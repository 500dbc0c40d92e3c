package api

// Routes. {name} is a key name: 1 to MaxKeyNameLen characters from
// [A-Za-z0-9._-], not starting with '.' or '-'.
//
//	GET  /v1/sys/health                       unauthenticated
//	GET  /v1/sys/status                       unauthenticated (SealStatus)
//	POST /v1/sys/init                         unauthenticated, once (InitRequest -> InitResponse)
//	POST /v1/sys/unseal                       unauthenticated; the share is the credential
//	POST /v1/sys/seal                         token; seals every reachable node
//	POST /v1/keys                             CreateKeyRequest -> KeyInfo
//	GET  /v1/keys?limit=N&after=NAME          KeyList
//	GET  /v1/keys/{name}[?consistent=true]    KeyInfo
//	POST /v1/keys/{name}/rotate               -> KeyInfo
//	POST /v1/keys/{name}/enable               -> KeyInfo
//	POST /v1/keys/{name}/disable              -> KeyInfo
//	POST /v1/keys/{name}/config               KeyConfigRequest -> KeyInfo
//	POST /v1/keys/{name}/schedule-deletion    ScheduleDeletionRequest -> KeyInfo
//	POST /v1/keys/{name}/cancel-deletion      -> KeyInfo
//	POST /v1/keys/{name}/encrypt              EncryptRequest -> EncryptResponse
//	POST /v1/keys/{name}/decrypt              DecryptRequest -> DecryptResponse
//	POST /v1/keys/{name}/reencrypt            DecryptRequest -> EncryptResponse
//	POST /v1/keys/{name}/datakey              DataKeyRequest -> DataKeyResponse
//	POST /v1/keys/{name}/sign                 SignRequest -> SignResponse
//	POST /v1/keys/{name}/verify               VerifyRequest -> VerifyResponse
//	POST /v1/keys/{name}/hmac                 SignRequest -> SignResponse
//	POST /v1/keys/{name}/verify-hmac          VerifyRequest -> VerifyResponse
//	POST /v1/keys/{name}/batch/{op}           op in encrypt, decrypt, reencrypt, datakey, sign, verify, hmac, verify-hmac
const (
	PathHealth = "/v1/sys/health"
	PathStatus = "/v1/sys/status"
	PathInit   = "/v1/sys/init"
	PathUnseal = "/v1/sys/unseal"
	PathSeal   = "/v1/sys/seal"
	PathKeys   = "/v1/keys"
)

// KeyPath returns /v1/keys/{name}[/suffix...]. The name is not escaped:
// valid names need no escaping.
func KeyPath(name string, suffix ...string) string {
	p := PathKeys + "/" + name
	for _, s := range suffix {
		p += "/" + s
	}
	return p
}

// ValidKeyName reports whether name is a valid key name.
func ValidKeyName(name string) bool {
	if len(name) == 0 || len(name) > MaxKeyNameLen || name[0] == '.' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
