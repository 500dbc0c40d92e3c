package membership

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// MaxMetaSize is the largest encoded [Meta] memberlist accepts, in bytes.
const MaxMetaSize = memberlist.MetaMaxSize

// metaVersion is the wire format version written by [Meta.Encode]. A decoder
// accepts only the versions it knows; a new format gets a new number.
const metaVersion = 1

var (
	// ErrMetaTooLarge is returned by [Meta.Encode] when the encoding exceeds
	// [MaxMetaSize].
	ErrMetaTooLarge = errors.New("membership: meta too large")
	// ErrMetaInvalid is returned when a Meta is malformed: bad JSON, an
	// unknown version, an empty NodeID or a field with invalid UTF-8 or
	// control characters.
	ErrMetaInvalid = errors.New("membership: meta invalid")
)

// Meta is what each node publishes about itself through gossip. It is a plain
// value, safe to copy and compare with ==.
type Meta struct {
	NodeID   string // must be non-empty; overridden with the node's gossip name
	Region   string
	APIAddr  string // host:port of the HTTP API
	RaftAddr string // host:port of the Raft transport
	Sealed   bool
	Voter    bool
	Applied  uint64 // last applied Raft index
	HSMOK    bool   // HSM health
	Version  string // keyd version
}

// metaWire is the version-1 encoding: JSON with short keys and empty values
// left out, so a typical node fits in well under 200 bytes.
type metaWire struct {
	V       int    `json:"v"`
	ID      string `json:"id"`
	Region  string `json:"rg,omitempty"`
	API     string `json:"api,omitempty"`
	Raft    string `json:"raft,omitempty"`
	Sealed  bool   `json:"s,omitempty"`
	Voter   bool   `json:"vo,omitempty"`
	Applied uint64 `json:"ai,omitempty"`
	HSMOK   bool   `json:"h,omitempty"`
	Version string `json:"ver,omitempty"`
	// Leaving is set by Gossip.Leave: memberlist v0.7.0 reports a graceful
	// leave exactly like a failure (its event Node.State is never set), so
	// the departing node announces it in its Meta first. It is not part of
	// Meta because only the Gossip sets it.
	Leaving bool `json:"lv,omitempty"`
}

// Encode returns the wire form of m. It returns an error wrapping
// [ErrMetaInvalid] if a field is not acceptable and [ErrMetaTooLarge] if the
// result would exceed [MaxMetaSize] less 10 bytes kept for the flag
// [Gossip.Leave] adds.
func (m Meta) Encode() ([]byte, error) { return m.encode(false) }

func (m Meta) encode(leaving bool) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// HTML escaping would turn "<" into six bytes for no benefit here.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(metaWire{
		V: metaVersion, ID: m.NodeID, Region: m.Region, API: m.APIAddr, Raft: m.RaftAddr,
		Sealed: m.Sealed, Voter: m.Voter, Applied: m.Applied, HSMOK: m.HSMOK, Version: m.Version,
		Leaving: leaving,
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMetaInvalid, err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	// Leave re-sends the same Meta with the flag set; it must fit then too.
	limit := MaxMetaSize
	if !leaving {
		limit -= len(`,"lv":true`)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMetaTooLarge, len(b), limit)
	}
	return b, nil
}

// DecodeMeta parses b as produced by [Meta.Encode]. Unknown JSON fields are
// ignored so a newer keyd can add fields within the same version. Any other
// problem returns an error wrapping [ErrMetaInvalid]; b is not retained.
func DecodeMeta(b []byte) (Meta, error) {
	m, _, err := decodeMeta(b)
	return m, err
}

// decodeMeta is DecodeMeta that also reports the leaving flag.
func decodeMeta(b []byte) (Meta, bool, error) {
	if len(b) == 0 || len(b) > MaxMetaSize {
		return Meta{}, false, fmt.Errorf("%w: length %d", ErrMetaInvalid, len(b))
	}
	// encoding/json silently replaces invalid UTF-8; refuse it instead.
	if !utf8.Valid(b) {
		return Meta{}, false, fmt.Errorf("%w: not UTF-8", ErrMetaInvalid)
	}
	var w metaWire
	if err := json.Unmarshal(b, &w); err != nil {
		return Meta{}, false, fmt.Errorf("%w: %w", ErrMetaInvalid, err)
	}
	if w.V != metaVersion {
		return Meta{}, false, fmt.Errorf("%w: version %d", ErrMetaInvalid, w.V)
	}
	m := Meta{
		NodeID: w.ID, Region: w.Region, APIAddr: w.API, RaftAddr: w.Raft,
		Sealed: w.Sealed, Voter: w.Voter, Applied: w.Applied, HSMOK: w.HSMOK, Version: w.Version,
	}
	if err := m.validate(); err != nil {
		return Meta{}, false, err
	}
	return m, w.Leaving, nil
}

// validate rejects what should never reach logs, terminals or a peer's
// topology: an empty id and strings with invalid UTF-8 or control characters.
func (m Meta) validate() error {
	if m.NodeID == "" {
		return fmt.Errorf("%w: empty node id", ErrMetaInvalid)
	}
	for _, f := range [...]struct{ name, v string }{
		{"node id", m.NodeID}, {"region", m.Region}, {"api addr", m.APIAddr},
		{"raft addr", m.RaftAddr}, {"version", m.Version},
	} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%w: %s not UTF-8", ErrMetaInvalid, f.name)
		}
		for _, r := range f.v {
			if unicode.IsControl(r) {
				return fmt.Errorf("%w: control character in %s", ErrMetaInvalid, f.name)
			}
		}
	}
	return nil
}
