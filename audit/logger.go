package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by [Open] and [Logger.Log].
var (
	// ErrSinkFailed means a write or fsync of the log failed. The Logger
	// stays failed until Close: every pending and later Log returns it, and
	// the node must refuse key operations rather than serve unaudited.
	ErrSinkFailed = errors.New("audit: sink failed")
	// ErrClosed is returned by Log after Close.
	ErrClosed = errors.New("audit: logger closed")
	// ErrInvalidRecord is returned by Log for a record it will not write
	// (missing op or outcome, reserved op, raw value in Hashed, too large).
	ErrInvalidRecord = errors.New("audit: invalid record")
	// ErrInvalidConfig is returned by Open for a bad Config.
	ErrInvalidConfig = errors.New("audit: invalid config")
	// ErrCorrupt is returned by Open when the existing file's tail cannot
	// be read as records, so the chain cannot be continued. Verify the file
	// and move it aside.
	ErrCorrupt = errors.New("audit: existing log is corrupt")
)

// Defaults for [Config].
const (
	DefaultCheckpointEvery = 1000
	DefaultMaxBatch        = 512
)

// Config configures a [Logger]. Open copies the keys, so the caller may
// zero its own copies afterwards. A Config formats itself with its keys
// redacted.
type Config struct {
	// Path is the append-only log file. It is created with mode 0600 if
	// missing; an existing file's tail is read to continue the chain (seq
	// and prev). Only one Logger may have a file open at a time.
	Path string
	// HMACKey keys [Logger.HMAC]: 32 bytes from crypto/rand, the same for
	// every node if hashes are to be compared across nodes.
	HMACKey []byte
	// SigningKey signs checkpoints; its public half verifies the log.
	SigningKey ed25519.PrivateKey
	// Node names this node in every record.
	Node string
	// CheckpointEvery is the number of records between signed checkpoints
	// (default 1000). A checkpoint is also written by Close.
	CheckpointEvery int
	// MaxBatch caps the records in one write+fsync (default 512).
	MaxBatch int
	// SyncInterval, when positive, answers Log once its batch is written
	// to the file (the page cache: it survives a process crash) and
	// fsyncs at most this long after, instead of fsyncing every batch
	// before answering. A power loss can then drop the last SyncInterval
	// of records. Zero (the default) fsyncs before answering.
	SyncInterval time.Duration

	// wrapSink, when set by tests, wraps the file to inject failures.
	wrapSink func(sink) sink
}

// sink is what the writer needs from the file.
type sink interface {
	io.Writer
	Sync() error
}

// Format prints c with its keys redacted, for every verb.
func (c Config) Format(f fmt.State, verb rune) { io.WriteString(f, c.String()) }

// String describes c without its keys.
func (c Config) String() string {
	return fmt.Sprintf("audit.Config{Path: %q, Node: %q, HMACKey: [REDACTED], SigningKey: [REDACTED], CheckpointEvery: %d, MaxBatch: %d}",
		c.Path, c.Node, c.CheckpointEvery, c.MaxBatch)
}

// GoString is String, so %#v redacts too.
func (c Config) GoString() string { return c.String() }

func (c *Config) validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path is empty"))
	}
	if len(c.HMACKey) != 32 {
		errs = append(errs, fmt.Errorf("HMACKey is %d bytes, want 32", len(c.HMACKey)))
	}
	if len(c.SigningKey) != ed25519.PrivateKeySize {
		errs = append(errs, fmt.Errorf("SigningKey is %d bytes, want %d", len(c.SigningKey), ed25519.PrivateKeySize))
	}
	if c.Node == "" {
		errs = append(errs, errors.New("node is empty"))
	}
	if c.CheckpointEvery < 0 {
		errs = append(errs, errors.New("CheckpointEvery is negative"))
	}
	if c.MaxBatch < 0 {
		errs = append(errs, errors.New("MaxBatch is negative"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// Logger appends records to one audit file. All methods are safe for
// concurrent use. A Logger formats itself without its keys.
//
// One goroutine, started by Open and stopped by Close, owns the file and
// the chain state; Log callers hand it encoded records over a channel and
// wait for the fsync of their batch.
type Logger struct {
	path      string
	node      string
	pub       ed25519.PublicKey
	priv      ed25519.PrivateKey
	macs      sync.Pool // of hash.Hash (HMAC-SHA256 under the HMAC key)
	reqs      sync.Pool // of *request
	every     uint64
	maxBatch  int
	syncEvery time.Duration
	dirty     bool

	mu     sync.RWMutex // closed, and the send on reqC, so Close cannot miss a request
	closed bool
	reqC   chan *request
	stopC  chan struct{}
	doneC  chan struct{}
	failed atomic.Pointer[error] // set once by the writer on the first sink error

	closeOnce sync.Once
	closeErr  error

	// Owned by the writer goroutine after Open returns.
	f       *os.File
	out     sink
	seq     uint64   // seq of the last line written
	prev    [32]byte // hash of the last line written (valid if seq > 0)
	sinceCP uint64   // records since the last checkpoint
	buf     []byte
}

type request struct {
	body []byte     // encoded body, "{...}"
	done chan error // capacity 1: the writer never blocks on a caller
}

// Open opens or creates cfg.Path, continues its chain, and starts the
// writer goroutine. The caller must Close the Logger. Errors wrap
// [ErrInvalidConfig], [ErrCorrupt] or the file system error.
//
// If the file ends in a partial line (a crash during a write), Open
// removes the fragment unless it is a complete record missing only its
// newline: no fragment was ever acknowledged to a caller, because Log
// returns only after fsync.
func Open(cfg Config) (*Logger, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.CheckpointEvery == 0 {
		cfg.CheckpointEvery = DefaultCheckpointEvery
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = errors.New("not a regular file")
		}
		return nil, fmt.Errorf("audit: open %s: %w", cfg.Path, err)
	}
	tail, err := recoverTail(f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Size() == 0 {
		// Make the new file's directory entry durable before the first
		// record is acknowledged.
		if err := syncDir(filepath.Dir(cfg.Path)); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: open: %w", err)
		}
	}
	priv := ed25519.PrivateKey(append([]byte(nil), cfg.SigningKey...))
	macKey := append([]byte(nil), cfg.HMACKey...)
	l := &Logger{
		path:      cfg.Path,
		node:      cfg.Node,
		pub:       priv.Public().(ed25519.PublicKey),
		priv:      priv,
		every:     uint64(cfg.CheckpointEvery),
		maxBatch:  cfg.MaxBatch,
		syncEvery: cfg.SyncInterval,
		reqC:      make(chan *request, cfg.MaxBatch),
		stopC:     make(chan struct{}),
		doneC:     make(chan struct{}),
		f:         f,
		out:       f,
		seq:       tail.seq,
		prev:      tail.hash,
		sinceCP:   tail.sinceCP,
	}
	l.macs.New = func() any { return hmac.New(sha256.New, macKey) }
	l.reqs.New = func() any { return &request{done: make(chan error, 1)} }
	if cfg.wrapSink != nil {
		l.out = cfg.wrapSink(f)
	}
	go l.run()
	return l, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Format prints l without its keys, for every verb.
func (l *Logger) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "audit.Logger{Path: %q, Node: %q}", l.path, l.node)
}

// PublicKey returns a copy of the key that verifies this log's checkpoints.
func (l *Logger) PublicKey() ed25519.PublicKey {
	return append(ed25519.PublicKey(nil), l.pub...)
}

// HMAC returns the hex HMAC-SHA256 of value under the log's HMAC key: the
// form in which sensitive values go into [Record.Hashed]. It is safe for
// concurrent use, works after Close, and does not retain value.
func (l *Logger) HMAC(value []byte) string {
	h := l.macs.Get().(hash.Hash)
	h.Reset()
	h.Write(value)
	var sum [sha256.Size]byte
	out := h.Sum(sum[:0])
	l.macs.Put(h)
	return hex.EncodeToString(out)
}

// Log appends r to the log and returns once the batch holding it is
// written and fsynced. It fills Seq, Node, Prev and, if zero, Time (the
// time of the call); r.Checkpoint must be nil. Concurrent callers are
// batched by one writer (group commit), so Log costs a caller one fsync
// wait, shared with every other record in flight.
//
// Errors: [ErrInvalidRecord] (nothing written), [ErrSinkFailed] (wrapped
// with the I/O error; the Logger is failed until Close), [ErrClosed], or
// ctx's error. If ctx ends after the record was queued, Log returns
// ctx's error and the record may still be written.
func (l *Logger) Log(ctx context.Context, r Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkRecord(&r); err != nil {
		return err
	}
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	b, err := json.Marshal(body{
		Time: t.UTC(), Node: l.node, Identity: r.Identity, Op: r.Op, Key: r.Key, Version: r.Version,
		Outcome: r.Outcome, RequestID: r.RequestID, Source: r.Source, Hashed: r.Hashed,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	if len(b) > maxLine-256 { // room for seq and prev
		return fmt.Errorf("%w: record is %d bytes encoded, limit %d", ErrInvalidRecord, len(b), maxLine-256)
	}
	req := l.reqs.Get().(*request)
	req.body = b

	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		l.putRequest(req)
		return ErrClosed
	}
	if errp := l.failed.Load(); errp != nil {
		l.mu.RUnlock()
		l.putRequest(req)
		return *errp
	}
	select {
	case l.reqC <- req:
	case <-ctx.Done():
		l.mu.RUnlock()
		l.putRequest(req)
		return ctx.Err()
	}
	l.mu.RUnlock()

	select {
	case err := <-req.done:
		l.putRequest(req)
		return err
	case <-ctx.Done():
		// The writer still owns req and will answer into its buffered
		// channel; drop it rather than reuse it.
		return ctx.Err()
	}
}

func (l *Logger) putRequest(req *request) {
	req.body = nil
	l.reqs.Put(req)
}

func checkRecord(r *Record) error {
	switch {
	case r.Op == "":
		return fmt.Errorf("%w: op is empty", ErrInvalidRecord)
	case r.Op == OpCheckpoint || r.Checkpoint != nil:
		return fmt.Errorf("%w: checkpoints are written by the logger", ErrInvalidRecord)
	case r.Outcome == "":
		return fmt.Errorf("%w: outcome is empty", ErrInvalidRecord)
	}
	for k, v := range r.Hashed {
		if len(v) != 2*sha256.Size || !isLowerHex(v) {
			// Name the field, never the value: it may be the raw secret
			// the caller forgot to hash.
			return fmt.Errorf("%w: hashed[%q] is not an HMAC (use Logger.HMAC)", ErrInvalidRecord, k)
		}
	}
	return nil
}

// Close drains queued records, writes a final checkpoint if any record is
// unsigned, fsyncs, closes the file and stops the writer. It is
// idempotent: later calls return the first call's result. If the sink had
// failed, Close returns that failure. Log after Close returns [ErrClosed].
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.stopC)
		<-l.doneC
	})
	return l.closeErr
}

// run is the writer goroutine: it takes whatever is queued (up to
// maxBatch), writes it with one write and one fsync, and answers every
// caller. While it waits on fsync new requests queue up, so batches grow
// with load: that is the group commit.
func (l *Logger) run() {
	defer close(l.doneC)
	batch := make([]*request, 0, l.maxBatch)
	var syncC <-chan time.Time
	var timer *time.Timer
	if l.syncEvery > 0 {
		timer = time.NewTimer(l.syncEvery)
		defer timer.Stop()
		syncC = timer.C
	}
	for {
		select {
		case req := <-l.reqC:
			batch = append(batch[:0], req)
		case <-syncC:
			l.syncDirty()
			timer.Reset(l.syncEvery)
			continue
		case <-l.stopC:
			l.syncDirty()
			l.closeErr = l.finish(batch[:0])
			return
		}
		batch = l.fill(batch)
		l.commit(batch)
	}
}

// syncDirty fsyncs records written since the last fsync (SyncInterval mode).
func (l *Logger) syncDirty() {
	if !l.dirty || l.failed.Load() != nil {
		return
	}
	l.dirty = false
	if err := l.out.Sync(); err != nil {
		err = fmt.Errorf("%w: %s: %w", ErrSinkFailed, l.path, err)
		l.failed.CompareAndSwap(nil, &err)
	}
}

// fill adds queued requests to batch without blocking.
func (l *Logger) fill(batch []*request) []*request {
	for len(batch) < l.maxBatch {
		select {
		case req := <-l.reqC:
			batch = append(batch, req)
		default:
			return batch
		}
	}
	return batch
}

// finish runs at Close: no Log can queue any more (closed is set under
// mu), so draining the channel empties it for good.
func (l *Logger) finish(batch []*request) error {
	for {
		batch = l.fill(batch[:0])
		if len(batch) == 0 {
			break
		}
		l.commit(batch)
	}
	var errs []error
	if errp := l.failed.Load(); errp != nil {
		errs = append(errs, *errp)
	} else if l.sinceCP > 0 {
		l.buf = l.appendCheckpoint(l.buf[:0], time.Now())
		if err := l.flush(l.buf); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("audit: close: %w", err))
	}
	return errors.Join(errs...)
}

// commit writes batch and answers its callers.
func (l *Logger) commit(batch []*request) {
	var err error
	if errp := l.failed.Load(); errp != nil {
		err = *errp
	} else {
		buf := l.buf[:0]
		for _, req := range batch {
			buf = l.appendRecord(buf, req.body)
			if l.sinceCP >= l.every {
				buf = l.appendCheckpoint(buf, time.Now())
			}
		}
		l.buf = buf
		if l.syncEvery > 0 {
			err = l.write(buf)
		} else {
			err = l.flush(buf)
		}
	}
	for _, req := range batch {
		req.done <- err
	}
	clear(batch) // drop references to bodies
}

// write writes buf without fsync (SyncInterval mode); the next timer tick
// fsyncs it. On failure it marks the Logger failed.
func (l *Logger) write(buf []byte) error {
	if _, err := l.out.Write(buf); err != nil {
		err = fmt.Errorf("%w: %s: %w", ErrSinkFailed, l.path, err)
		l.failed.CompareAndSwap(nil, &err)
		return *l.failed.Load()
	}
	l.dirty = true
	return nil
}

// flush writes and fsyncs buf; on failure it marks the Logger failed.
// The in-memory chain has already advanced past buf, which is harmless:
// a failed Logger never writes again.
func (l *Logger) flush(buf []byte) error {
	_, err := l.out.Write(buf)
	if err == nil {
		err = l.out.Sync()
	}
	if err != nil {
		err = fmt.Errorf("%w: %s: %w", ErrSinkFailed, l.path, err)
		l.failed.CompareAndSwap(nil, &err)
		return *l.failed.Load()
	}
	return nil
}

// appendRecord appends `{"seq":N,"prev":"H",` + body[1:] + "\n" and
// advances the chain.
func (l *Logger) appendRecord(buf, body []byte) []byte {
	start := len(buf)
	buf = append(buf, `{"seq":`...)
	buf = strconv.AppendUint(buf, l.seq+1, 10)
	buf = append(buf, `,"prev":"`...)
	if l.seq > 0 {
		buf = hex.AppendEncode(buf, l.prev[:])
	}
	buf = append(buf, `",`...)
	buf = append(buf, body[1:]...)
	l.advance(buf[start:])
	l.sinceCP++
	return append(buf, '\n')
}

// appendCheckpoint appends a signed checkpoint over the current head.
func (l *Logger) appendCheckpoint(buf []byte, now time.Time) []byte {
	head := hex.EncodeToString(l.prev[:])
	rec := Record{
		Seq:     l.seq + 1,
		Time:    now.UTC(),
		Node:    l.node,
		Op:      OpCheckpoint,
		Outcome: "ok",
		Prev:    head,
		Checkpoint: &Checkpoint{
			Count:     l.sinceCP,
			Head:      head,
			Signature: signCheckpoint(l.priv, l.seq+1, l.prev),
		},
	}
	line, err := json.Marshal(rec)
	if err != nil {
		panic("audit: encode checkpoint: " + err.Error()) // only plain types: cannot fail
	}
	start := len(buf)
	buf = append(buf, line...)
	l.advance(buf[start:])
	l.sinceCP = 0
	return append(buf, '\n')
}

func (l *Logger) advance(line []byte) {
	l.seq++
	l.prev = sha256.Sum256(line)
}
