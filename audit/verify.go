package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// ErrTampered matches every [*VerifyError] with errors.Is.
var ErrTampered = errors.New("audit: log tampered")

// ErrInvalidKey is returned by [Verify] and [ParsePublicKey] for a public
// key that is not an ed25519 key.
var ErrInvalidKey = errors.New("audit: invalid public key")

// VerifyError names the first line of a log that fails verification.
type VerifyError struct {
	File   string // the file's name, when verifying a set of files
	Line   int    // 1-based line number in the file
	Seq    uint64 // the line's seq, or the expected seq if it does not parse
	Reason string
}

func (e *VerifyError) Error() string {
	if e.File != "" {
		return fmt.Sprintf("audit: %s line %d (seq %d): %s", e.File, e.Line, e.Seq, e.Reason)
	}
	return fmt.Sprintf("audit: line %d (seq %d): %s", e.Line, e.Seq, e.Reason)
}

// Is makes errors.Is(err, ErrTampered) true for a *VerifyError.
func (e *VerifyError) Is(target error) bool { return target == ErrTampered }

// Report is the result of a successful verification.
type Report struct {
	Records     uint64 // lines that are not checkpoints
	Checkpoints uint64
	FirstSeq    uint64 // 0 for an empty log
	LastSeq     uint64
	// Unsigned counts the records after the last checkpoint. Nothing
	// vouches for them: they could have been cut off or edited (the last
	// line) without trace. A log closed cleanly has none.
	Unsigned uint64
	// Anchors is how many of the cluster's anchors were matched; LastAnchor
	// is the seq of the last one (0: none). AnchorsBefore counts anchors
	// below FirstSeq, in files not given.
	Anchors       int
	LastAnchor    uint64
	AnchorsBefore int
	// Unanchored counts the lines after the last anchor: nothing in the
	// cluster proves they are complete or unedited.
	Unanchored uint64
	// Warning explains anything the verification could not cover
	// (unsigned tail, a log starting after seq 1, a torn final line), or is
	// empty.
	Warning string
}

// Verify reads a log from r and checks that every line parses, seq rises
// by 1 from the first line's seq, each prev is the SHA-256 of the previous
// line's exact bytes (without its newline), seq 1 has an empty prev, and
// every checkpoint is signed by pub over its seq and head.
//
// It returns a *[VerifyError] (matching [ErrTampered]) for the first bad
// line, [ErrInvalidKey] for a bad pub, or a read error from r. When
// line L's prev does not match line L-1, the error names L-1: the first
// line that may have been altered. A final line without a newline that is
// not even JSON is taken for a write torn by a crash and reported as a
// warning, not an error: the logger never acknowledged it, and cutting
// the unsigned tail is undetectable anyway.
//
// Verify without anchors cannot tell a log cut after a checkpoint from a
// whole one; use [NewVerifier] with the cluster's anchors for that.
// Verify keeps only the previous line's hash: memory does not grow with
// the log.
func Verify(r io.Reader, pub ed25519.PublicKey) (*Report, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidKey, len(pub), ed25519.PublicKeySize)
	}
	v, err := NewVerifier(pub, nil)
	if err != nil {
		return nil, err
	}
	if err := v.Add("", r); err != nil {
		return nil, err
	}
	return v.Finish()
}

// Verifier checks a chain given as one or more files in chain order
// against a public key and the cluster's anchors for the node.
type Verifier struct {
	v verifier
}

// NewVerifier returns a Verifier. pub may be nil only for a log that has
// no checkpoint (a checkpoint then fails verification). anchors are the
// node's anchors in any order.
func NewVerifier(pub ed25519.PublicKey, anchors []Anchor) (*Verifier, error) {
	if pub != nil && len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidKey, len(pub), ed25519.PublicKeySize)
	}
	as := append([]Anchor(nil), anchors...)
	sort.Slice(as, func(i, j int) bool { return as[i].Seq < as[j].Seq })
	uniq := as[:0]
	for _, a := range as {
		if a.Seq == 0 || len(a.Head) != 64 || !isLowerHex(a.Head) {
			return nil, fmt.Errorf("audit: anchor at seq %d is malformed", a.Seq)
		}
		if n := len(uniq); n > 0 && uniq[n-1].Seq == a.Seq {
			if uniq[n-1].Head != a.Head {
				return nil, fmt.Errorf("audit: two different anchors at seq %d", a.Seq)
			}
			continue
		}
		uniq = append(uniq, a)
	}
	as = uniq
	return &Verifier{v: verifier{pub: pub, anchors: as}}, nil
}

// Add verifies the next file of the chain. name labels errors. It returns
// a *[VerifyError] for the first bad line, or a read error.
func (vf *Verifier) Add(name string, r io.Reader) error {
	v := &vf.v
	if v.torn {
		return &VerifyError{File: v.file, Line: v.line + 1, Seq: v.lastSeq + 1, Reason: "a file follows an incomplete last line"}
	}
	v.file, v.line = name, 0
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(long)+len(line) > maxLine {
				return &VerifyError{File: name, Line: v.line + 1, Seq: v.lastSeq + 1, Reason: fmt.Sprintf("line longer than %d bytes", maxLine)}
			}
			long = append(long, line...)
			continue
		}
		if len(long) > 0 {
			line = append(long, line...)
			long = long[:0]
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("audit: read log: %w", err)
		}
		if len(line) == 0 && err == io.EOF {
			return nil
		}
		complete := line[len(line)-1] == '\n'
		if complete {
			line = line[:len(line)-1]
		}
		if verr := v.check(line); verr != nil {
			if !complete && !json.Valid(line) {
				v.torn = true
				return nil
			}
			verr.File = name
			return verr
		}
		if err == io.EOF {
			return nil
		}
	}
}

// Finish checks that the chain reaches the last anchor and reports.
func (vf *Verifier) Finish() (*Report, error) {
	v := &vf.v
	if v.next < len(v.anchors) {
		a := v.anchors[len(v.anchors)-1]
		reason := fmt.Sprintf("the log ends at seq %d but the cluster anchored seq %d: records were cut from the end (or the anchors were taken after the log was copied: take them first)", v.lastSeq, a.Seq)
		if v.seen == 0 {
			reason = fmt.Sprintf("the log is empty but the cluster anchored seq %d: records were removed", a.Seq)
		}
		return nil, &VerifyError{File: v.file, Line: v.line + 1, Seq: v.lastSeq + 1, Reason: reason}
	}
	return v.report(), nil
}

// verifier is the state Verify carries from line to line.
type verifier struct {
	pub         ed25519.PublicKey
	anchors     []Anchor // sorted by seq
	next        int      // index of the next anchor to meet
	file        string
	line        int // line number in the current file
	seen        uint64
	lastSeq     uint64
	firstSeq    uint64
	prevHash    [32]byte
	prevSeq     uint64 // seq of the line prevHash belongs to
	records     uint64
	checkpoints uint64
	sinceCP     uint64
	exactCount  bool // sinceCP counts from the chain's start or a checkpoint
	lastCPSeq   uint64
	matched     int
	lastAnchor  uint64
	before      int
	sinceAnchor uint64
	// fromLine/fromFile/fromSeq: the first line after the last matched
	// anchor, the first that may be bad when the next anchor fails.
	fromFile string
	fromLine int
	fromSeq  uint64
	torn     bool
}

func (v *verifier) check(line []byte) *VerifyError {
	lineNo := v.line + 1
	bad := func(seq uint64, format string, args ...any) *VerifyError {
		return &VerifyError{Line: lineNo, Seq: seq, Reason: fmt.Sprintf(format, args...)}
	}
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return bad(v.lastSeq+1, "not a record: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad(v.lastSeq+1, "data after the record")
	}
	if rec.Seq == 0 {
		return bad(0, "seq is 0")
	}
	first := v.seen == 0
	if !first && rec.Seq != v.lastSeq+1 {
		return bad(rec.Seq, "seq %d follows seq %d: records missing, duplicated or reordered", rec.Seq, v.lastSeq)
	}
	switch {
	case rec.Seq == 1 && rec.Prev != "":
		return bad(rec.Seq, "seq 1 has a prev")
	case rec.Seq > 1 && (len(rec.Prev) != 64 || !isLowerHex(rec.Prev)):
		return bad(rec.Seq, "prev is not a SHA-256 hex digest")
	case !first && rec.Prev != hex.EncodeToString(v.prevHash[:]):
		// The previous line's bytes no longer hash to what this line
		// recorded: that line is the first one that may be altered.
		e := &VerifyError{Line: lineNo - 1, Seq: v.prevSeq,
			Reason: fmt.Sprintf("line does not hash to the prev recorded by the next line (seq %d): it was edited (or the next line's prev was)", rec.Seq)}
		if lineNo == 1 {
			e.Reason = "the previous file's last line does not hash to this line's prev: files missing or edited"
			e.Line, e.Seq = 1, rec.Seq
		}
		return e
	case rec.Op == "":
		return bad(rec.Seq, "op is empty")
	}
	if !first && lineNo == 1 && v.fromSeq == rec.Seq {
		// The last anchor ended the previous file: this file's first
		// line is the first one it does not cover.
		v.fromFile, v.fromLine = v.file, 1
	}
	if first {
		v.firstSeq = rec.Seq
		v.exactCount = rec.Seq == 1
		for v.next < len(v.anchors) && v.anchors[v.next].Seq < rec.Seq {
			v.next++
			v.before++
		}
		v.fromFile, v.fromLine, v.fromSeq = v.file, lineNo, rec.Seq
	}
	if rec.Op == OpCheckpoint || rec.Checkpoint != nil {
		if verr := v.checkCheckpoint(&rec, bad); verr != nil {
			return verr
		}
	} else {
		v.records++
		v.sinceCP++
	}
	h := sha256.Sum256(line)
	if v.next < len(v.anchors) && v.anchors[v.next].Seq == rec.Seq {
		if v.anchors[v.next].Head != hex.EncodeToString(h[:]) {
			return &VerifyError{File: v.fromFile, Line: v.fromLine, Seq: v.fromSeq,
				Reason: fmt.Sprintf("the log from here to seq %d does not match the cluster's anchor at seq %d: a record was removed, reordered or edited", rec.Seq, rec.Seq)}
		}
		v.next++
		v.matched++
		v.lastAnchor = rec.Seq
		v.sinceAnchor = 0
		v.fromFile, v.fromLine, v.fromSeq = v.file, lineNo+1, rec.Seq+1
	} else {
		v.sinceAnchor++
	}
	v.seen++
	v.line = lineNo
	v.lastSeq = rec.Seq
	v.prevSeq = rec.Seq
	v.prevHash = h
	return nil
}

func (v *verifier) checkCheckpoint(rec *Record, bad func(uint64, string, ...any) *VerifyError) *VerifyError {
	cp := rec.Checkpoint
	switch {
	case rec.Op != OpCheckpoint:
		return bad(rec.Seq, "checkpoint payload on a %q record", rec.Op)
	case cp == nil:
		return bad(rec.Seq, "checkpoint record without a checkpoint")
	case cp.Head != rec.Prev || rec.Prev == "":
		return bad(rec.Seq, "checkpoint head does not equal prev")
	case v.pub == nil:
		return bad(rec.Seq, "checkpoint, but no audit public key is known for this node")
	}
	var head [32]byte
	hex.Decode(head[:], []byte(cp.Head)) // checked as 64 hex digits with prev
	if !verifyCheckpoint(v.pub, rec.Seq, head, cp.Signature) {
		return bad(rec.Seq, "checkpoint signature does not verify")
	}
	exact := v.exactCount || v.checkpoints > 0
	if exact && cp.Count != v.sinceCP || !exact && cp.Count < v.sinceCP {
		return bad(rec.Seq, "checkpoint counts %d records, the log has %d", cp.Count, v.sinceCP)
	}
	v.checkpoints++
	v.sinceCP = 0
	v.lastCPSeq = rec.Seq
	return nil
}

func (v *verifier) report() *Report {
	rep := &Report{
		Records:       v.records,
		Checkpoints:   v.checkpoints,
		FirstSeq:      v.firstSeq,
		LastSeq:       v.lastSeq,
		Unsigned:      v.sinceCP,
		Anchors:       v.matched,
		LastAnchor:    v.lastAnchor,
		AnchorsBefore: v.before,
		Unanchored:    v.sinceAnchor,
	}
	var warn []string
	switch {
	case v.seen == 0 && !v.torn:
		warn = append(warn, "the log is empty")
	case v.checkpoints == 0 && v.sinceCP > 0:
		warn = append(warn, fmt.Sprintf("no checkpoint: none of the %d records is signed, so records cut from the end or an edited last line would go unnoticed", v.sinceCP))
	case v.sinceCP > 0:
		warn = append(warn, fmt.Sprintf("%d records after the last checkpoint (seq %d) are not signed, so records cut from the end or an edited last line would go unnoticed", v.sinceCP, v.lastCPSeq))
	}
	if v.firstSeq > 1 {
		warn = append(warn, fmt.Sprintf("the log starts at seq %d: earlier records are not in this file", v.firstSeq))
	}
	if v.torn {
		warn = append(warn, fmt.Sprintf("line %d is incomplete (a write cut short by a crash?) and was not verified", v.line+1))
	}
	rep.Warning = strings.Join(warn, "; ")
	return rep
}

// ParsePublicKey reads an ed25519 public key given as hex (64 digits) or
// as a PEM "PUBLIC KEY" block (PKIX), with surrounding white space
// allowed. Errors wrap [ErrInvalidKey].
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	b = bytes.TrimSpace(b)
	if bytes.HasPrefix(b, []byte("-----BEGIN")) {
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%w: want a PEM PUBLIC KEY block", ErrInvalidKey)
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: %T, want ed25519", ErrInvalidKey, k)
		}
		return pub, nil
	}
	pub := make([]byte, ed25519.PublicKeySize)
	if len(b) != 2*ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: want %d hex digits or PEM", ErrInvalidKey, 2*ed25519.PublicKeySize)
	}
	if _, err := hex.Decode(pub, b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return pub, nil
}
