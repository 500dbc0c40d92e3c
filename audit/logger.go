package audit

import (
	"context"
	"crypto"
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

	"github.com/keyd/keyd/internal/durable"
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
	// ErrSinkMoved means the log file was moved, deleted or replaced
	// under the Logger: records would go to a file nobody reads. Log
	// refuses records until the path names the open file again (moved
	// back) or [Logger.Reopen] adopts the file now at the path.
	ErrSinkMoved = errors.New("audit: log file moved, deleted or replaced")
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
	// SigningKey signs checkpoints; its public half verifies the log. It
	// may be nil: records are then chained but not signed until
	// [Logger.SetSigningKey] installs a key (keyd keeps the key sealed, so
	// a sealed node writes unsigned records; the cluster's anchors cover
	// them).
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
	// RotateSize, when positive, closes the file and starts a new one
	// once it holds this many bytes; RotateAge does so once the Logger has
	// written the file this long. The closed file is renamed to
	// Path.<last seq, 20 digits>, gzipped, and the new file continues the
	// chain (its first line's prev is the closed file's last line).
	RotateSize int64
	RotateAge  time.Duration
	// RotateKeep is how many closed files to keep (0: all).
	RotateKeep int
	// CheckInterval is how often an idle Logger checks that Path still
	// names its open file (default 500ms); every batch checks too.
	CheckInterval time.Duration

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
	if c.SigningKey != nil && len(c.SigningKey) != ed25519.PrivateKeySize {
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
	if c.RotateSize < 0 || c.RotateAge < 0 || c.RotateKeep < 0 || c.CheckInterval < 0 {
		errs = append(errs, errors.New("rotation settings are negative"))
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
	path       string
	node       string
	macs       sync.Pool // of hash.Hash (HMAC-SHA256 under the HMAC key)
	reqs       sync.Pool // of *request
	every      uint64
	maxBatch   int
	syncEvery  time.Duration
	rot        rotation
	checkEvery time.Duration
	wrapSink   func(sink) sink

	mu     sync.RWMutex // closed, and the send on reqC, so Close cannot miss a request
	closed bool
	reqC   chan *request
	ctlC   chan func()
	stopC  chan struct{}
	doneC  chan struct{}
	failed atomic.Pointer[error] // set once by the writer on the first sink error
	moved  atomic.Bool           // the path no longer names the open file
	pub    atomic.Pointer[ed25519.PublicKey]
	head   atomic.Pointer[Head] // durable head
	bg     sync.WaitGroup       // compression of rotated files

	closeOnce sync.Once
	closeErr  error

	// Owned by the writer goroutine after Open returns.
	signer   crypto.Signer
	ownKey   ed25519.PrivateKey // a copy made by Open or SetSigningKey, zeroed when dropped
	f        *os.File
	fst      os.FileInfo
	out      sink
	size     int64
	openedAt time.Time
	dirty    bool
	seq      uint64   // seq of the last line written
	prev     [32]byte // hash of the last line written (valid if seq > 0)
	sinceCP  uint64   // records since the last checkpoint
	buf      []byte
}

type rotation struct {
	size int64
	age  time.Duration
	keep int
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
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = 500 * time.Millisecond
	}
	f, st, tail, err := openFile(cfg.Path)
	if err != nil {
		return nil, err
	}
	macKey := append([]byte(nil), cfg.HMACKey...)
	l := &Logger{
		path:       cfg.Path,
		node:       cfg.Node,
		every:      uint64(cfg.CheckpointEvery),
		maxBatch:   cfg.MaxBatch,
		syncEvery:  cfg.SyncInterval,
		rot:        rotation{size: cfg.RotateSize, age: cfg.RotateAge, keep: cfg.RotateKeep},
		checkEvery: cfg.CheckInterval,
		wrapSink:   cfg.wrapSink,
		reqC:       make(chan *request, cfg.MaxBatch),
		ctlC:       make(chan func()),
		stopC:      make(chan struct{}),
		doneC:      make(chan struct{}),
		seq:        tail.seq,
		prev:       tail.hash,
		sinceCP:    tail.sinceCP,
	}
	l.use(f, st)
	if cfg.SigningKey != nil {
		l.ownKey = append(ed25519.PrivateKey(nil), cfg.SigningKey...)
		l.signer = l.ownKey
		pub := l.ownKey.Public().(ed25519.PublicKey)
		l.pub.Store(&pub)
	}
	l.head.Store(&Head{Seq: tail.seq, Hash: tail.hash})
	l.macs.New = func() any { return hmac.New(sha256.New, macKey) }
	l.reqs.New = func() any { return &request{done: make(chan error, 1)} }
	go l.run()
	return l, nil
}

// openFile opens or creates path for appending and reads its tail.
func openFile(path string) (*os.File, os.FileInfo, tailState, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, tailState{}, fmt.Errorf("audit: open: %w", err)
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = errors.New("not a regular file")
		}
		return nil, nil, tailState{}, fmt.Errorf("audit: open %s: %w", path, err)
	}
	tail, err := recoverTail(f, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, tailState{}, err
	}
	if st.Size() == 0 {
		// Make the new file's directory entry durable before the first
		// record is acknowledged.
		if err := durable.SyncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, nil, tailState{}, fmt.Errorf("audit: open: %w", err)
		}
	}
	if st, err = f.Stat(); err != nil { // size after a torn-line repair
		f.Close()
		return nil, nil, tailState{}, fmt.Errorf("audit: open: %w", err)
	}
	return f, st, tail, nil
}

// use makes f the file the writer appends to.
func (l *Logger) use(f *os.File, st os.FileInfo) {
	l.f, l.fst, l.out = f, st, f
	l.size, l.openedAt = st.Size(), time.Now()
	if l.wrapSink != nil {
		l.out = l.wrapSink(f)
	}
}

// Healthy reports whether Log can write: the sink has not failed and the
// path still names the open file.
func (l *Logger) Healthy() bool { return l.failed.Load() == nil && !l.moved.Load() }

// Head returns the durable end of the chain: the last line written and
// fsynced. keyd anchors it through Raft.
func (l *Logger) Head() Head { return *l.head.Load() }

// control runs fn on the writer goroutine and returns its error.
func (l *Logger) control(fn func() error) error {
	errC := make(chan error, 1)
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case l.ctlC <- func() { errC <- fn() }:
	case <-l.doneC:
		l.mu.RUnlock()
		return ErrClosed
	}
	l.mu.RUnlock()
	return <-errC
}

// SetSigningKey installs the key that signs checkpoints (nil removes it,
// as when the node seals). Installing a key writes a checkpoint over
// every record written without one; removing it writes a last checkpoint
// with the old key first. The Logger copies the key.
func (l *Logger) SetSigningKey(priv ed25519.PrivateKey) error {
	if priv == nil {
		return l.SetSigner(nil)
	}
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: signing key is %d bytes", ErrInvalidConfig, len(priv))
	}
	own := append(ed25519.PrivateKey(nil), priv...)
	return l.setSigner(own, own)
}

// SetSigner is SetSigningKey for a key the Logger cannot copy (keyd keeps
// it in sealed key material). s must be an ed25519 signer: Public returns
// an ed25519.PublicKey and Sign(nil, msg, crypto.Hash(0)) a pure Ed25519
// signature. The caller must keep s usable until it is replaced.
func (l *Logger) SetSigner(s crypto.Signer) error {
	if s != nil {
		if pub, ok := s.Public().(ed25519.PublicKey); !ok || len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: signer is not ed25519", ErrInvalidConfig)
		}
	}
	return l.setSigner(s, nil)
}

func (l *Logger) setSigner(s crypto.Signer, own ed25519.PrivateKey) error {
	return l.control(func() error {
		err := l.checkpointNow()
		clear(l.ownKey)
		l.signer, l.ownKey = nil, nil
		l.pub.Store(nil)
		if s != nil {
			l.signer, l.ownKey = s, own
			pub := append(ed25519.PublicKey(nil), s.Public().(ed25519.PublicKey)...)
			l.pub.Store(&pub)
			if err == nil {
				err = l.checkpointNow()
			}
		}
		return err
	})
}

// checkpointNow writes and fsyncs a checkpoint if records are unsigned
// and a key is installed. Writer goroutine only.
func (l *Logger) checkpointNow() error {
	if l.signer == nil || l.sinceCP == 0 {
		return nil
	}
	if errp := l.failed.Load(); errp != nil {
		return *errp
	}
	if l.moved.Load() {
		return ErrSinkMoved
	}
	l.buf = l.appendCheckpoint(l.buf[:0], time.Now())
	return l.flush(l.buf)
}

// Reopen is for SIGHUP after an external rotation (logrotate): if the
// path no longer names the open file, it closes that file and adopts the
// one at the path. A new or empty file continues the chain from the
// current head; a non-empty file must end with the current head (the
// same log, moved back or copied). Anything else is refused and the
// Logger keeps refusing records.
func (l *Logger) Reopen() error {
	return l.control(func() error {
		if errp := l.failed.Load(); errp != nil {
			return *errp
		}
		if st, err := os.Stat(l.path); err == nil && os.SameFile(st, l.fst) {
			l.moved.Store(false)
			return nil
		}
		_ = l.checkpointOld()
		f, st, tail, err := openFile(l.path)
		if err != nil {
			l.moved.Store(true)
			return err
		}
		if tail.seq != 0 && (tail.seq != l.seq || tail.hash != l.prev) {
			f.Close()
			l.moved.Store(true)
			return fmt.Errorf("%w: %s holds another chain (ends at seq %d, this log is at seq %d)", ErrSinkMoved, l.path, tail.seq, l.seq)
		}
		_ = l.f.Close()
		l.use(f, st)
		l.moved.Store(false)
		return nil
	})
}

// checkpointOld signs what the moved file holds before it is let go.
func (l *Logger) checkpointOld() error {
	if l.signer == nil || l.sinceCP == 0 || l.failed.Load() != nil {
		return nil
	}
	l.buf = l.appendCheckpoint(l.buf[:0], time.Now())
	return l.flush(l.buf)
}

// checkPath compares the open file with the path; it is cheap (one stat)
// and runs once per batch and every CheckInterval.
func (l *Logger) checkPath() bool {
	st, err := os.Stat(l.path)
	ok := err == nil && os.SameFile(st, l.fst)
	l.moved.Store(!ok)
	return ok
}

// Format prints l without its keys, for every verb.
func (l *Logger) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "audit.Logger{Path: %q, Node: %q}", l.path, l.node)
}

// PublicKey returns a copy of the key that verifies this log's
// checkpoints, or nil while no signing key is installed.
func (l *Logger) PublicKey() ed25519.PublicKey {
	p := l.pub.Load()
	if p == nil {
		return nil
	}
	return append(ed25519.PublicKey(nil), (*p)...)
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
		Target: r.Target, Items: r.Items, Failed: r.Failed, Versions: r.Versions,
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
	if l.moved.Load() {
		l.mu.RUnlock()
		l.putRequest(req)
		return ErrSinkMoved
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
// unsigned and a signing key is installed, fsyncs, closes the file and
// stops the writer. It is idempotent: later calls return the first call's
// result. If the sink had failed, Close returns that failure. Log after
// Close returns [ErrClosed]. The final head stays readable with Head.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.stopC)
		<-l.doneC
		l.bg.Wait()
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
	if l.syncEvery > 0 {
		t := time.NewTicker(l.syncEvery)
		defer t.Stop()
		syncC = t.C
	}
	check := time.NewTicker(l.checkEvery)
	defer check.Stop()
	for {
		select {
		case req := <-l.reqC:
			batch = append(batch[:0], req)
		case <-syncC:
			l.syncDirty()
			continue
		case <-check.C:
			if l.failed.Load() == nil {
				l.checkPath()
				l.maybeRotate()
			}
			continue
		case fn := <-l.ctlC:
			l.syncDirty()
			fn()
			continue
		case <-l.stopC:
			l.syncDirty()
			l.closeErr = l.finish(batch[:0])
			return
		}
		batch = l.fill(batch)
		l.commit(batch)
		l.maybeRotate()
	}
}

// publish records the durable head after an fsync.
func (l *Logger) publish() {
	l.head.Store(&Head{Seq: l.seq, Hash: l.prev})
}

// syncDirty fsyncs records written since the last fsync (SyncInterval mode).
func (l *Logger) syncDirty() {
	if !l.dirty || l.failed.Load() != nil {
		return
	}
	l.dirty = false
	if err := l.out.Sync(); err != nil {
		l.fail(err)
		return
	}
	l.publish()
}

func (l *Logger) fail(err error) error {
	err = fmt.Errorf("%w: %s: %w", ErrSinkFailed, l.path, err)
	l.failed.CompareAndSwap(nil, &err)
	return *l.failed.Load()
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
	} else if l.signer != nil && l.sinceCP > 0 && !l.moved.Load() {
		l.buf = l.appendCheckpoint(l.buf[:0], time.Now())
		if err := l.flush(l.buf); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("audit: close: %w", err))
	}
	clear(l.ownKey)
	l.signer, l.ownKey = nil, nil
	return errors.Join(errs...)
}

// commit writes batch and answers its callers.
func (l *Logger) commit(batch []*request) {
	var err error
	if errp := l.failed.Load(); errp != nil {
		err = *errp
	} else if !l.checkPath() {
		// The file was moved, deleted or replaced: nobody would read
		// what is written to it.
		err = ErrSinkMoved
	} else {
		buf := l.buf[:0]
		for _, req := range batch {
			buf = l.appendRecord(buf, req.body)
			if l.signer != nil && l.sinceCP >= l.every {
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
	n, err := l.out.Write(buf)
	l.size += int64(n)
	if err != nil {
		return l.fail(err)
	}
	l.dirty = true
	return nil
}

// flush writes and fsyncs buf; on failure it marks the Logger failed.
// The in-memory chain has already advanced past buf, which is harmless:
// a failed Logger never writes again.
func (l *Logger) flush(buf []byte) error {
	n, err := l.out.Write(buf)
	l.size += int64(n)
	if err == nil {
		err = l.out.Sync()
	}
	if err != nil {
		return l.fail(err)
	}
	l.dirty = false
	l.publish()
	return nil
}

// maybeRotate closes the file and starts the next one when it is large
// or old enough. Writer goroutine only.
func (l *Logger) maybeRotate() {
	if l.failed.Load() != nil || l.moved.Load() || l.seq == 0 || l.size == 0 {
		return
	}
	if !(l.rot.size > 0 && l.size >= l.rot.size || l.rot.age > 0 && time.Since(l.openedAt) >= l.rot.age) {
		return
	}
	if err := l.rotate(); err != nil {
		l.fail(err)
	}
}

// rotate signs and fsyncs the current file, renames it to
// path.<last seq>, opens a new file at path and compresses the old one in
// the background. The new file's first record carries the old file's
// last hash as its prev: the chain continues.
func (l *Logger) rotate() error {
	if l.signer != nil && l.sinceCP > 0 {
		l.buf = l.appendCheckpoint(l.buf[:0], time.Now())
		if _, err := l.out.Write(l.buf); err != nil {
			return err
		}
	}
	if err := l.out.Sync(); err != nil {
		return err
	}
	l.dirty = false
	l.publish()
	closed := RotatedName(l.path, l.seq)
	if err := os.Rename(l.path, closed); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	f, st, tail, err := openFile(l.path)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if tail.seq != 0 {
		f.Close()
		return fmt.Errorf("rotate: %s appeared during rotation", l.path)
	}
	_ = l.f.Close()
	l.use(f, st)
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		compressAndPrune(l.path, closed, l.rot.keep)
	}()
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

// appendCheckpoint appends a signed checkpoint over the current head. If
// the signer fails it appends nothing: the records stay unsigned (and
// chained and anchored).
func (l *Logger) appendCheckpoint(buf []byte, now time.Time) []byte {
	sig, err := l.signer.Sign(nil, checkpointMessage(l.seq+1, l.prev), crypto.Hash(0))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return buf
	}
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
			Signature: sig,
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
