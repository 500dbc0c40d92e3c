package membership

import (
	"bytes"
	"context"
	"log/slog"
)

// slogWriter turns memberlist's log.Logger lines ("[WARN] memberlist: ...")
// into debug records: memberlist logs every failed probe, which is routine
// noise for keyd; the events that matter reach callers through OnChange.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	if !w.l.Enabled(context.Background(), slog.LevelDebug) {
		return len(p), nil
	}
	line := bytes.TrimRight(p, "\r\n")
	level := ""
	if len(line) > 0 && line[0] == '[' {
		if i := bytes.IndexByte(line, ']'); i > 0 {
			level = string(line[1:i])
			line = bytes.TrimLeft(line[i+1:], " ")
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	w.l.Debug(string(line), "source", "memberlist", "memberlist_level", level)
	return len(p), nil
}
