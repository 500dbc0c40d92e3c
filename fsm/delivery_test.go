package fsm

import (
	"bytes"
	"errors"
	"testing"
)

// A voter's delivery key is pinned once: whoever holds its certificate
// cannot re-pin it to a key they hold.
func TestPinDeliveryKey(t *testing.T) {
	t.Parallel()
	f := openTest(t, nil)
	d := &driver{t: t, f: f}
	h := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	for i, s := range []struct {
		cmd  Command
		want error
	}{
		{&PinDeliveryKey{Meta: Meta{At: t0}, Node: "n1", PublicKey: h(1)}, nil},
		{&PinDeliveryKey{Meta: Meta{At: t0}, Node: "n1", PublicKey: h(1)}, nil}, // the same key again
		{&PinDeliveryKey{Meta: Meta{At: t0}, Node: "n1", PublicKey: h(2)}, ErrConflict},
		{&PinDeliveryKey{Meta: Meta{At: t0}, Node: "n2", PublicKey: h(2)}, nil},
		{&PinDeliveryKey{Meta: Meta{At: t0}, Node: "n3", PublicKey: h(3)[:31]}, ErrInvalidCommand},
		{&PinDeliveryKey{Meta: Meta{At: t0}, Node: "", PublicKey: h(3)}, ErrInvalidCommand},
		{&PinDeliveryKey{Meta: Meta{At: t0}, Node: "n\x01", PublicKey: h(3)}, ErrInvalidCommand},
	} {
		res := d.apply(s.cmd)
		if !errors.Is(res.Err, s.want) || s.want == nil && res.Err != nil {
			t.Fatalf("step %d: got %v, want %v", i, res.Err, s.want)
		}
		if err := f.Check(s.cmd); s.want != nil && !errors.Is(err, s.want) {
			t.Fatalf("step %d: Check says %v, apply said %v", i, err, s.want)
		}
	}
	for node, want := range map[string][]byte{"n1": h(1), "n2": h(2), "n3": nil} {
		got, err := f.DeliveryKey(node)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("delivery key of %s: %x, %v", node, got, err)
		}
	}
	b, err := Encode(&PinDeliveryKey{Node: "n1", PublicKey: h(1)})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := Decode(b); err != nil || c.(*PinDeliveryKey).Node != "n1" {
		t.Fatalf("decode: %v", err)
	}
}
