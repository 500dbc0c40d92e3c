package httpapi

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/keyd/keyd/api"
)

func FuzzParseVersions(f *testing.F) {
	for _, s := range []string{"", "1", "1,2,3", "0", "-1", "1,,2", "4294967296", strings.Repeat("1,", 101)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vs, err := parseVersions(s)
		if err != nil {
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Code != api.CodeBadRequest {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(vs) > 100 {
			t.Fatalf("%d versions accepted", len(vs))
		}
		for _, v := range vs {
			if v == 0 {
				t.Fatal("version 0 accepted")
			}
		}
		if s != "" {
			parts := make([]string, len(vs))
			for i, v := range vs {
				parts[i] = strconv.FormatUint(uint64(v), 10)
			}
			if got := strings.Join(parts, ","); len(got) > len(s) {
				t.Fatalf("%q parsed to more than it says: %v", s, vs)
			}
		}
	})
}
