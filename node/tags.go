package node

import (
	"sync"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
)

// TagRule is what a classification tag imposes on the keys carrying it.
// Zero fields impose nothing.
type TagRule struct {
	// MaxRotationPeriod: a key with the tag rotates at least this often.
	// A key created without a rotation period gets this one; a longer
	// period (or none, on config) is refused.
	MaxRotationPeriod time.Duration
	// MinDeletionWindow: a key with the tag stays recoverable at least
	// this long after its deletion is scheduled (a shorter
	// pending_window is refused).
	MinDeletionWindow time.Duration
}

// DefaultTagRules are the built-in stricter defaults:
//
//	pci       rotation at least every 90 days (PCI DSS 3.6.4 cryptoperiods)
//	pii, phi  deletion window of at least 7 days, so a mistaken
//	          crypto-shred of personal or health data can be cancelled
//
// Every read and decrypt is already audited for every key (keyd has no
// audit sampling nor read-audit exclusion), so no tag needs to turn
// auditing on.
func DefaultTagRules() map[string]TagRule {
	return map[string]TagRule{
		api.TagPCI: {MaxRotationPeriod: 90 * 24 * time.Hour},
		api.TagPII: {MinDeletionWindow: 7 * 24 * time.Hour},
		api.TagPHI: {MinDeletionWindow: 7 * 24 * time.Hour},
	}
}

// UsageConfig tunes usage tracking and tag defaults.
type UsageConfig struct {
	// FlushInterval is how often a node sends its aggregated uses to the
	// leader as one Raft write (default 60s).
	FlushInterval time.Duration
	// TagRules replaces DefaultTagRules when non-nil (an empty map: no
	// tag imposes anything).
	TagRules map[string]TagRule
	// Now is the clock of usage times and retention (time.Now by
	// default; tests inject one).
	Now func() time.Time
}

func (n *Node) tagRules() map[string]TagRule {
	if n.cfg.Usage.TagRules != nil {
		return n.cfg.Usage.TagRules
	}
	return DefaultTagRules()
}

func (n *Node) now() time.Time {
	if n.cfg.Usage.Now != nil {
		return n.cfg.Usage.Now().UTC()
	}
	return n.clock.now().UTC()
}

// strictest folds the rules of tags: the shortest maximum rotation and
// the longest minimum deletion window, and the tags that set them.
func strictest(rules map[string]TagRule, tags []string) (r TagRule, rotTag, delTag string) {
	for _, t := range tags {
		tr, ok := rules[t]
		if !ok {
			continue
		}
		if tr.MaxRotationPeriod > 0 && (r.MaxRotationPeriod == 0 || tr.MaxRotationPeriod < r.MaxRotationPeriod) {
			r.MaxRotationPeriod, rotTag = tr.MaxRotationPeriod, t
		}
		if tr.MinDeletionWindow > r.MinDeletionWindow {
			r.MinDeletionWindow, delTag = tr.MinDeletionWindow, t
		}
	}
	return r, rotTag, delTag
}

// tagRotation applies the tags' rotation rule to a requested period:
// the period to store, or a bad_request naming the tag. explicit reports
// that the caller set the period (on create, an unset one takes the
// tag's maximum).
func (n *Node) tagRotation(tags []string, period time.Duration, explicit bool) (time.Duration, error) {
	r, tag, _ := strictest(n.tagRules(), tags)
	if r.MaxRotationPeriod == 0 {
		return period, nil
	}
	if !explicit && (period == 0 || period > r.MaxRotationPeriod) {
		return r.MaxRotationPeriod, nil
	}
	if period == 0 || period > r.MaxRotationPeriod {
		return 0, badRequest("keys tagged %s must rotate at least every %s", tag, r.MaxRotationPeriod)
	}
	return period, nil
}

// tagDeletionWindow checks a deletion window against the key's tags.
func (n *Node) tagDeletionWindow(tags []string, window time.Duration) error {
	r, _, tag := strictest(n.tagRules(), tags)
	if window < r.MinDeletionWindow {
		return badRequest("keys tagged %s stay recoverable at least %s: pending_window %s is too short", tag, r.MinDeletionWindow, window)
	}
	return nil
}

// minDeletionWindow is the window for a deletion the system schedules
// (retention): the default, or longer when a tag asks.
func (n *Node) minDeletionWindow(tags []string) time.Duration {
	r, _, _ := strictest(n.tagRules(), tags)
	return max(DefaultDeletionWindow, r.MinDeletionWindow)
}

// parseTags validates request tags (nil for none).
func parseTags(tags []string) ([]string, error) {
	out, err := api.NormalizeTags(tags)
	if err != nil {
		return nil, badRequest("tags: %v", err)
	}
	return out, nil
}

// parseRetention parses a retention ("8760h"; "" or "0": none). It must
// be at least a day, so a typo cannot shred a key within minutes.
func parseRetention(s string) (time.Duration, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, badRequest("retention %q is not a non-negative duration like 8760h", s)
	}
	if d > 0 && d < MinRetention {
		return 0, badRequest("retention must be at least %s", MinRetention)
	}
	return d, nil
}

// MinRetention is the shortest retention a key may carry.
const MinRetention = 24 * time.Hour

// tagTable is every tagged key's tags, from the replicated records,
// kept in step by the FSM observer (before the index is published) and
// read without locks by authorization. Untagged keys are absent.
type tagTable struct{ m sync.Map } // name -> []string (immutable)

func (t *tagTable) of(name string) []string {
	if t == nil {
		return nil
	}
	v, ok := t.m.Load(name)
	if !ok {
		return nil
	}
	return v.([]string)
}

func (t *tagTable) set(name string, tags []string) {
	if len(tags) == 0 {
		t.m.Delete(name)
		return
	}
	t.m.Store(name, tags)
}

// rebuild loads the table from the FSM's index of tagged keys: its cost
// is the number of tagged keys, not of all keys (a node's start and a
// snapshot restore do this).
func (t *tagTable) rebuild(f *fsm.FSM) error {
	seen := map[string]bool{}
	err := f.ForEachTagged(func(name string, tags []string) error {
		seen[name] = true
		t.set(name, tags)
		return nil
	})
	t.m.Range(func(k, _ any) bool {
		if !seen[k.(string)] {
			t.m.Delete(k)
		}
		return true
	})
	return err
}

func (t *tagTable) onEvent(ev fsm.Event, f *fsm.FSM) error {
	if ev.Restored {
		return t.rebuild(f)
	}
	for _, k := range ev.Keys {
		t.set(k.Name, k.Tags)
	}
	for _, name := range ev.Deleted {
		t.m.Delete(name)
	}
	return nil
}

// createTagsRetention validates a create request's tags and retention
// and applies the tags' rotation rule to period.
func (n *Node) createTagsRetention(req api.CreateKeyRequest, period time.Duration) ([]string, time.Duration, time.Duration, error) {
	tags, err := parseTags(req.Tags)
	if err != nil {
		return nil, 0, 0, err
	}
	retention, err := parseRetention(req.Retention)
	if err != nil {
		return nil, 0, 0, err
	}
	period, err = n.tagRotation(tags, period, req.RotationPeriod != "")
	if err != nil {
		return nil, 0, 0, err
	}
	return tags, retention, period, nil
}

// configTagsRetention fills c's tags and retention from req and checks
// the resulting tags against the resulting rotation period. Adding a
// tag with a rotation rule to a key rotating less often (or not at all)
// sets the rule's period, as on create.
func (n *Node) configTagsRetention(name string, req api.KeyConfigRequest, c *fsm.ConfigureKey) error {
	if req.Tags != nil {
		tags, err := parseTags(*req.Tags)
		if err != nil {
			return err
		}
		if tags == nil {
			tags = []string{}
		}
		c.Tags = &tags
	}
	if req.Retention != nil {
		r, err := parseRetention(*req.Retention)
		if err != nil {
			return err
		}
		c.Retention = &r
	}
	if c.Tags == nil && c.RotationPeriod == nil {
		return nil
	}
	rec, err := n.fsm.Key(name)
	if err != nil {
		return nil // the write reports the missing key
	}
	tags, period := rec.Tags, rec.RotationPeriod
	if c.Tags != nil {
		tags = *c.Tags
	}
	if c.RotationPeriod != nil {
		period = *c.RotationPeriod
	}
	p, err := n.tagRotation(tags, period, c.RotationPeriod != nil)
	if err != nil {
		return err
	}
	if p != period {
		c.RotationPeriod = &p
	}
	return nil
}
