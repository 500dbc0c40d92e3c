package fsm

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestKVRecordBytesBounded: a secret's versions live in one record that
// every read decodes and every write re-encodes whole (in the single
// apply loop every write of the cluster waits on). An app token with
// kv-write on one path must not grow it to max_versions (100) x 80 KiB
// of sealed values (8.7 MB of JSON, a quarter second to decode per
// GET): the write that exceeds MaxKVRecordSealed prunes the oldest
// versions, as exceeding max_versions does, keeping the newest.
func TestKVRecordBytesBounded(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	d.apply(initCmd())
	big := strings.Repeat("x", MaxKVSealed)
	if r := d.apply(kvPut("app1/big", 1, nil, big)); r.Err != nil {
		t.Fatal(r.Err)
	}
	hundred := MaxKVMaxVersions
	if r := d.apply(&KVConfig{Meta: Meta{At: t0}, Path: "app1/big", MaxVersions: &hundred}); r.Err != nil {
		t.Fatal(r.Err)
	}
	for v := uint32(2); v <= uint32(MaxKVMaxVersions); v++ {
		if r := d.apply(kvPut("app1/big", v, nil, big)); r.Err != nil {
			t.Fatalf("v%d: %v", v, r.Err)
		}
	}
	rec, err := f.KV("app1/big")
	if err != nil {
		t.Fatal(err)
	}
	sealed := 0
	for _, v := range rec.Versions {
		sealed += len(v.Sealed)
	}
	b, _ := json.Marshal(rec)
	if sealed > MaxKVRecordSealed || len(b) > 2*MaxKVRecordSealed {
		t.Fatalf("record holds %d sealed bytes in %d versions (%d bytes encoded), limit %d", sealed, len(rec.Versions), len(b), MaxKVRecordSealed)
	}
	if rec.Current != uint32(MaxKVMaxVersions) || rec.Versions[len(rec.Versions)-1].Version != rec.Current {
		t.Fatalf("the newest version was not kept: current %d, versions %d..", rec.Current, rec.Versions[0].Version)
	}
	// Small values still keep max_versions versions.
	for v := uint32(1); v <= 20; v++ {
		if r := d.apply(kvPut("app1/small", v, nil, "s")); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if rec, _ := f.KV("app1/small"); len(rec.Versions) != DefaultKVMaxVersions {
		t.Fatalf("small secret keeps %d versions, want %d", len(rec.Versions), DefaultKVMaxVersions)
	}
}
