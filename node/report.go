package node

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/fsm"
)

// KeyUsage answers GET /v1/keys/{name}/usage from the replicated usage
// (uses not flushed yet are missing).
func (n *Node) KeyUsage(ctx context.Context, name string) (*api.KeyUsage, error) {
	idx := n.fsm.AppliedIndex()
	if _, err := n.fsm.Key(name); err != nil {
		return nil, err
	}
	rec, err := n.fsm.KeyUsage(name)
	if err != nil {
		return nil, err
	}
	out := &api.KeyUsage{Name: name, Versions: []api.VersionUsage{}, Identities: []api.IdentityUsage{}, Index: idx}
	tot := rec.Total()
	if !tot.Last.IsZero() {
		out.LastUsed = &tot.Last
	}
	out.Count = tot.Count
	for v, s := range rec.Versions {
		out.Versions = append(out.Versions, api.VersionUsage{Version: v, UseStat: api.UseStat{LastUsed: s.Last, Count: s.Count}})
	}
	slices.SortFunc(out.Versions, func(a, b api.VersionUsage) int { return int(a.Version) - int(b.Version) })
	for id, s := range rec.Identities {
		out.Identities = append(out.Identities, api.IdentityUsage{Identity: id, UseStat: api.UseStat{LastUsed: s.Last, Count: s.Count}})
	}
	slices.SortFunc(out.Identities, func(a, b api.IdentityUsage) int { return strings.Compare(a.Identity, b.Identity) })
	return out, nil
}

// KeyReport answers GET /v1/sys/key-report: keys unused for unusedFor
// (or never used and older than that), versions still needed, keys due
// for rotation and, when withCredentials, tokens and identities unused
// for unusedFor. visible filters the keys listed (the caller's read
// rights).
func (n *Node) KeyReport(ctx context.Context, unusedFor time.Duration, withCredentials bool, visible func(string) bool) (*api.KeyReport, error) {
	now := n.now()
	idx := n.fsm.AppliedIndex()
	usage, err := n.fsm.AllKeyUsage()
	if err != nil {
		return nil, err
	}
	cutoff := now.Add(-unusedFor)
	out := &api.KeyReport{
		At: now, UnusedFor: unusedFor.String(), Index: idx,
		Unused: []api.ReportKey{}, NeverUsed: []api.ReportKey{}, RotationDue: []api.ReportKey{},
		Versions: []api.ReportVersions{}, StaleCredentials: []api.ReportCredential{},
	}
	err = n.fsm.ForEachKey(func(rec *fsm.KeyRecord) error {
		if visible != nil && !visible(rec.Name) {
			return nil
		}
		u := usage[rec.Name]
		tot := u.Total()
		rk := api.ReportKey{
			Name: rec.Name, State: rec.State, Tags: rec.Tags,
			CreatedAt: rec.CreatedAt, RotatedAt: rec.RotatedAt, Count: tot.Count,
		}
		if rec.RotationPeriod > 0 {
			rk.RotationPeriod = rec.RotationPeriod.String()
			due := rec.RotatedAt.Add(rec.RotationPeriod)
			rk.RotationDueAt = &due
		}
		if !tot.Last.IsZero() {
			last := tot.Last
			rk.LastUsed = &last
		}
		switch {
		case tot.Last.IsZero() && rec.CreatedAt.Before(cutoff):
			out.NeverUsed = append(out.NeverUsed, rk)
		case !tot.Last.IsZero() && tot.Last.Before(cutoff):
			out.Unused = append(out.Unused, rk)
		}
		if rec.RotationDue(now) {
			out.RotationDue = append(out.RotationDue, rk)
		}
		if rec.Latest() > 1 {
			out.Versions = append(out.Versions, versionsNeeded(rec, u))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if withCredentials {
		if err := n.staleCredentials(out, cutoff); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// versionsNeeded splits a key's decryptable versions: the latest is
// needed; an older one is needed when it was used after it stopped being
// the latest (the next version's creation), since only existing data
// still calls for it.
func versionsNeeded(rec *fsm.KeyRecord, u *fsm.KeyUsageRecord) api.ReportVersions {
	rv := api.ReportVersions{Name: rec.Name, Latest: rec.Latest(), Min: rec.MinDecryptionVersion, Needed: []uint32{}, NotNeeded: []uint32{}}
	for v := max(rec.MinDecryptionVersion, 1); v <= rec.Latest(); v++ {
		if v == rec.Latest() {
			rv.Needed = append(rv.Needed, v)
			continue
		}
		superseded := rec.Versions[v].CreatedAt // version v+1's creation
		var s fsm.UseStat
		if u != nil {
			s = u.Versions[v]
		}
		if s.Last.After(superseded) {
			rv.Needed = append(rv.Needed, v)
		} else {
			rv.NotNeeded = append(rv.NotNeeded, v)
		}
	}
	return rv
}

// principalLastUse returns the recorded last use of every principal id.
func (n *Node) principalLastUse() map[string]time.Time {
	m, err := n.fsm.PrincipalUsage()
	if err != nil {
		n.log.Warn("read credential usage", "err", err)
		return nil
	}
	out := make(map[string]time.Time, len(m))
	for id, s := range m {
		out[id] = s.Last
	}
	return out
}

func lastUsePtr(m map[string]time.Time, id string) *time.Time {
	if t, ok := m[id]; ok && !t.IsZero() {
		return &t
	}
	return nil
}

func (n *Node) staleCredentials(out *api.KeyReport, cutoff time.Time) error {
	last := n.principalLastUse()
	toks, err := n.fsm.Tokens()
	if err != nil {
		return err
	}
	for _, r := range toks {
		acc := Accessor(r.Hash)
		lu := lastUsePtr(last, "token:"+acc)
		if stale(lu, r.CreatedAt, cutoff) {
			out.StaleCredentials = append(out.StaleCredentials, api.ReportCredential{Kind: "token", ID: acc, Name: r.Name, Policies: r.Policies, CreatedAt: r.CreatedAt, LastUsed: lu})
		}
	}
	ids, err := n.fsm.Identities()
	if err != nil {
		return err
	}
	for _, r := range ids {
		if len(r.ID) < 16 {
			continue
		}
		lu := lastUsePtr(last, "cert:"+r.ID[:16])
		if stale(lu, r.CreatedAt, cutoff) {
			out.StaleCredentials = append(out.StaleCredentials, api.ReportCredential{Kind: "identity", ID: r.ID, Name: r.Name, Policies: r.Policies, CreatedAt: r.CreatedAt, LastUsed: lu})
		}
	}
	slices.SortFunc(out.StaleCredentials, func(a, b api.ReportCredential) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return nil
}

// stale: not used since cutoff, and old enough to have been.
func stale(lastUse *time.Time, created, cutoff time.Time) bool {
	if lastUse != nil {
		return lastUse.Before(cutoff)
	}
	return created.Before(cutoff)
}
