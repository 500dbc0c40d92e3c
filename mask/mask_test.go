package mask

import (
	"errors"
	"strings"
	"testing"
)

func TestApply(t *testing.T) {
	cases := []struct {
		in    string
		shape Shape
		want  string
	}{
		{"4111111111111234", Last4, "************1234"},
		{"4111 1111 1111 1234", Last4, "**** **** **** 1234"},
		{"4111-1111-1111-1234", Full, "****-****-****-****"},
		{"078-05-1120", Last4, "***-**-1120"},
		{"078-05-1120", Full, "***-**-****"},
		{"john.doe@example.com", Last4, "****.***@******e.com"},
		{"john.doe@example.com", Full, "****.***@*******.***"},
		{"1234567", Last4, "*******"}, // under eight: nothing shown
		{"12345678", Last4, "****5678"},
		{"", Last4, ""},
		{"é1234567890", Last4, "********7890"},
		{"a\x00b\nc", Full, "*****"},
	}
	for _, c := range cases {
		if got := Apply([]byte(c.in), c.shape); got != c.want {
			t.Errorf("Apply(%q, %s) = %q, want %q", c.in, c.shape, got, c.want)
		}
	}
}

func TestParseShape(t *testing.T) {
	for in, want := range map[string]Shape{"": Last4, "last4": Last4, "full": Full} {
		if got, err := ParseShape(in); err != nil || got != want {
			t.Errorf("ParseShape(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"LAST4", "none", "clear", "first6"} {
		if _, err := ParseShape(bad); !errors.Is(err, ErrUnknownShape) {
			t.Errorf("ParseShape(%q): %v", bad, err)
		}
	}
}

// FuzzApply: the output has the input's length, is printable ASCII, and
// shows at most four letters or digits, only in the Last4 shape.
func FuzzApply(f *testing.F) {
	f.Add([]byte("4111 1111 1111 1234"), true)
	f.Add([]byte("\xff\xfe12345678"), false)
	f.Fuzz(func(t *testing.T, in []byte, last4 bool) {
		shape := Full
		if last4 {
			shape = Last4
		}
		out := Apply(in, shape)
		if len(out) != len(in) {
			t.Fatal("length changed")
		}
		shown := 0
		for i := 0; i < len(out); i++ {
			c := out[i]
			if c < ' ' || c >= 0x7f {
				t.Fatalf("non-printable byte %#x", c)
			}
			if isAlnum(c) {
				shown++
				if c != in[i] {
					t.Fatal("invented a character")
				}
			}
		}
		if shown > 4 || (shape == Full && shown > 0) {
			t.Fatalf("showed %d characters: %q", shown, strings.Clone(out))
		}
	})
}
