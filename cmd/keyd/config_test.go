package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyd/keyd/node"
	"github.com/keyd/keyd/transport"
	"github.com/keyd/keyd/transport/devcerts"
)

var (
	testCAOnce sync.Once
	testCA     *devcerts.CA
	testCAErr  error
)

// fakeLoader issues identities from one in-memory CA instead of reading the
// files a config names, which do not exist in tests.
func fakeLoader(t testing.TB) identityLoader {
	t.Helper()
	testCAOnce.Do(func() { testCA, testCAErr = devcerts.NewCA("keyd cmd test CA") })
	if testCAErr != nil {
		t.Fatal(testCAErr)
	}
	return func(id, _, _, _ string) (transport.Identity, error) { return testCA.Identity(id, "127.0.0.1") }
}

func TestExampleConfig(t *testing.T) {
	t.Parallel()
	fc, err := loadConfigFile("keyd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if fc.NodeID != "n1" || len(fc.Peers) != 3 || fc.TLS.CAFile == "" || !fc.Bootstrap {
		t.Fatalf("got %+v, want node n1 with 3 peers, a CA file and bootstrap", fc)
	}
	cfg, err := fc.nodeConfig(fakeLoader(t), io.Discard)
	if err != nil {
		t.Fatalf("nodeConfig: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if cfg.SchedulerInterval != time.Minute || cfg.Timing != node.TimingLAN || cfg.Region != "eu-west" || cfg.APIAddr != "127.0.0.1:8200" {
		t.Fatalf("got interval %s timing %+v region %q api %q, want 1m, LAN, eu-west, 127.0.0.1:8200",
			cfg.SchedulerInterval, cfg.Timing, cfg.Region, cfg.APIAddr)
	}
	if cfg.KeyCacheSize != 10000 {
		t.Fatalf("key_cache_size %d, want the example's 10000", cfg.KeyCacheSize)
	}
	if got := cfg.Peers[2]; got != (node.Peer{ID: "n3", RaftAddr: "127.0.0.1:8221", APIAddr: "127.0.0.1:8220", Region: "eu-central"}) {
		t.Fatalf("got peer %+v", got)
	}
}

// minimalConfig is a valid config, one line per field, that cases edit.
var minimalConfig = []string{
	"node_id: n1",
	"data_dir: /tmp/keyd-n1",
	"api_addr: 127.0.0.1:8200",
	"raft_addr: 127.0.0.1:8201",
	"tls:",
	"  cert_file: n1.pem",
	"  key_file: n1-key.pem",
	"  ca_file: ca.pem",
	"peers:",
	"  - {id: n1, raft_addr: 127.0.0.1:8201, api_addr: 127.0.0.1:8200}",
	"  - {id: n2, raft_addr: 127.0.0.1:8211, api_addr: 127.0.0.1:8210}",
	"bootstrap: true",
}

// editConfig drops lines starting with drop (when set) and appends extra.
func editConfig(drop string, extra ...string) string {
	var lines []string
	for _, l := range minimalConfig {
		if drop != "" && strings.HasPrefix(l, drop) {
			continue
		}
		lines = append(lines, l)
	}
	return strings.Join(append(lines, extra...), "\n") + "\n"
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	errLoad := errors.New("load failed")
	tests := []struct {
		name     string
		yaml     string
		load     identityLoader
		wantErr  error
		wantText string // the field the message must name
	}{
		{name: "minimal", yaml: editConfig("")},
		{name: "wan timing and durations", yaml: editConfig("", "timing: wan", "scheduler_interval: 30s", "index_wait: 2s", "log_level: debug")},
		{name: "unknown field", yaml: editConfig("", "colour: blue"), wantErr: errConfigParse, wantText: "colour"},
		{name: "unknown tls field", yaml: strings.Replace(editConfig(""), "  ca_file: ca.pem", "  ca_file: ca.pem\n  pin: 1234", 1), wantErr: errConfigParse, wantText: "pin"},
		{name: "unknown peer field", yaml: strings.Replace(editConfig(""), "api_addr: 127.0.0.1:8210}", "api_addr: 127.0.0.1:8210, zone: b}", 1), wantErr: errConfigParse, wantText: "zone"},
		{name: "missing node_id", yaml: editConfig("node_id"), wantErr: errMissingField, wantText: "node_id"},
		{name: "missing data_dir", yaml: editConfig("data_dir"), wantErr: errMissingField, wantText: "data_dir"},
		{name: "missing ca_file", yaml: editConfig("  ca_file"), wantErr: errMissingField, wantText: "tls.ca_file"},
		{name: "peer missing api_addr", yaml: strings.Replace(editConfig(""), ", api_addr: 127.0.0.1:8210", "", 1), wantErr: errMissingField, wantText: "peers[1].api_addr"},
		{name: "bad timing", yaml: editConfig("", "timing: moon"), wantErr: errBadValue, wantText: "timing"},
		{name: "bad log level", yaml: editConfig("", "log_level: loud"), wantErr: errBadValue, wantText: "log_level"},
		{name: "text logs and open metrics", yaml: editConfig("", "log_format: text", "unauthenticated_metrics: true")},
		{name: "bad log format", yaml: editConfig("", "log_format: xml"), wantErr: errBadValue, wantText: "log_format"},
		{name: "negative duration", yaml: editConfig("", "apply_timeout: -1s"), wantErr: errBadValue, wantText: "apply_timeout"},
		{name: "key cache size", yaml: editConfig("", "key_cache_size: 50000")},
		{name: "negative key cache size", yaml: editConfig("", "key_cache_size: -1"), wantErr: errBadValue, wantText: "key_cache_size"},
		{name: "bad duration", yaml: editConfig("", "scheduler_interval: soon"), wantErr: errConfigParse, wantText: "soon"},
		{name: "empty file", yaml: "", wantErr: errConfigParse, wantText: "empty"},
		{name: "two documents", yaml: editConfig("") + "---\nnode_id: n2\n", wantErr: errConfigParse, wantText: "document"},
		{name: "identity fails", yaml: editConfig(""), load: func(string, string, string, string) (transport.Identity, error) { return transport.Identity{}, errLoad }, wantErr: errLoad, wantText: "tls"},
		{name: "bad node id", yaml: strings.Replace(editConfig(""), "node_id: n1", "node_id: n/1", 1), wantErr: transport.ErrInvalidNodeID, wantText: "node_id"},
		{name: "usage and tag rules", yaml: editConfig("", "usage_flush_interval: 30s", "tag_rules:", "  pci: {max_rotation_period: 720h}", "  gdpr: {min_deletion_window: 240h}")},
		{name: "bad tag rule name", yaml: editConfig("", "tag_rules:", "  PCI: {max_rotation_period: 720h}"), wantErr: errBadValue, wantText: "tag_rules"},
		{name: "negative tag rule", yaml: editConfig("", "tag_rules:", "  pci: {max_rotation_period: -1h}"), wantErr: errBadValue, wantText: "tag_rules.pci"},
		{name: "unknown tag rule field", yaml: editConfig("", "tag_rules:", "  pci: {audit: all}"), wantErr: errConfigParse, wantText: "audit"},
		{name: "bootstrap without peers", yaml: editConfig("  - {"), wantErr: errNodeConfig, wantText: "Bootstrap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			load := tt.load
			if load == nil {
				load = fakeLoader(t)
			}
			fc, err := parseConfig(strings.NewReader(tt.yaml))
			if err == nil {
				_, err = fc.nodeConfig(load, io.Discard)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("got err %v, want nil", err)
				}
				return
			}
			if tt.wantErr == errNodeConfig {
				// node.Config.Validate has no sentinel; it names the field.
				if err == nil {
					t.Fatal("got nil error, want one")
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got err %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("got err %q, want it to name %q", err, tt.wantText)
			}
		})
	}
}

// errNodeConfig marks cases rejected by node.Config.Validate, which
// names the field but has no sentinel.
var errNodeConfig = errors.New("node config")

func TestLoadConfigFileMissing(t *testing.T) {
	t.Parallel()
	_, err := loadConfigFile(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got err %v, want %v", err, os.ErrNotExist)
	}
}

func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile("keyd.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(editConfig("")))
	f.Add([]byte("node_id: [1, 2]\n"))
	f.Add([]byte("peers: {id: x}\n"))
	f.Add([]byte("scheduler_interval: 1m\nsnapshot_threshold: -3\n"))
	f.Add([]byte(editConfig("", "key_cache_size: -7")))
	load := fakeLoader(f)
	id, err := load("n1", "", "", "")
	if err != nil {
		f.Fatal(err)
	}
	fixed := func(string, string, string, string) (transport.Identity, error) { return id, nil }
	f.Fuzz(func(t *testing.T, b []byte) {
		fc, err := parseConfig(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, errConfigParse) {
				t.Fatalf("parse error %v does not wrap errConfigParse", err)
			}
			return
		}
		cfg, err := fc.nodeConfig(fixed, io.Discard)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("nodeConfig returned a config that fails Validate: %v", verr)
			}
		}
	})
}
