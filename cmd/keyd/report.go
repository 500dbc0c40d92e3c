package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/node"
)

// fmtLastUsed prints a credential's or key's last use ("never" when none
// was recorded).
func fmtLastUsed(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return fmtTime(*t)
}

func printTagsRetention(w io.Writer, info *api.KeyInfo) {
	if len(info.Tags) > 0 {
		fmt.Fprintf(w, "Tags:\t%s\n", strings.Join(info.Tags, ","))
	}
	if info.Retention != "" {
		fmt.Fprintf(w, "Retention:\t%s\n", info.Retention)
	}
}

// setConfigTags sets req.Tags when -tags was given ("" clears them).
func setConfigTags(fs *flag.FlagSet, list string, req *api.KeyConfigRequest) error {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "tags" })
	if !given {
		return nil
	}
	tags, err := api.ParseTagList(list)
	if err != nil {
		return usagef("key config: -tags: %v", err)
	}
	if tags == nil {
		tags = []string{}
	}
	req.Tags = &tags
	return nil
}

func (c *cli) keyUsage(args []string) error {
	k := c.newKeyCmd("usage", "NAME")
	name, cl, err := k.parse(args, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	u, err := cl.KeyUsage(c.ctx, name)
	if err != nil {
		return err
	}
	if k.asJSON {
		return printJSON(c.stdout, u)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Key:\t%s\n", u.Name)
	fmt.Fprintf(tw, "Last used:\t%s\n", fmtLastUsed(u.LastUsed))
	fmt.Fprintf(tw, "Uses:\t%d\n", u.Count)
	for _, v := range u.Versions {
		fmt.Fprintf(tw, "  v%d\t%s\t%d uses\n", v.Version, fmtTime(v.LastUsed), v.Count)
	}
	for _, id := range u.Identities {
		fmt.Fprintf(tw, "  %s\t%s\t%d uses\n", id.Identity, fmtTime(id.LastUsed), id.Count)
	}
	return tw.Flush()
}

// parseUnusedFor accepts Go durations and a days suffix ("30d"), which
// operators write more often than 720h.
func parseUnusedFor(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if len(s) > 32 {
		return 0, fmt.Errorf("too long")
	}
	if d, ok := strings.CutSuffix(s, "d"); ok && d != "" && !strings.ContainsAny(d, "hmsuµn.") {
		var days int
		if _, err := fmt.Sscanf(d, "%d", &days); err != nil || fmt.Sprint(days) != d || days <= 0 || days > 3650 {
			return 0, fmt.Errorf("%q: days must be 1 to 3650", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration like 720h or 30d", s)
	}
	return v, nil
}

func (c *cli) keyReport(args []string) error {
	k := c.newKeyCmd("report", "[-unused-for 720h] [-format table|json]")
	unused := k.fs.String("unused-for", "", "list keys and credentials not used for this long (default 720h; 30d works)")
	format := k.fs.String("format", "table", "table or json")
	_, cl, err := k.parse(args, false)
	if err != nil {
		return err
	}
	defer cl.Close()
	d, err := parseUnusedFor(*unused)
	if err != nil {
		return usagef("key report: -unused-for: %v", err)
	}
	if *format != "table" && *format != "json" {
		return usagef("key report: -format must be table or json")
	}
	rep, err := cl.KeyReport(c.ctx, d)
	if err != nil {
		return err
	}
	if k.asJSON || *format == "json" {
		return printJSON(c.stdout, rep)
	}
	return printReport(c.stdout, rep)
}

func printReport(out io.Writer, rep *api.KeyReport) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	keys := func(title string, ks []api.ReportKey, extra func(api.ReportKey) string) {
		fmt.Fprintf(tw, "%s (%d)\n", title, len(ks))
		if len(ks) == 0 {
			return
		}
		fmt.Fprintln(tw, "  NAME\tSTATE\tTAGS\tCREATED\tLAST USED\tUSES\t")
		for _, k := range ks {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%s\n", k.Name, k.State, orDash(strings.Join(k.Tags, ",")), fmtTime(k.CreatedAt), fmtLastUsed(k.LastUsed), k.Count, extra(k))
		}
	}
	none := func(api.ReportKey) string { return "" }
	fmt.Fprintf(tw, "Key report at %s, unused for %s\n\n", fmtTime(rep.At), rep.UnusedFor)
	keys("Unused keys", rep.Unused, none)
	keys("Never used (orphans)", rep.NeverUsed, none)
	keys("Due for rotation", rep.RotationDue, func(k api.ReportKey) string {
		if k.RotationDueAt == nil {
			return ""
		}
		return "due " + fmtTime(*k.RotationDueAt)
	})
	fmt.Fprintf(tw, "Versions (%d keys with several)\n", len(rep.Versions))
	for _, v := range rep.Versions {
		fmt.Fprintf(tw, "  %s\tneeded %s\tnot needed %s\n", v.Name, versionList(v.Needed), versionList(v.NotNeeded))
	}
	fmt.Fprintf(tw, "Stale credentials (%d)\n", len(rep.StaleCredentials))
	for _, cr := range rep.StaleCredentials {
		fmt.Fprintf(tw, "  %s %s\t%s\t%s\tcreated %s\tlast used %s\n", cr.Kind, cr.ID, orDash(cr.Name), strings.Join(cr.Policies, ","), fmtTime(cr.CreatedAt), fmtLastUsed(cr.LastUsed))
	}
	return tw.Flush()
}

func versionList(vs []uint32) string {
	if len(vs) == 0 {
		return "-"
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("v%d", v)
	}
	return strings.Join(parts, ",")
}

// tagRuleConfig is one tag_rules entry of the server configuration.
type tagRuleConfig struct {
	MaxRotationPeriod time.Duration `yaml:"max_rotation_period"`
	MinDeletionWindow time.Duration `yaml:"min_deletion_window"`
}

func (fc *fileConfig) checkUsage() []error {
	var errs []error
	if fc.UsageFlushInterval < 0 {
		errs = append(errs, fmt.Errorf("%w: usage_flush_interval must not be negative", errBadValue))
	}
	for tag, r := range fc.TagRules {
		if !api.ValidTag(tag) {
			errs = append(errs, fmt.Errorf("%w: tag_rules: %q is not a tag ([a-z0-9_-], at most %d)", errBadValue, tag, api.MaxTagLen))
		}
		if r.MaxRotationPeriod < 0 || r.MinDeletionWindow < 0 {
			errs = append(errs, fmt.Errorf("%w: tag_rules.%s: durations must not be negative", errBadValue, tag))
		}
		if r.MinDeletionWindow > node.MaxDeletionWindow {
			errs = append(errs, fmt.Errorf("%w: tag_rules.%s: min_deletion_window above the %s maximum window", errBadValue, tag, node.MaxDeletionWindow))
		}
	}
	return errs
}

func (fc *fileConfig) applyUsage(cfg *node.Config) {
	if fc.UsageFlushInterval > 0 {
		cfg.Usage.FlushInterval = fc.UsageFlushInterval
	}
	if fc.TagRules != nil {
		cfg.Usage.TagRules = make(map[string]node.TagRule, len(fc.TagRules))
		for tag, r := range fc.TagRules {
			cfg.Usage.TagRules[tag] = node.TagRule{MaxRotationPeriod: r.MaxRotationPeriod, MinDeletionWindow: r.MinDeletionWindow}
		}
	}
}
