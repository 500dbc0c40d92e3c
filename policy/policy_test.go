package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		policy   string
		doc      string
		wantErr  error
		wantText string // must appear in the error (names the culprit)
	}{
		{name: "valid", policy: "app-orders", doc: `{"rules":[{"effect":"allow","capabilities":["encrypt","decrypt"],"keys":["orders-*"]}]}`},
		{name: "valid with matching name", policy: "p1", doc: `{"name":"p1","rules":[{"effect":"deny","capabilities":["cluster"]}]}`},
		{name: "name mismatch", policy: "p1", doc: `{"name":"p2","rules":[{"effect":"deny","capabilities":["cluster"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "unknown capability", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["encrypt","launch-missiles"],"keys":["*"]}]}`, wantErr: ErrUnknownCapability, wantText: "launch-missiles"},
		{name: "unknown capability is invalid", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["Encrypt"],"keys":["*"]}]}`, wantErr: ErrInvalidPolicy, wantText: "Encrypt"},
		{name: "unknown field", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["encrypt"],"keys":["*"],"when":"always"}]}`, wantErr: ErrInvalidPolicy},
		{name: "unknown top-level field", policy: "p", doc: `{"version":2,"rules":[{"effect":"allow","capabilities":["encrypt"],"keys":["*"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "trailing data", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["encrypt"],"keys":["*"]}]} {}`, wantErr: ErrInvalidPolicy},
		{name: "not json", policy: "p", doc: `rules: []`, wantErr: ErrInvalidPolicy},
		{name: "no rules", policy: "p", doc: `{"rules":[]}`, wantErr: ErrInvalidPolicy},
		{name: "bad effect", policy: "p", doc: `{"rules":[{"effect":"permit","capabilities":["encrypt"],"keys":["*"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "no capabilities", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":[],"keys":["*"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "key capability without keys", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["decrypt"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "system capability with keys", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["snapshot"],"keys":["*"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "mixed kinds", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["snapshot","read"],"keys":["*"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "empty pattern", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["read"],"keys":[""]}]}`, wantErr: ErrInvalidPolicy},
		{name: "bad pattern character", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["read"],"keys":["a/b"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "kv path pattern", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["kv-read","kv-list"],"keys":["kv/app1/*"]}]}`},
		{name: "kv path pattern mixed with a key capability", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["kv-read","read"],"keys":["kv/app1/*"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "bracket is not a wildcard", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["read"],"keys":["[ab]"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "bad policy name", policy: "App", doc: `{"rules":[{"effect":"allow","capabilities":["read"],"keys":["*"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "empty policy name", policy: "", doc: `{"rules":[{"effect":"allow","capabilities":["read"],"keys":["*"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "long policy name", policy: strings.Repeat("a", 65), doc: `{"rules":[{"effect":"allow","capabilities":["read"],"keys":["*"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "longest policy name", policy: strings.Repeat("a", 64), doc: `{"rules":[{"effect":"allow","capabilities":["read"],"keys":["*"]}]}`},
		{name: "reserved admin", policy: "admin", doc: `{"rules":[{"effect":"allow","capabilities":["read"],"keys":["*"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "reserved key-admin", policy: "key-admin", doc: `{"rules":[{"effect":"allow","capabilities":["read"],"keys":["*"]}]}`, wantErr: ErrInvalidPolicy},
		{name: "too large", policy: "p", doc: `{"rules":[{"effect":"allow","capabilities":["read"],"keys":["*"]}]}` + strings.Repeat(" ", MaxDocSize), wantErr: ErrInvalidPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse(tt.policy, []byte(tt.doc))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got err %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if p != nil {
					t.Fatalf("got policy %+v with an error", p)
				}
				if !errors.Is(err, ErrInvalidPolicy) {
					t.Fatalf("got err %v, want it to wrap ErrInvalidPolicy too", err)
				}
				if tt.wantText != "" && !strings.Contains(err.Error(), tt.wantText) {
					t.Fatalf("got err %q, want it to name %q", err, tt.wantText)
				}
				return
			}
			if p.Name != tt.policy {
				t.Fatalf("got name %q, want %q", p.Name, tt.policy)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	t.Parallel()
	app, err := AppPolicy("billing", "billing-*", "shared")
	if err != nil {
		t.Fatal(err)
	}
	custom, err := Parse("mixed", []byte(`{"rules":[
		{"effect":"allow","capabilities":["token-admin","cluster"]},
		{"effect":"deny","capabilities":["decrypt"],"keys":["x?y","*z"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Policy{app, custom} {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			doc, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(p.Name, doc)
			if err != nil {
				t.Fatalf("Parse(Marshal()): %v\n%s", err, doc)
			}
			if !reflect.DeepEqual(back, p) {
				t.Fatalf("got %+v, want %+v", back, p)
			}
		})
	}
}

func TestMarshalInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    *Policy
	}{
		{"nil", nil},
		{"bad name", &Policy{Name: "A", Rules: []Rule{{Effect: Allow, Capabilities: []Capability{Cluster}}}}},
		{"unknown capability", &Policy{Name: "a", Rules: []Rule{{Effect: Allow, Capabilities: []Capability{"fly"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := tt.p.Marshal(); !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("got err %v, want %v", err, ErrInvalidPolicy)
			}
		})
	}
}

func TestBuiltinsMarshal(t *testing.T) {
	t.Parallel()
	for _, name := range BuiltinNames() {
		p, ok := Builtin(name)
		if !ok {
			t.Fatalf("Builtin(%q) missing", name)
		}
		if p.Name != name {
			t.Fatalf("got name %q, want %q", p.Name, name)
		}
		if _, err := p.Marshal(); err != nil {
			t.Fatalf("Builtin(%q).Marshal: %v", name, err)
		}
	}
	if _, ok := Builtin("app"); ok {
		t.Fatal("Builtin(app): got true, want false")
	}
}

func TestBuiltinReturnsCopy(t *testing.T) {
	t.Parallel()
	p, _ := Builtin(RoleAuditor)
	p.Rules[0].Capabilities[0] = TokenAdmin
	p.Rules = append(p.Rules, Rule{Effect: Allow, Capabilities: []Capability{Decrypt}, Keys: []string{"*"}})
	again, _ := Builtin(RoleAuditor)
	s := Compile(again)
	if s.Allowed(TokenAdmin, "") || s.Allowed(Decrypt, "k") {
		t.Fatal("changing a returned builtin changed the built-in table")
	}
}

func TestAppPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		policy   string
		patterns []string
		wantErr  error
	}{
		{name: "ok", policy: "orders", patterns: []string{"orders-*"}},
		{name: "no patterns", policy: "orders", wantErr: ErrInvalidPolicy},
		{name: "bad pattern", policy: "orders", patterns: []string{"orders/*"}, wantErr: ErrInvalidPolicy},
		{name: "reserved name", policy: "operator", patterns: []string{"*"}, wantErr: ErrInvalidPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := AppPolicy(tt.policy, tt.patterns...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got err %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestCapabilityKinds(t *testing.T) {
	t.Parallel()
	if len(allCaps) != int(numCaps) {
		t.Fatalf("got %d capabilities listed, want %d", len(allCaps), numCaps)
	}
	for i, c := range allCaps {
		got, ok := c.index()
		if !ok || got != capIndex(i) {
			t.Fatalf("%q.index(): got %d %v, want %d true", c, got, ok, i)
		}
		if want := capIndex(i) >= numKeyCaps; c.IsSystem() != want {
			t.Fatalf("%q.IsSystem(): got %v, want %v", c, c.IsSystem(), want)
		}
	}
	if Capability("nope").Known() || Capability("nope").IsSystem() {
		t.Fatal("unknown capability reported as known or system")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("p", []byte(`{"rules":[{"effect":"allow","capabilities":["encrypt"],"keys":["a*"]}]}`))
	f.Add("p", []byte(`{"name":"p","rules":[{"effect":"deny","capabilities":["cluster","snapshot"]}]}`))
	f.Add("x", []byte(`{"rules":[{"effect":"allow","capabilities":["nope"],"keys":["*"]}]}`))
	f.Add("admin", []byte(`{}`))
	f.Add("p", []byte(`{"rules":null}`))
	f.Fuzz(func(t *testing.T, name string, doc []byte) {
		p, err := Parse(name, doc)
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("got err %v, want it to wrap ErrInvalidPolicy", err)
			}
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed policy: %v", err)
		}
		back, err := Parse(name, out)
		if err != nil {
			t.Fatalf("Parse(Marshal()): %v", err)
		}
		if !reflect.DeepEqual(back, p) {
			t.Fatalf("round trip: got %+v, want %+v", back, p)
		}
		s := Compile(p)
		for _, c := range allCaps {
			s.Allowed(c, "k")
			s.Allowed(c, "")
		}
	})
}
