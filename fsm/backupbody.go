package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The body of an operator snapshot is a logical export of the database,
// not the database file: a restore parses it with this package's own
// bounded reader and builds a fresh database, so a crafted file can never
// reach bbolt's page parser (which trusts its input).
//
//	'B' | depth (1 byte) | depth × (name length (1 byte) | name)
//	                       a bucket, by its path from the top level
//	'K' | key length (4 bytes BE) | key | value length (4 bytes BE) | value
//	                       a key in the bucket last named
//	'E'                    end of the body
//
// A bucket's keys follow it in strictly increasing order (bbolt's own);
// its nested buckets follow after them, each once, after their parent.
const (
	recBucket = 'B'
	recKV     = 'K'
	recEnd    = 'E'

	maxBucketName  = 255
	maxBucketDepth = 8
	maxRecordKey   = bolt.MaxKeySize
	maxRecordValue = 16 << 20
	// buildBatch is how many records go into one bbolt transaction while
	// a restore builds its database.
	buildBatch = 20000
)

// walkBody calls emit for each record of the body of tx's state, in order.
// A bucket record carries the encoded path.
func walkBody(tx *bolt.Tx, emit func(kind byte, a, b []byte) error) error {
	var walk func(path [][]byte, b *bolt.Bucket) error
	walk = func(path [][]byte, b *bolt.Bucket) error {
		enc, err := encodeBucketPath(path)
		if err != nil {
			return err
		}
		if err := emit(recBucket, enc, nil); err != nil {
			return err
		}
		var nested [][]byte
		err = b.ForEach(func(k, v []byte) error {
			if v == nil {
				nested = append(nested, bytes.Clone(k))
				return nil
			}
			if len(v) > maxRecordValue {
				return fmt.Errorf("fsm: snapshot: value of %d bytes in %s", len(v), path[len(path)-1])
			}
			return emit(recKV, k, v)
		})
		if err != nil {
			return err
		}
		for _, name := range nested {
			if err := walk(append(path[:len(path):len(path)], name), b.Bucket(name)); err != nil {
				return err
			}
		}
		return nil
	}
	err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		return walk([][]byte{name}, b)
	})
	if err != nil {
		return err
	}
	return emit(recEnd, nil, nil)
}

func encodeBucketPath(path [][]byte) ([]byte, error) {
	if len(path) == 0 || len(path) > maxBucketDepth {
		return nil, fmt.Errorf("fsm: snapshot: buckets nested %d deep", len(path))
	}
	out := []byte{byte(len(path))}
	for _, seg := range path {
		if len(seg) == 0 || len(seg) > maxBucketName {
			return nil, fmt.Errorf("fsm: snapshot: bucket name of %d bytes", len(seg))
		}
		out = append(out, byte(len(seg)))
		out = append(out, seg...)
	}
	return out, nil
}

// bodySize returns the encoded length of tx's body.
func bodySize(tx *bolt.Tx) (uint64, error) {
	var n uint64
	err := walkBody(tx, func(kind byte, a, b []byte) error {
		switch kind {
		case recBucket:
			n += 1 + uint64(len(a))
		case recKV:
			n += 1 + 4 + uint64(len(a)) + 4 + uint64(len(b))
		case recEnd:
			n++
		}
		return nil
	})
	return n, err
}

// writeBody writes tx's body to w.
func writeBody(w io.Writer, tx *bolt.Tx) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var hdr [9]byte
	err := walkBody(tx, func(kind byte, a, b []byte) error {
		var err error
		switch kind {
		case recBucket:
			if err = bw.WriteByte(recBucket); err == nil {
				_, err = bw.Write(a)
			}
		case recKV:
			hdr[0] = recKV
			binary.BigEndian.PutUint32(hdr[1:5], uint32(len(a)))
			if _, err = bw.Write(hdr[:5]); err == nil {
				_, err = bw.Write(a)
			}
			if err == nil {
				binary.BigEndian.PutUint32(hdr[1:5], uint32(len(b)))
				if _, err = bw.Write(hdr[1:5]); err == nil {
					_, err = bw.Write(b)
				}
			}
		case recEnd:
			err = bw.WriteByte(recEnd)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("fsm: write snapshot body: %w", err)
	}
	return bw.Flush()
}

var errBody = fmt.Errorf("%w: body", ErrSnapshotCorrupt)

// buildFromBody parses a body of exactly n bytes from r and writes its
// records into the empty database db. Every length is bounded before it
// is used; a malformed body is an ErrSnapshotCorrupt error.
func buildFromBody(r io.Reader, n uint64, db *bolt.DB) error {
	lr := &io.LimitedReader{R: r, N: int64(n)}
	br := bufio.NewReaderSize(lr, 64<<10)
	truncated := func() error {
		return fmt.Errorf("%w truncated", errBody)
	}
	readN := func(k int) ([]byte, error) {
		b := make([]byte, k)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, truncated()
		}
		return b, nil
	}
	readLen := func(limit int) (int, error) {
		var b [4]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, truncated()
		}
		v := binary.BigEndian.Uint32(b[:])
		if uint64(v) > uint64(limit) {
			return 0, fmt.Errorf("%w: record length %d", errBody, v)
		}
		return int(v), nil
	}
	tx, err := db.Begin(true)
	if err != nil {
		return err
	}
	defer func() {
		if tx != nil {
			_ = tx.Rollback()
		}
	}()
	var (
		bucket  *bolt.Bucket
		path    [][]byte
		name    []byte
		lastKey []byte
		inBatch int
		seen    = map[string]bool{}
	)
	// resolve finds the bucket at p in the current transaction.
	resolve := func(p [][]byte) *bolt.Bucket {
		b := tx.Bucket(p[0])
		for _, seg := range p[1:] {
			if b == nil {
				return nil
			}
			b = b.Bucket(seg)
		}
		return b
	}
	flush := func() error {
		if err := tx.Commit(); err != nil {
			tx = nil
			return err
		}
		if tx, err = db.Begin(true); err != nil {
			tx = nil
			return err
		}
		inBatch = 0
		if path != nil {
			bucket = resolve(path)
		}
		return nil
	}
	for {
		kind, err := br.ReadByte()
		if err != nil {
			return truncated()
		}
		switch kind {
		case recBucket:
			depth, err := br.ReadByte()
			if err != nil {
				return truncated()
			}
			if depth == 0 || depth > maxBucketDepth {
				return fmt.Errorf("%w: bucket depth %d", errBody, depth)
			}
			p := make([][]byte, 0, depth)
			for range int(depth) {
				l, err := br.ReadByte()
				if err != nil {
					return truncated()
				}
				if l == 0 {
					return fmt.Errorf("%w: empty bucket name", errBody)
				}
				seg, err := readN(int(l))
				if err != nil {
					return err
				}
				p = append(p, seg)
			}
			enc, _ := encodeBucketPath(p)
			if seen[string(enc)] {
				return fmt.Errorf("%w: bucket declared twice", errBody)
			}
			seen[string(enc)] = true
			if len(p) == 1 {
				bucket, err = tx.CreateBucket(p[0])
			} else if parent := resolve(p[:len(p)-1]); parent == nil {
				return fmt.Errorf("%w: nested bucket before its parent", errBody)
			} else {
				bucket, err = parent.CreateBucket(p[len(p)-1])
			}
			if err != nil {
				return fmt.Errorf("%w: bucket: %v", errBody, err)
			}
			path, name, lastKey = p, p[len(p)-1], nil
		case recKV:
			if bucket == nil {
				return fmt.Errorf("%w: record outside a bucket", errBody)
			}
			kl, err := readLen(maxRecordKey)
			if err != nil {
				return err
			}
			if kl == 0 {
				return fmt.Errorf("%w: empty key", errBody)
			}
			k, err := readN(kl)
			if err != nil {
				return err
			}
			if lastKey != nil && bytes.Compare(k, lastKey) <= 0 {
				return fmt.Errorf("%w: keys out of order in %s", errBody, name)
			}
			vl, err := readLen(maxRecordValue)
			if err != nil {
				return err
			}
			v, err := readN(vl)
			if err != nil {
				return err
			}
			if err := bucket.Put(k, v); err != nil {
				return fmt.Errorf("%w: record: %v", errBody, err)
			}
			lastKey = k
			if inBatch++; inBatch >= buildBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		case recEnd:
			if lr.N != 0 || br.Buffered() != 0 {
				return fmt.Errorf("%w: bytes after the end record", errBody)
			}
			err := tx.Commit()
			tx = nil
			if err != nil {
				return err
			}
			return nil
		default:
			return fmt.Errorf("%w: unknown record type %d", errBody, kind)
		}
	}
}

// openBuildDB creates the database a restore builds.
func openBuildDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot: %w", err)
	}
	return db, nil
}
