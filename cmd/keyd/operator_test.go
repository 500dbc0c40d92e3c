package main

import (
	"errors"
	"strings"
	"testing"
)

// failReader fails the test if anything reads it.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("stdin was read")
	return 0, errors.New("unexpected read")
}

func TestOperatorUnsealRefusesShareArgument(t *testing.T) {
	t.Parallel()
	const share = "keyd-share-v1-AQHs_KvH0RFR4Pdi0KHSA4E5pJpGeEJiK8Pbk486y79ZCSACyf0"
	for _, args := range [][]string{
		{"operator", "unseal", share},
		{"operator", "unseal", "-addr", "127.0.0.1:1", share},
		{"operator", "unseal", share, "-addr", "127.0.0.1:1"},
	} {
		t.Run(strings.Join(args[2:], " "), func(t *testing.T) {
			t.Parallel()
			c, out, errb := testCLI(t.Context(), map[string]string{envAddr: "127.0.0.1:1"}, failReader{t})
			err := c.run(args)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("got err %v, want a usage error", err)
			}
			if got := exitCode(err); got != 2 {
				t.Fatalf("got exit code %d, want 2", got)
			}
			for _, s := range []string{errorLine(err), out.String(), errb.String()} {
				if strings.Contains(s, share) {
					t.Fatalf("the share was echoed: %q", s)
				}
			}
		})
	}
}

func TestReadLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
	}{
		{name: "line", in: "abc\nrest", want: "abc"},
		{name: "no newline", in: "abc", want: "abc"},
		{name: "spaces and CRLF", in: "  abc \r\n", want: "abc"},
		{name: "empty", in: "", want: ""},
		{name: "exactly the limit", in: strings.Repeat("a", 8) + "\n", want: strings.Repeat("a", 8)},
		{name: "too long", in: strings.Repeat("a", 9), wantErr: errLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := readLine(strings.NewReader(tt.in), 8)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got err %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
