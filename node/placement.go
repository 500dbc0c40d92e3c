package node

import "sort"

// Voter placement policy (documented in README "Regions and membership"):
//
//   - The cluster wants the largest odd number of voters that is at most
//     MaxVoters (default 5) and at most the number of eligible nodes.
//     Eligible: in the Raft configuration, alive in gossip (a voter that
//     died less than DeadVoterTimeout ago still counts, so a blip causes no
//     churn), and, for a non-voter, caught up with the leader's log.
//   - Voters are picked round-robin across regions, largest region first
//     (the leader's region always first, the leader always picked), current
//     voters before non-voters within a region. With three or more regions
//     no region then holds a quorum alone: 3 voters spread 1/1/1 and 5
//     voters 2/2/1.
//   - A voter dead for longer than DeadVoterTimeout is no longer eligible:
//     a caught-up non-voter replaces it. When a whole region is gone that
//     long, its voters are replaced by nodes in the remaining regions, if
//     there are any; otherwise they stay voters and the quorum is unchanged.
//   - A node dead for longer than DeadNodeRemoveTimeout is removed from the
//     Raft configuration.

// candidate is one node as the placement sees it.
type candidate struct {
	id       string
	region   string
	voter    bool
	eligible bool
}

// placeVoters returns the ids that should be voters. leader is always
// included when eligible.
func placeVoters(cands []candidate, leader string, maxVoters int) []string {
	byRegion := map[string][]candidate{}
	leaderRegion := ""
	total := 0
	for _, c := range cands {
		if !c.eligible {
			continue
		}
		byRegion[c.region] = append(byRegion[c.region], c)
		total++
		if c.id == leader {
			leaderRegion = c.region
		}
	}
	n := min(maxVoters, total)
	if n > 1 && n%2 == 0 {
		n--
	}
	regions := make([]string, 0, len(byRegion))
	for r, cs := range byRegion {
		regions = append(regions, r)
		sort.Slice(cs, func(i, j int) bool {
			a, b := cs[i], cs[j]
			if (a.id == leader) != (b.id == leader) {
				return a.id == leader
			}
			if a.voter != b.voter {
				return a.voter
			}
			return a.id < b.id
		})
	}
	sort.Slice(regions, func(i, j int) bool {
		a, b := regions[i], regions[j]
		if (a == leaderRegion) != (b == leaderRegion) {
			return a == leaderRegion
		}
		if len(byRegion[a]) != len(byRegion[b]) {
			return len(byRegion[a]) > len(byRegion[b])
		}
		return a < b
	})
	var out []string
	for round := 0; len(out) < n; round++ {
		progressed := false
		for _, r := range regions {
			if len(out) == n {
				break
			}
			if round < len(byRegion[r]) {
				out = append(out, byRegion[r][round].id)
				progressed = true
			}
		}
		if !progressed {
			break
		}
	}
	sort.Strings(out)
	return out
}
