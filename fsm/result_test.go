package fsm

import (
	"encoding/json"
	"testing"
	"time"
)

// TestResultKey: a create's result carries the record it wrote, equal to
// the stored one; a duplicate request and other commands carry none.
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
	if rot := d.apply(&RotateKey{Meta: Meta{At: t0}, Name: "k", FromVersion: 1, New: wv(2)}); rot.Err != nil || rot.Key != nil {
		t.Fatalf("rotate: %+v", rot)
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
