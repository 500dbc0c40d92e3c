package fsm

import (
	"encoding/json"
	"testing"
	"time"
)

// TestResultKey: a create's or rotation's result carries the record it
// wrote, equal to the stored one; a duplicate request and other commands
// carry none.
func TestResultKey(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	if res := d.apply(initCmd()); res.Err != nil || res.Key != nil {
		t.Fatalf("init: %+v", res)
	}
	create := &CreateKey{Meta: Meta{At: t0, RequestID: "rid-1"}, Name: "k", Type: "aes256-gcm", First: wv(1), Tags: []string{"pci"}, Retention: time.Hour}
	res := d.apply(create)
	if res.Err != nil || res.Key == nil {
		t.Fatalf("create: %+v", res)
	}
	stored, err := f.Key("k")
	if err != nil {
		t.Fatal(err)
	}
	got, want := keyJSON(t, res.Key), keyJSON(t, stored)
	if got != want {
		t.Fatalf("result record %s, stored %s", got, want)
	}
	if dup := d.apply(create); !dup.Duplicate || dup.Key != nil {
		t.Fatalf("duplicate: %+v", dup)
	}
	rot := d.apply(&RotateKey{Meta: Meta{At: t0}, Name: "k", FromVersion: 1, New: wv(2)})
	if rot.Err != nil || rot.Key == nil || rot.Key.Latest() != 2 {
		t.Fatalf("rotate: %+v", rot)
	}
	if stored, _ := f.Key("k"); keyJSON(t, rot.Key) != keyJSON(t, stored) {
		t.Fatal("rotation's result record differs from the stored one")
	}
	if en := d.apply(&SetKeyState{Meta: Meta{At: t0}, Name: "k", Enabled: true}); en.Err != nil || en.Key != nil {
		t.Fatalf("enable: %+v", en)
	}
}

func keyJSON(t *testing.T, k *KeyRecord) string {
	t.Helper()
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
