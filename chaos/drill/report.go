package drill

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Event is one entry of the fault timeline.
type Event struct {
	AtMS int64  `json:"at_ms"`
	What string `json:"what"`
}

// Check is one check's verdict. Skipped means it could not be observed on
// this target (it neither passed nor failed).
type Check struct {
	Name    string `json:"name"`
	Passed  bool   `json:"passed"`
	Skipped bool   `json:"skipped,omitempty"`
	Detail  string `json:"detail"`
}

// Counts are one operation kind's outcomes.
type Counts struct {
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Unknown int `json:"unknown"`
	// MaxMS is the longest latency of a call that returned.
	MaxMS int64 `json:"max_ms"`
	// MeanMS is the mean latency of the calls that returned.
	MeanMS int64 `json:"mean_ms"`
	sum    time.Duration
	n      int
}

// Report is a drill's result.
type Report struct {
	Drill      string            `json:"drill"`
	Target     string            `json:"target"`
	Started    time.Time         `json:"started"`
	DurationMS int64             `json:"duration_ms"`
	LoadMS     int64             `json:"load_ms"`
	Faults     []Event           `json:"faults"`
	Ops        int               `json:"ops"`
	OK         int               `json:"ok"`
	Failed     int               `json:"failed"`
	Unknown    int               `json:"unknown"`
	ByKind     map[string]Counts `json:"by_kind"`
	// Longest gaps between consecutive acknowledged writes (create,
	// rotate) and crypto calls (encrypt, decrypt, data key) while the
	// load ran, from its start to its end.
	LongestWriteGapMS  int64   `json:"longest_write_gap_ms"`
	LongestCryptoGapMS int64   `json:"longest_crypto_gap_ms"`
	Porcupine          string  `json:"porcupine"`
	Checks             []Check `json:"checks"`
	Passed             bool    `json:"passed"`
}

func (r *runner) report(loadStart, loadEnd time.Time) *Report {
	ops := r.hist.snapshot()
	rep := &Report{Drill: r.cfg.Name, Target: r.cfg.Target, Started: r.start.UTC(), DurationMS: time.Since(r.start).Milliseconds(), LoadMS: loadEnd.Sub(loadStart).Milliseconds(), ByKind: map[string]Counts{}}
	var writes, crypto []time.Duration
	for _, op := range ops {
		rep.Ops++
		c := rep.ByKind[op.Kind]
		switch op.Status {
		case statusOK:
			rep.OK++
			c.OK++
			switch op.Kind {
			case kindCreate, kindRotate:
				writes = append(writes, op.Return)
			case kindEncrypt, kindDecrypt, kindDataKey:
				crypto = append(crypto, op.Return)
			}
		case statusUnknown:
			rep.Unknown++
			c.Unknown++
		default:
			rep.Failed++
			c.Failed++
		}
		if op.Status != statusUnknown {
			lat := op.Return - op.Call
			c.sum += lat
			c.n++
			c.MaxMS = max(c.MaxMS, lat.Milliseconds())
			c.MeanMS = (c.sum / time.Duration(c.n)).Milliseconds()
		}
		rep.ByKind[op.Kind] = c
	}
	from, to := loadStart.Sub(r.start), loadEnd.Sub(r.start)
	rep.LongestWriteGapMS = longestGap(writes, from, to).Milliseconds()
	rep.LongestCryptoGapMS = longestGap(crypto, from, to).Milliseconds()
	r.mu.Lock()
	rep.Faults = append([]Event(nil), r.events...)
	rep.Checks = append([]Check(nil), r.checks...)
	rep.Porcupine = r.porcupine
	r.mu.Unlock()
	rep.Passed = true
	for _, c := range rep.Checks {
		if !c.Passed {
			rep.Passed = false
		}
	}
	return rep
}

// longestGap is the longest interval in [from, to] with no time in ts.
func longestGap(ts []time.Duration, from, to time.Duration) time.Duration {
	var in []time.Duration
	for _, t := range ts {
		if t >= from && t <= to {
			in = append(in, t)
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i] < in[j] })
	prev, gap := from, time.Duration(0)
	for _, t := range in {
		gap = max(gap, t-prev)
		prev = t
	}
	return max(gap, to-prev)
}

// Print writes the report as a table.
func (rep *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	verdict := "PASS"
	if !rep.Passed {
		verdict = "FAIL"
	}
	fmt.Fprintf(tw, "drill\t%s (%s)\t%s\n", rep.Drill, rep.Target, verdict)
	for _, e := range rep.Faults {
		fmt.Fprintf(tw, "fault\t+%dms\t%s\n", e.AtMS, e.What)
	}
	fmt.Fprintf(tw, "ops\t%d in %dms\tok %d, failed %d, unknown %d\n", rep.Ops, rep.LoadMS, rep.OK, rep.Failed, rep.Unknown)
	kinds := make([]string, 0, len(rep.ByKind))
	for k := range rep.ByKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		c := rep.ByKind[k]
		fmt.Fprintf(tw, "  %s\tmean %dms, max %dms\tok %d, failed %d, unknown %d\n", k, c.MeanMS, c.MaxMS, c.OK, c.Failed, c.Unknown)
	}
	fmt.Fprintf(tw, "longest gap\twrites %dms\tcrypto %dms\n", rep.LongestWriteGapMS, rep.LongestCryptoGapMS)
	fmt.Fprintf(tw, "porcupine\t%s\t\n", rep.Porcupine)
	for _, c := range rep.Checks {
		v := "pass"
		switch {
		case c.Skipped:
			v = "n/a"
		case !c.Passed:
			v = "FAIL"
		}
		fmt.Fprintf(tw, "check\t%s %s\t%s\n", c.Name, v, c.Detail)
	}
	_ = tw.Flush()
}

// String returns the table.
func (rep *Report) String() string {
	var b strings.Builder
	rep.Print(&b)
	return b.String()
}

// WriteJSON writes the report as indented JSON to path, creating its
// directory.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("drill: encode report: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("drill: report directory: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("drill: write report: %w", err)
	}
	return nil
}
