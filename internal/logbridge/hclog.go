// Package logbridge routes the logs of keyd's libraries into log/slog, so
// a node writes one stream in one format: Raft's hclog records (with their
// key/value pairs kept as attributes) and memberlist's "[LEVEL] ..." lines,
// with their levels mapped to slog's.
//
// Known benign records, the ones every normal start and stop produces,
// are demoted by exact rules (library, level, message prefix), never by
// lowering a whole library: a warning the rules do not name still comes
// out as a warning.
package logbridge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// LevelTrace is the slog level of hclog's Trace (below Debug).
const LevelTrace = slog.LevelDebug - 4

// Rule demotes one known benign record: a record of the library Source at
// level From whose message starts with Prefix, and for which When (if set)
// holds, is logged at To instead. Why explains it for readers of the rule
// table.
type Rule struct {
	Source string
	From   slog.Level
	Prefix string
	// When narrows the rule; attr returns a record attribute's value as
	// text (an error's message), and whether the record has it; "msg" is
	// the whole message (memberlist's lines carry no attributes).
	When func(attr func(key string) (string, bool)) bool
	To   slog.Level
	Why  string
}

// demote returns the level a record is logged at.
func demote(rules []Rule, source string, level slog.Level, msg string, kv []any) slog.Level {
	for _, r := range rules {
		if r.Source == source && r.From == level && strings.HasPrefix(msg, r.Prefix) &&
			(r.When == nil || r.When(func(key string) (string, bool) {
				if key == "msg" {
					return msg, true
				}
				return lookup(kv, key)
			})) {
			return r.To
		}
	}
	return level
}

// lookup finds key in alternating keys and values.
func lookup(kv []any, key string) (string, bool) {
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := kv[i].(string); ok && k == key {
			switch v := kv[i+1].(type) {
			case string:
				return v, true
			case error:
				return v.Error(), true
			default:
				return fmt.Sprint(v), true
			}
		}
	}
	return "", false
}

// slogLevel maps an hclog level to slog's.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// HCLog is an hclog.Logger writing to a slog.Logger. Records carry
// "lib" (the library, e.g. "raft") and, for named sub-loggers,
// "logger" (e.g. "raft.net").
type HCLog struct {
	l       *slog.Logger
	source  string
	name    string
	implied []any
	rules   []Rule
	level   *atomic.Int32 // minimum hclog level; shared by derived loggers
}

var _ hclog.Logger = (*HCLog)(nil)

// NewHCLog returns an hclog.Logger for library source (e.g. "raft") that
// writes to l, demoting the records rules name.
func NewHCLog(l *slog.Logger, source string, rules []Rule) *HCLog {
	lv := new(atomic.Int32)
	lv.Store(int32(hclog.Trace))
	return &HCLog{l: l, source: source, name: source, rules: rules, level: lv}
}

func (h *HCLog) clone() *HCLog {
	c := *h
	c.implied = append([]any(nil), h.implied...)
	return &c
}

// Log writes one record.
func (h *HCLog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level < hclog.Level(h.level.Load()) {
		return
	}
	if level == hclog.NoLevel || level == hclog.DefaultLevel {
		level = hclog.Info
	}
	sl := slogLevel(level)
	if len(h.rules) > 0 {
		kv := args
		if len(h.implied) > 0 {
			kv = append(append([]any(nil), h.implied...), args...)
		}
		sl = demote(h.rules, h.source, sl, msg, kv)
	}
	ctx := context.Background()
	if !h.l.Enabled(ctx, sl) {
		return
	}
	attrs := make([]slog.Attr, 0, 2+(len(h.implied)+len(args))/2)
	attrs = append(attrs, slog.String("lib", h.source))
	if h.name != h.source {
		attrs = append(attrs, slog.String("logger", h.name))
	}
	attrs = appendPairs(attrs, h.implied)
	attrs = appendPairs(attrs, args)
	h.l.LogAttrs(ctx, sl, msg, attrs...)
}

// appendPairs turns hclog's alternating keys and values into attributes.
// A trailing key without a value is kept under "EXTRA_VALUE_AT_END", as
// hclog itself does.
func appendPairs(attrs []slog.Attr, kv []any) []slog.Attr {
	for i := 0; i < len(kv); i += 2 {
		if i+1 >= len(kv) {
			attrs = append(attrs, slog.Any("EXTRA_VALUE_AT_END", kv[i]))
			break
		}
		key, ok := kv[i].(string)
		if !ok {
			key = fmt.Sprint(kv[i])
		}
		v := kv[i+1]
		switch x := v.(type) {
		case hclog.Format:
			v = fmt.Sprintf(x[0].(string), x[1:]...)
		case error:
			v = x.Error()
		case time.Duration:
			v = x.String()
		}
		attrs = append(attrs, slog.Any(key, v))
	}
	return attrs
}

func (h *HCLog) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *HCLog) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *HCLog) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *HCLog) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *HCLog) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *HCLog) enabled(l hclog.Level) bool {
	return l >= hclog.Level(h.level.Load()) && h.l.Enabled(context.Background(), slogLevel(l))
}

func (h *HCLog) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *HCLog) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *HCLog) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *HCLog) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *HCLog) IsError() bool { return h.enabled(hclog.Error) }

func (h *HCLog) ImpliedArgs() []any { return append([]any(nil), h.implied...) }

func (h *HCLog) With(args ...any) hclog.Logger {
	c := h.clone()
	c.implied = append(c.implied, args...)
	return c
}

func (h *HCLog) Name() string { return h.name }

func (h *HCLog) Named(name string) hclog.Logger {
	c := h.clone()
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return c
}

func (h *HCLog) ResetNamed(name string) hclog.Logger {
	c := h.clone()
	c.name = name
	return c
}

// SetLevel sets the minimum hclog level, for this logger and every logger
// derived from it; the slog handler's own level applies as well.
func (h *HCLog) SetLevel(level hclog.Level) { h.level.Store(int32(level)) }

func (h *HCLog) GetLevel() hclog.Level { return hclog.Level(h.level.Load()) }

// StandardLogger returns a log.Logger whose lines ("[WARN] ...", as
// libraries write them) become records of this logger.
func (h *HCLog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

// StandardWriter is StandardLogger's writer.
func (h *HCLog) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineWriter{fn: func(level slog.Level, msg string) {
		h.Log(hclogLevel(level), msg)
	}}
}

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelDebug:
		return hclog.Trace
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	}
	return hclog.Error
}

// lineWriter parses "[LEVEL] text" lines, as log.Logger users such as
// memberlist write them, and hands each to fn. A line without a level
// prefix is info.
type lineWriter struct {
	fn func(level slog.Level, msg string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\r\n"), []byte("\n")) {
		level, msg := ParseLine(string(line))
		w.fn(level, msg)
	}
	return len(p), nil
}

// ParseLine splits a "[LEVEL] text" log line into a slog level and the
// text. Levels: TRACE, DEBUG, INFO, WARN or WARNING, ERR or ERROR.
func ParseLine(line string) (slog.Level, string) {
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "[") {
		return slog.LevelInfo, line
	}
	i := strings.IndexByte(line, ']')
	if i < 0 {
		return slog.LevelInfo, line
	}
	msg := strings.TrimLeft(line[i+1:], " ")
	switch strings.ToUpper(line[1:i]) {
	case "TRACE":
		return LevelTrace, msg
	case "DEBUG":
		return slog.LevelDebug, msg
	case "INFO":
		return slog.LevelInfo, msg
	case "WARN", "WARNING":
		return slog.LevelWarn, msg
	case "ERR", "ERROR":
		return slog.LevelError, msg
	}
	return slog.LevelInfo, line
}

// LogLogger returns a log.Logger for library source (e.g. "memberlist")
// whose "[LEVEL] source: text" lines become records of l, at their mapped
// level unless rules demote them.
func LogLogger(l *slog.Logger, source string, rules []Rule) *log.Logger {
	prefix := source + ": "
	return log.New(&lineWriter{fn: func(level slog.Level, msg string) {
		msg = strings.TrimPrefix(msg, prefix)
		level = demote(rules, source, level, msg, nil)
		ctx := context.Background()
		if l.Enabled(ctx, level) {
			l.LogAttrs(ctx, level, msg, slog.String("lib", source))
		}
	}}, "", 0)
}
