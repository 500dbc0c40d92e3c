package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// tailState is what Open needs to continue a chain.
type tailState struct {
	seq     uint64   // seq of the last line (0: empty file)
	hash    [32]byte // SHA-256 of the last line
	sinceCP uint64   // records after the last checkpoint
}

// lineHead is the part of a line Open reads while walking back.
type lineHead struct {
	Seq        uint64           `json:"seq"`
	Op         string           `json:"op"`
	Checkpoint *json.RawMessage `json:"checkpoint"`
}

// recoverTail repairs a torn final line and reads the chain state from the
// end of f, walking back only to the last checkpoint: after a clean Close
// that is the last line, after a crash at most about CheckpointEvery lines.
func recoverTail(f *os.File, size int64) (tailState, error) {
	var st tailState
	if size == 0 {
		return st, nil
	}
	size, err := repairTornLine(f, size)
	if err != nil || size == 0 {
		return st, err
	}
	bs := &backScanner{r: f, off: size - 1} // drop the final newline
	for n := 0; ; n++ {
		line, err := bs.prev()
		if err == io.EOF {
			return st, nil // no checkpoint: every record so far is unsigned
		}
		if err != nil {
			return st, err
		}
		var h lineHead
		if err := json.Unmarshal(line, &h); err != nil || h.Seq == 0 {
			return st, fmt.Errorf("%w: %d lines from the end: not a record", ErrCorrupt, n+1)
		}
		if n == 0 {
			st.seq, st.hash = h.Seq, sha256.Sum256(line)
		}
		if h.Op == OpCheckpoint && h.Checkpoint != nil {
			return st, nil
		}
		st.sinceCP++
	}
}

// repairTornLine makes f end with a newline. A fragment after the last
// newline is kept (newline appended) if it is a whole record, and cut off
// otherwise. It returns the new size.
func repairTornLine(f *os.File, size int64) (int64, error) {
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return 0, fmt.Errorf("audit: read tail: %w", err)
	}
	if last[0] == '\n' {
		return size, nil
	}
	bs := &backScanner{r: f, off: size}
	frag, err := bs.prev()
	if err != nil && err != io.EOF {
		return 0, err
	}
	var h lineHead
	if json.Unmarshal(frag, &h) == nil && h.Seq > 0 {
		if _, err := f.Write([]byte{'\n'}); err != nil {
			return 0, fmt.Errorf("audit: repair torn line: %w", err)
		}
		return size + 1, f.Sync()
	}
	keep := size - int64(len(frag))
	if err := f.Truncate(keep); err != nil {
		return 0, fmt.Errorf("audit: repair torn line: %w", err)
	}
	return keep, f.Sync()
}

// backScanner yields the lines of r[0:off) from last to first, without
// their newlines. A returned line is valid until the next call.
type backScanner struct {
	r   io.ReaderAt
	off int64  // r[0:off) is not yet read
	buf []byte // read but not yet yielded; ends where the next line ends
	eof bool
}

const backChunk = 64 << 10

func (b *backScanner) prev() ([]byte, error) {
	if b.eof {
		return nil, io.EOF
	}
	for {
		if i := bytes.LastIndexByte(b.buf, '\n'); i >= 0 {
			line := b.buf[i+1:]
			b.buf = b.buf[:i]
			return line, nil
		}
		if b.off == 0 {
			b.eof = true
			return b.buf, nil
		}
		if len(b.buf) > maxLine {
			return nil, fmt.Errorf("%w: a line is longer than %d bytes", ErrCorrupt, maxLine)
		}
		n := min(int64(backChunk), b.off)
		nb := make([]byte, int(n)+len(b.buf))
		if _, err := b.r.ReadAt(nb[:n], b.off-n); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("audit: read tail: %w", err)
		}
		copy(nb[n:], b.buf)
		b.buf, b.off = nb, b.off-n
	}
}
