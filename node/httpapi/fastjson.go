package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/keyd/keyd/api"
)

// A hand-written decoder for the hot batch bodies (api.BatchEncryptRequest,
// api.BatchDecryptRequest) and encoder for their replies: encoding/json's
// reflection spent most of a 100-item batch's server time (issue 12).
//
// The decoder accepts only a strict subset of JSON: the field names exactly
// as in the json tags (encoding/json also matches other cases), each at most
// once, strings of valid UTF-8 with the ordinary escapes, standard base64 for
// []byte, no null and no number. On anything else it answers "not mine"
// (false) and the caller decodes with encoding/json as before, with the same
// errors and limits. Whatever it accepts, encoding/json accepts too and
// decodes to a reflect.DeepEqual value (FuzzFastBatchDecode checks this).
// The decoded values never alias the body, which goes back to a pool.

// fastDecode decodes body into v if v is a zero batch request of a kind it
// knows and body is in the subset; false leaves v untouched.
func fastDecode(body []byte, v any) bool {
	switch req := v.(type) {
	case *api.BatchEncryptRequest:
		if req.Items != nil {
			return false
		}
		items, ok := decodeItems(body, parseEncryptItem)
		if ok {
			req.Items = items
		}
		return ok
	case *api.BatchDecryptRequest:
		if req.Items != nil {
			return false
		}
		items, ok := decodeItems(body, parseDecryptItem)
		if ok {
			req.Items = items
		}
		return ok
	}
	return false
}

// fastParser walks one body. str is the body as one string, so string
// fields without escapes are substrings of a single copy; arena backs the
// []byte fields, one allocation for all of them.
type fastParser struct {
	b     []byte
	i     int
	str   string
	arena []byte
	tmp   []byte // unquoted base64 with escapes
}

// decodeItems parses {"items":[item,...]} (or {}) around parse.
func decodeItems[T any](body []byte, parse func(*fastParser, *T) bool) ([]T, bool) {
	p := &fastParser{b: body}
	p.ws()
	if !p.eat('{') {
		return nil, false
	}
	p.ws()
	var items []T
	if !p.eat('}') {
		name, ok := p.key()
		if !ok || string(name) != "items" {
			return nil, false
		}
		p.ws()
		if !p.eat('[') {
			return nil, false
		}
		// Every item opens a brace, so this bounds the items (unless
		// strings hold braces too): one allocation for the usual body.
		items = make([]T, 0, min(bytes.Count(p.b[p.i:], []byte{'{'}), api.MaxBatchItems+1))
		p.ws()
		if !p.eat(']') {
			for {
				var zero T
				items = append(items, zero)
				if !parse(p, &items[len(items)-1]) {
					return nil, false
				}
				p.ws()
				if p.eat(']') {
					break
				}
				if !p.eat(',') {
					return nil, false
				}
				p.ws()
			}
		}
		p.ws()
		if !p.eat('}') { // a second key, even "items" again: not mine
			return nil, false
		}
	}
	p.ws()
	return items, p.i == len(p.b)
}

// fields parses one object, calling field for each key positioned at its
// value. Keys must be plain (no escapes); field rejects unknown and
// repeated ones.
func (p *fastParser) fields(field func(name []byte) bool) bool {
	if !p.eat('{') {
		return false
	}
	p.ws()
	if p.eat('}') {
		return true
	}
	for {
		name, ok := p.key()
		if !ok {
			return false
		}
		p.ws()
		if !field(name) {
			return false
		}
		p.ws()
		if p.eat('}') {
			return true
		}
		if !p.eat(',') {
			return false
		}
		p.ws()
	}
}

func parseEncryptItem(p *fastParser, it *api.EncryptRequest) bool {
	var seen uint8
	return p.fields(func(name []byte) bool {
		switch string(name) {
		case "plaintext":
			return once(&seen, 1) && p.bytesField(&it.Plaintext)
		case "context":
			return once(&seen, 2) && p.bytesField(&it.Context)
		}
		return false
	})
}

func parseDecryptItem(p *fastParser, it *api.DecryptRequest) bool {
	var seen uint8
	return p.fields(func(name []byte) bool {
		switch string(name) {
		case "ciphertext":
			return once(&seen, 1) && p.stringField(&it.Ciphertext)
		case "context":
			return once(&seen, 2) && p.bytesField(&it.Context)
		case "mask":
			return once(&seen, 4) && p.stringField(&it.Mask)
		}
		return false
	})
}

// once reports whether bit was not yet in seen, and sets it.
func once(seen *uint8, bit uint8) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// key reads a plain key and its colon; escaped keys are not mine.
func (p *fastParser) key() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			name := p.b[start:p.i]
			p.i++
			p.ws()
			if !p.eat(':') {
				return nil, false
			}
			return name, true
		}
		if c < 0x20 || c == '\\' || c >= utf8.RuneSelf {
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// rawString scans a string value. It returns the bytes between the quotes
// and whether they hold an escape; false if the string is not mine (a
// control byte, invalid UTF-8, or the end of the body).
func (p *fastParser) rawString() (raw []byte, start int, escaped, ok bool) {
	if !p.eat('"') {
		return nil, 0, false, false
	}
	start = p.i
	ascii := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		if plainASCII[c] {
			p.i++
			continue
		}
		switch {
		case c == '"':
			raw = p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(raw) {
				return nil, 0, false, false
			}
			return raw, start, escaped, true
		case c == '\\':
			escaped = true
			p.i++ // the escaped byte is checked by unquote
			if p.i < len(p.b) && p.b[p.i] >= utf8.RuneSelf {
				return nil, 0, false, false
			}
		case c < 0x20:
			return nil, 0, false, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		p.i++
	}
	return nil, 0, false, false
}

// plainASCII marks the bytes a string holds as themselves: printable ASCII
// but the quote and the backslash.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// htmlSafe is plainASCII without <, > and &, which json.Encoder escapes.
var htmlSafe = func() (t [256]bool) {
	t = plainASCII
	t['<'], t['>'], t['&'] = false, false, false
	return t
}()

func (p *fastParser) stringField(dst *string) bool {
	raw, start, escaped, ok := p.rawString()
	if !ok {
		return false
	}
	if !escaped {
		if p.str == "" {
			p.str = string(p.b)
		}
		*dst = p.str[start : start+len(raw)]
		return true
	}
	u, ok := unquote(raw, nil)
	if !ok {
		return false
	}
	*dst = string(u)
	return true
}

func (p *fastParser) bytesField(dst *[]byte) bool {
	raw, _, escaped, ok := p.rawString()
	if !ok {
		return false
	}
	src := raw
	if escaped {
		if src, ok = unquote(raw, p.tmp[:0]); !ok {
			return false
		}
		p.tmp = src
	}
	if p.arena == nil {
		// Decoded base64 is shorter than the body that held it.
		p.arena = make([]byte, 0, len(p.b))
	}
	n := base64.StdEncoding.DecodedLen(len(src))
	if cap(p.arena)-len(p.arena) < n {
		return false
	}
	off := len(p.arena)
	out := p.arena[off : off+n]
	m, err := base64.StdEncoding.Decode(out, src)
	if err != nil {
		return false
	}
	*dst = p.arena[off : off+m : off+m]
	p.arena = p.arena[:off+m]
	return true
}

// unquote resolves the escapes of a string's bytes (already checked for
// control bytes and UTF-8) into buf. A lone or reversed surrogate, which
// encoding/json turns into U+FFFD, is not mine.
func unquote(raw, buf []byte) ([]byte, bool) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			buf = append(buf, c)
			i++
			continue
		}
		if i+1 >= len(raw) {
			return nil, false
		}
		switch raw[i+1] {
		case '"', '\\', '/':
			buf = append(buf, raw[i+1])
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := hex4(raw[i+2:])
			if !ok {
				return nil, false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if i+1 >= len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
					return nil, false
				}
				r2, ok := hex4(raw[i+2:])
				if !ok {
					return nil, false
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return nil, false
				}
				i += 6
			}
			buf = utf8.AppendRune(buf, r)
			continue
		default:
			return nil, false
		}
		i += 2
	}
	return buf, true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	return r, true
}

// fastEncode appends v as json.Encoder.Encode would write it (HTML-safe
// escaping, trailing newline) if v is a batch reply it knows; false
// otherwise. FuzzFastBatchEncode checks the bytes are the same.
func fastEncode(buf []byte, v any) ([]byte, bool) {
	switch r := v.(type) {
	case *api.BatchEncryptResponse:
		if r == nil || r.Results == nil {
			return buf, false
		}
		return appendResults(buf, r.Results, func(buf []byte, n int, it *api.BatchEncryptItem) []byte {
			if it.Ciphertext != "" {
				buf = appendKey(buf, n, "ciphertext")
				buf = appendString(buf, it.Ciphertext)
			}
			return appendTail(buf, n, it.Version, it.Error)
		}), true
	case *api.BatchDecryptResponse:
		if r == nil || r.Results == nil {
			return buf, false
		}
		return appendResults(buf, r.Results, func(buf []byte, n int, it *api.BatchDecryptItem) []byte {
			if len(it.Plaintext) > 0 {
				buf = appendKey(buf, n, "plaintext")
				buf = append(buf, '"')
				buf = base64.StdEncoding.AppendEncode(buf, it.Plaintext)
				buf = append(buf, '"')
			}
			if it.Masked != "" {
				buf = appendKey(buf, n, "masked")
				buf = appendString(buf, it.Masked)
			}
			if it.Ciphertext != "" {
				buf = appendKey(buf, n, "ciphertext")
				buf = appendString(buf, it.Ciphertext)
			}
			return appendTail(buf, n, it.Version, it.Error)
		}), true
	}
	return buf, false
}

// appendResults appends {"results":[...]} and the encoder's newline; item
// appends the fields of one result after its opening brace at n.
func appendResults[T any](buf []byte, results []T, item func(buf []byte, n int, it *T) []byte) []byte {
	buf = append(buf, `{"results":[`...)
	for i := range results {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '{')
		buf = item(buf, len(buf), &results[i])
	}
	return append(buf, "]}\n"...)
}

// appendTail appends the version and error fields both item kinds end
// with, and closes the object opened at n.
func appendTail(buf []byte, n int, version uint32, e *api.BatchItemError) []byte {
	if version != 0 {
		buf = appendKey(buf, n, "version")
		buf = strconv.AppendUint(buf, uint64(version), 10)
	}
	if e != nil {
		buf = appendKey(buf, n, "error")
		buf = append(buf, `{"code":`...)
		buf = appendString(buf, string(e.Code))
		buf = append(buf, `,"message":`...)
		buf = appendString(buf, e.Message)
		buf = append(buf, '}')
	}
	return append(buf, '}')
}

// appendKey appends a comma unless the object opened at n is still empty,
// then "key":.
func appendKey(buf []byte, n int, key string) []byte {
	if len(buf) > n {
		buf = append(buf, ',')
	}
	buf = append(buf, '"')
	buf = append(buf, key...)
	return append(buf, '"', ':')
}

// appendString quotes s; strings with anything but plain printable ASCII
// (the only bytes encoding/json copies unescaped with HTML escaping on) go
// through encoding/json itself.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !htmlSafe[s[i]] {
			q, _ := json.Marshal(s) // a string always marshals
			return append(buf, q...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}
