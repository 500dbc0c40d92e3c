package logbridge

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogLevelsArgsAndRules(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: LevelTrace}))
	rules := []Rule{{
		Source: "raft", From: slog.LevelWarn, Prefix: "benign", To: slog.LevelInfo,
		When: func(attr func(string) (string, bool)) bool { v, ok := attr("id"); return ok && v == "" },
	}}
	h := NewHCLog(l, "raft", rules)
	h.Trace("t")
	h.Debug("d")
	h.Info("i")
	h.Warn("w", "peer", "n2", "err", errors.New("boom"))
	h.Error("e")
	h.Named("net").With("node", "n1").Warn("benign thing", "id", "")
	h.Warn("benign thing", "id", "n3") // When does not hold: stays a warning
	h.Warn("odd", "dangling")
	out := buf.String()
	for _, want := range []string{
		"level=DEBUG-4 msg=t lib=raft",
		"level=DEBUG msg=d lib=raft",
		"level=INFO msg=i lib=raft",
		"level=WARN msg=w lib=raft peer=n2 err=boom",
		"level=ERROR msg=e lib=raft",
		`level=INFO msg="benign thing" lib=raft logger=raft.net node=n1 id=""`,
		`level=WARN msg="benign thing" lib=raft id=n3`,
		"EXTRA_VALUE_AT_END=dangling",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}

	// The slog handler's level gates, and hclog's own level too.
	buf.Reset()
	quiet := NewHCLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), "raft", nil)
	quiet.Info("hidden")
	if quiet.IsInfo() || !quiet.IsWarn() {
		t.Errorf("IsInfo %v IsWarn %v with a warn handler", quiet.IsInfo(), quiet.IsWarn())
	}
	quiet.SetLevel(hclog.Error)
	quiet.Warn("hidden too")
	if buf.Len() != 0 {
		t.Errorf("got %q, want nothing below the levels", buf.String())
	}
	if quiet.GetLevel() != hclog.Error {
		t.Errorf("GetLevel %v", quiet.GetLevel())
	}
	// Standard loggers parse "[LEVEL]" prefixes.
	buf.Reset()
	quiet.SetLevel(hclog.Trace)
	quiet.StandardLogger(nil).Print("[ERR] broken")
	if !strings.Contains(buf.String(), "level=ERROR msg=broken") {
		t.Errorf("standard logger: got %q", buf.String())
	}
}

func TestLogLogger(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rules := []Rule{{Source: "memberlist", From: slog.LevelError, Prefix: "Failed to send", To: slog.LevelDebug,
		When: func(attr func(string) (string, bool)) bool { m, _ := attr("msg"); return strings.Contains(m, "closed") }}}
	ll := LogLogger(l, "memberlist", rules)
	ll.Print("[WARN] memberlist: Refuting a suspect message")
	ll.Print("[ERR] memberlist: Failed to send ack: use of closed network connection")
	ll.Print("[ERR] memberlist: Failed to send ping: no route")
	ll.Print("[DEBUG] memberlist: Stream connection")
	ll.Print("no prefix at all")
	out := buf.String()
	for _, want := range []string{
		`"level":"WARN","msg":"Refuting a suspect message","lib":"memberlist"`,
		`"level":"DEBUG","msg":"Failed to send ack: use of closed network connection"`,
		`"level":"ERROR","msg":"Failed to send ping: no route"`,
		`"level":"DEBUG","msg":"Stream connection"`,
		`"level":"INFO","msg":"no prefix at all"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestParseLine(t *testing.T) {
	for line, want := range map[string]slog.Level{
		"[TRACE] x": LevelTrace, "[DEBUG] x": slog.LevelDebug, "[INFO] x": slog.LevelInfo,
		"[WARN] x": slog.LevelWarn, "[WARNING] x": slog.LevelWarn, "[ERR] x": slog.LevelError, "[ERROR] x": slog.LevelError,
	} {
		if got, msg := ParseLine(line); got != want || msg != "x" {
			t.Errorf("ParseLine(%q) = %v %q, want %v x", line, got, msg, want)
		}
	}
	if got, msg := ParseLine("[odd] x"); got != slog.LevelInfo || msg != "[odd] x" {
		t.Errorf("unknown level: %v %q", got, msg)
	}
}
