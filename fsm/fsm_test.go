package fsm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func openTest(t *testing.T, obs Observer) *FSM {
	t.Helper()
	f, err := Open(filepath.Join(t.TempDir(), "state.db"), obs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// applier drives an FSM with consecutive log indexes.
type driver struct {
	t   *testing.T
	f   *FSM
	idx uint64
}

func (d *driver) apply(c Command) *Result {
	d.t.Helper()
	b, err := Encode(c)
	if err != nil {
		d.t.Fatalf("encode: %v", err)
	}
	d.idx++
	return d.f.Apply(&raft.Log{Index: d.idx, Term: 1, Type: raft.LogCommand, Data: b}).(*Result)
}

func wv(v uint32) WrappedVersion {
	return WrappedVersion{Version: v, BarrierVersion: 1, Wrapped: []byte{byte(v), 1, 2, 3}}
}

func initCmd() *Init {
	return &Init{Meta: Meta{At: t0}, Custodians: 5, Threshold: 3, Commitments: []byte{1}, WrappedBarrier: []byte{2}, AdminTokenHash: bytes.Repeat([]byte{7}, 32)}
}

func TestApplyLifecycle(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	u32 := func(v uint32) *uint32 { return &v }
	dur := func(v time.Duration) *time.Duration { return &v }
	tests := []struct {
		name    string
		cmd     Command
		wantErr error
		check   func(t *testing.T, k *KeyRecord)
	}{
		{"create before init", &CreateKey{Meta: Meta{At: t0}, Name: "k", Type: "aes256-gcm", First: wv(1)}, ErrNotInitialized, nil},
		{"init", initCmd(), nil, nil},
		{"init twice", initCmd(), ErrAlreadyInitialized, nil},
		{"create", &CreateKey{Meta: Meta{At: t0}, Name: "k", Type: "aes256-gcm", First: wv(1)}, nil, func(t *testing.T, k *KeyRecord) {
			if k.Latest() != 1 || k.State != StateEnabled || k.MinDecryptionVersion != 1 {
				t.Errorf("got %+v", k)
			}
		}},
		{"create exists", &CreateKey{Meta: Meta{At: t0}, Name: "k", Type: "aes256-gcm", First: wv(1)}, ErrKeyExists, nil},
		{"create bad version", &CreateKey{Meta: Meta{At: t0}, Name: "k2", Type: "aes256-gcm", First: wv(2)}, ErrInvalidCommand, nil},
		{"create no material", &CreateKey{Meta: Meta{At: t0}, Name: "k2", Type: "aes256-gcm", First: WrappedVersion{Version: 1}}, ErrInvalidCommand, nil},
		{"rotate", &RotateKey{Meta: Meta{At: t0.Add(time.Hour)}, Name: "k", FromVersion: 1, New: wv(2)}, nil, func(t *testing.T, k *KeyRecord) {
			if k.Latest() != 2 || !k.RotatedAt.Equal(t0.Add(time.Hour)) {
				t.Errorf("got latest %d rotated %v", k.Latest(), k.RotatedAt)
			}
		}},
		{"rotate stale", &RotateKey{Meta: Meta{At: t0}, Name: "k", FromVersion: 1, New: wv(2)}, ErrConflict, nil},
		{"rotate missing", &RotateKey{Meta: Meta{At: t0}, Name: "nope", FromVersion: 1, New: wv(2)}, ErrKeyNotFound, nil},
		{"min decryption too high", &ConfigureKey{Meta: Meta{At: t0}, Name: "k", MinDecryptionVersion: u32(3)}, ErrInvalidCommand, nil},
		{"min decryption", &ConfigureKey{Meta: Meta{At: t0}, Name: "k", MinDecryptionVersion: u32(2), RotationPeriod: dur(time.Hour)}, nil, func(t *testing.T, k *KeyRecord) {
			if k.MinDecryptionVersion != 2 || k.RotationPeriod != time.Hour {
				t.Errorf("got %+v", k)
			}
		}},
		{"disable", &SetKeyState{Meta: Meta{At: t0}, Name: "k"}, nil, func(t *testing.T, k *KeyRecord) {
			if k.State != StateDisabled {
				t.Errorf("got state %s", k.State)
			}
		}},
		{"enable", &SetKeyState{Meta: Meta{At: t0}, Name: "k", Enabled: true}, nil, nil},
		{"cancel unscheduled", &CancelDeletion{Meta: Meta{At: t0}, Name: "k"}, ErrConflict, nil},
		{"schedule in past", &ScheduleDeletion{Meta: Meta{At: t0}, Name: "k", DeleteAt: t0}, ErrInvalidCommand, nil},
		{"schedule", &ScheduleDeletion{Meta: Meta{At: t0}, Name: "k", DeleteAt: t0.Add(48 * time.Hour)}, nil, func(t *testing.T, k *KeyRecord) {
			if k.State != StatePendingDeletion {
				t.Errorf("got state %s", k.State)
			}
		}},
		{"rotate pending", &RotateKey{Meta: Meta{At: t0}, Name: "k", FromVersion: 2, New: wv(3)}, ErrKeyPendingDeletion, nil},
		{"enable pending", &SetKeyState{Meta: Meta{At: t0}, Name: "k", Enabled: true}, ErrKeyPendingDeletion, nil},
		{"delete early", &DeleteKey{Meta: Meta{At: t0.Add(time.Hour)}, Name: "k", DeleteAt: t0.Add(48 * time.Hour)}, ErrConflict, nil},
		{"cancel", &CancelDeletion{Meta: Meta{At: t0}, Name: "k"}, nil, func(t *testing.T, k *KeyRecord) {
			if k.State != StateDisabled || !k.DeletionAt.IsZero() {
				t.Errorf("got %+v", k)
			}
		}},
		{"delete not scheduled", &DeleteKey{Meta: Meta{At: t0.Add(72 * time.Hour)}, Name: "k", DeleteAt: t0.Add(48 * time.Hour)}, ErrConflict, nil},
		{"reschedule", &ScheduleDeletion{Meta: Meta{At: t0}, Name: "k", DeleteAt: t0.Add(24 * time.Hour)}, nil, nil},
		{"delete due", &DeleteKey{Meta: Meta{At: t0.Add(25 * time.Hour)}, Name: "k", DeleteAt: t0.Add(24 * time.Hour)}, nil, nil},
		{"token bad", &PutToken{Meta: Meta{At: t0}, Hash: []byte{1}, Policies: []string{"x"}}, ErrInvalidCommand, nil},
	}
	for _, tt := range tests {
		before := dump(t, f)
		// The leader's precheck agrees with Apply and changes nothing.
		if err := f.Check(tt.cmd); !errors.Is(err, tt.wantErr) {
			t.Fatalf("%s: Check: got err %v, want %v", tt.name, err, tt.wantErr)
		}
		if dump(t, f) != before {
			t.Fatalf("%s: Check changed the state", tt.name)
		}
		res := d.apply(tt.cmd)
		if !errors.Is(res.Err, tt.wantErr) {
			t.Fatalf("%s: got err %v, want %v", tt.name, res.Err, tt.wantErr)
		}
		if tt.wantErr != nil && dump(t, f) != before {
			t.Fatalf("%s: failed command changed the state", tt.name)
		}
		if tt.check != nil {
			k, err := f.Key("k")
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			tt.check(t, k)
		}
	}
	if _, err := f.Key("k"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("got %v after delete, want ErrKeyNotFound", err)
	}
	if got := f.AppliedIndex(); got != d.idx {
		t.Fatalf("applied %d, want %d", got, d.idx)
	}
}

func dump(t *testing.T, f *FSM) string {
	t.Helper()
	var b bytes.Buffer
	if err := f.Dump(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRequestIDDedup(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	c := &CreateKey{Meta: Meta{RequestID: "r1", At: t0}, Name: "k", Type: "aes256-gcm", First: wv(1)}
	first := d.apply(c)
	if first.Err != nil || first.Duplicate {
		t.Fatalf("first apply: %+v", first)
	}
	again := d.apply(c)
	if again.Err != nil || !again.Duplicate || again.Index != first.Index {
		t.Fatalf("retry: got %+v, want duplicate of index %d", again, first.Index)
	}
	r := &RotateKey{Meta: Meta{RequestID: "r2", At: t0}, Name: "k", FromVersion: 1, New: wv(2)}
	d.apply(r)
	if res := d.apply(r); !res.Duplicate {
		t.Fatalf("rotate retry not deduplicated: %+v", res)
	}
	k, _ := f.Key("k")
	if k.Latest() != 2 {
		t.Fatalf("latest %d, want 2", k.Latest())
	}
	// Ids older than the retention are forgotten.
	d.apply(&SetKeyState{Meta: Meta{RequestID: "r3", At: t0.Add(RequestRetention + time.Minute)}, Name: "k", Enabled: true})
	if _, ok := f.RequestIndex("r1"); ok {
		t.Fatal("r1 still remembered after retention")
	}
	if _, ok := f.RequestIndex("r3"); !ok {
		t.Fatal("r3 not remembered")
	}
}

func TestReplaySkipsApplied(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "k", Type: "aes256-gcm", First: wv(1)})
	rot, _ := Encode(&RotateKey{Meta: Meta{At: t0}, Name: "k", FromVersion: 1, New: wv(2)})
	f.Apply(&raft.Log{Index: 3, Term: 1, Type: raft.LogCommand, Data: rot})
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.AppliedIndex() != 3 {
		t.Fatalf("applied %d after reopen, want 3", f.AppliedIndex())
	}
	// Raft replays index 3: it must not rotate twice (which would also fail).
	res := f.Apply(&raft.Log{Index: 3, Term: 1, Type: raft.LogCommand, Data: rot}).(*Result)
	if !res.Duplicate || res.Err != nil {
		t.Fatalf("replay: %+v", res)
	}
	k, _ := f.Key("k")
	if k.Latest() != 2 {
		t.Fatalf("latest %d, want 2", k.Latest())
	}
}

func TestBatchAndObserver(t *testing.T) {
	t.Parallel()
	var events []Event
	f := openTest(t, func(ev Event) { events = append(events, ev) })
	var logs []*raft.Log
	for i, c := range []Command{
		initCmd(),
		&CreateKey{Meta: Meta{At: t0}, Name: "a", Type: "aes256-gcm", First: wv(1)},
		&CreateKey{Meta: Meta{At: t0}, Name: "a", Type: "aes256-gcm", First: wv(1)}, // exists
		&CreateKey{Meta: Meta{At: t0}, Name: "b", Type: "aes256-gcm", First: wv(1)},
	} {
		b, _ := Encode(c)
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: b})
	}
	logs = append(logs, &raft.Log{Index: 5, Type: raft.LogConfiguration})
	out := f.ApplyBatch(logs)
	if len(out) != 5 {
		t.Fatalf("got %d results", len(out))
	}
	if err := out[2].(*Result).Err; !errors.Is(err, ErrKeyExists) {
		t.Fatalf("got %v, want ErrKeyExists", err)
	}
	if len(events) != 1 || !events[0].Init || len(events[0].Keys) != 2 || events[0].Index != 5 {
		t.Fatalf("events %+v", events)
	}
	names, more, err := f.ListKeys("", 1)
	if err != nil || more != true || len(names) != 1 || names[0] != "a" {
		t.Fatalf("list: %v %v %v", names, more, err)
	}
	names, more, _ = f.ListKeys("a", 10)
	if more || len(names) != 1 || names[0] != "b" {
		t.Fatalf("list after a: %v %v", names, more)
	}
}

// Two rotations of one key in one batch: each result carries the record as
// its own command left it, so each reply names the version it made (the
// first rotation's reply used to read the key after the second).
func TestRotateResultsInOneBatch(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	var logs []*raft.Log
	for i, c := range []Command{
		initCmd(),
		&CreateKey{Meta: Meta{At: t0}, Name: "a", Type: "aes256-gcm", First: wv(1)},
		&RotateKey{Meta: Meta{At: t0, RequestID: "r2"}, Name: "a", FromVersion: 1, New: wv(2)},
		&RotateKey{Meta: Meta{At: t0, RequestID: "r3"}, Name: "a", FromVersion: 2, New: wv(3)},
	} {
		b, _ := Encode(c)
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: b})
	}
	out := f.ApplyBatch(logs)
	for i, want := range map[int]uint32{1: 1, 2: 2, 3: 3} {
		r := out[i].(*Result)
		if r.Err != nil || r.Key == nil || r.Key.Latest() != want {
			t.Fatalf("result %d: %+v, want the key at version %d", i, r, want)
		}
	}
}

func TestWaitApplied(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	done := make(chan error, 1)
	go func() { done <- f.WaitApplied(context.Background(), 2) }()
	d.apply(initCmd())
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "a", Type: "aes256-gcm", First: wv(1)})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.WaitApplied(ctx, 99); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

type sink struct {
	bytes.Buffer
	cancelled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { s.cancelled = true; return nil }
func (s *sink) Close() error  { return nil }

func snapshotOf(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	return s.Bytes()
}

func TestSnapshotRestore(t *testing.T) {
	t.Parallel()
	src := openTest(t, nil)
	d := &driver{t: t, f: src}
	d.apply(initCmd())
	d.apply(&CreateKey{Meta: Meta{At: t0}, Name: "a", Type: "aes256-gcm", First: wv(1)})
	snap := snapshotOf(t, src)
	if err := VerifySnapshot(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}

	var restored int
	dst := openTest(t, func(ev Event) {
		if ev.Restored {
			restored++
		}
	})
	if err := dst.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if dump(t, dst) != dump(t, src) || dst.AppliedIndex() != src.AppliedIndex() || restored != 1 {
		t.Fatal("restored state differs from source")
	}

	corrupt := func(mut func([]byte) []byte) []byte { return mut(bytes.Clone(snap)) }
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"bad magic", corrupt(func(b []byte) []byte { b[0] ^= 1; return b })},
		{"bad version", corrupt(func(b []byte) []byte { b[8] = 9; return b })},
		{"truncated", snap[:len(snap)/2]},
		{"no checksum", snap[:len(snap)-32]},
		{"flipped byte", corrupt(func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b })},
		{"huge length", corrupt(func(b []byte) []byte { b[9] = 0xff; return b })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := dump(t, dst)
			err := dst.Restore(io.NopCloser(bytes.NewReader(tt.data)))
			if !errors.Is(err, ErrSnapshotCorrupt) {
				t.Fatalf("got %v, want ErrSnapshotCorrupt", err)
			}
			if dump(t, dst) != before {
				t.Fatal("corrupt snapshot changed the state")
			}
		})
	}
}

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	u := uint32(2)
	cmds := []Command{
		initCmd(),
		&CreateKey{Meta: Meta{RequestID: "x", At: t0}, Name: "k", Type: "ed25519", First: wv(1)},
		&RotateKey{Name: "k", FromVersion: 1, New: wv(2)},
		&SetKeyState{Name: "k", Enabled: true},
		&ConfigureKey{Name: "k", MinDecryptionVersion: &u},
		&ScheduleDeletion{Name: "k", DeleteAt: t0},
		&CancelDeletion{Name: "k"},
		&DeleteKey{Name: "k", DeleteAt: t0},
		&PutToken{Hash: make([]byte, 32), Policies: []string{"admin"}},
		&RevokeToken{Hash: make([]byte, 32)},
	}
	for _, c := range cmds {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		b2, _ := Encode(got)
		if !bytes.Equal(b, b2) {
			t.Fatalf("%T: round trip differs", c)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {2, 1, '{', '}'}, {1, 0, '{', '}'}, {1, 99, '{', '}'}, {1, 1, '['}} {
		if _, err := Decode(bad); !errors.Is(err, ErrInvalidCommand) && !errors.Is(err, ErrUnknownCommand) {
			t.Fatalf("Decode(%x): got %v", bad, err)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []Command{initCmd(), &CreateKey{Name: "k", Type: "aes256-gcm", First: wv(1)}, &RotateKey{Name: "k"}} {
		b, _ := Encode(c)
		f.Add(b)
	}
	f.Add([]byte{1, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidCommand) && !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if _, err := Encode(c); err != nil && !errors.Is(err, ErrInvalidCommand) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

func FuzzRestore(f *testing.F) {
	f.Add([]byte("KEYDSNAP\x01\x00\x00\x00\x00\x00\x00\x00\x01x"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := VerifySnapshot(bytes.NewReader(b)); err == nil {
			t.Fatal("arbitrary bytes verified as a snapshot")
		} else if !errors.Is(err, ErrSnapshotCorrupt) {
			t.Fatalf("untyped error %v", err)
		}
	})
}
