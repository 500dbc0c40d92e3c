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
//	'B' | name length (1 byte) | name                      a top-level bucket
//	'K' | key length (4 bytes BE) | key | value length (4 bytes BE) | value
//	'E'                                                    end of the body
//
// Buckets come in strictly increasing name order, each once; keys in
// strictly increasing order within their bucket (bbolt's own order), so
// one state has one encoding.
const (
	recBucket = 'B'
	recKV     = 'K'
	recEnd    = 'E'

	maxBucketName  = 64
	maxRecordKey   = bolt.MaxKeySize
	maxRecordValue = 16 << 20
	// buildBatch is how many records go into one bbolt transaction while
	// a restore builds its database.
	buildBatch = 20000
)

// walkBody calls emit for each record of the body of tx's state, in order.
func walkBody(tx *bolt.Tx, emit func(kind byte, a, b []byte) error) error {
	err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		if len(name) == 0 || len(name) > maxBucketName {
			return fmt.Errorf("fsm: snapshot: bucket name of %d bytes", len(name))
		}
		if err := emit(recBucket, name, nil); err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("fsm: snapshot: nested bucket in %s is not supported", name)
			}
			if len(v) > maxRecordValue {
				return fmt.Errorf("fsm: snapshot: value of %d bytes in %s", len(v), name)
			}
			return emit(recKV, k, v)
		})
	})
	if err != nil {
		return err
	}
	return emit(recEnd, nil, nil)
}

// bodySize returns the encoded length of tx's body.
func bodySize(tx *bolt.Tx) (uint64, error) {
	var n uint64
	err := walkBody(tx, func(kind byte, a, b []byte) error {
		switch kind {
		case recBucket:
			n += 2 + uint64(len(a))
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
			hdr[0], hdr[1] = recBucket, byte(len(a))
			if _, err = bw.Write(hdr[:2]); err == nil {
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
		bucket   *bolt.Bucket
		name     []byte
		lastName []byte
		lastKey  []byte
		inBatch  int
	)
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
		if name != nil {
			bucket = tx.Bucket(name)
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
			l, err := br.ReadByte()
			if err != nil {
				return truncated()
			}
			if l == 0 || l > maxBucketName {
				return fmt.Errorf("%w: bucket name of %d bytes", errBody, l)
			}
			nm, err := readN(int(l))
			if err != nil {
				return err
			}
			if lastName != nil && bytes.Compare(nm, lastName) <= 0 {
				return fmt.Errorf("%w: buckets out of order", errBody)
			}
			if bucket, err = tx.CreateBucket(nm); err != nil {
				return fmt.Errorf("%w: bucket: %v", errBody, err)
			}
			name, lastName, lastKey = nm, nm, nil
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
