package node

import (
	"slices"
	"testing"
)

func TestPlaceVoters(t *testing.T) {
	t.Parallel()
	c := func(id, region string, voter, eligible bool) candidate {
		return candidate{id: id, region: region, voter: voter, eligible: eligible}
	}
	tests := []struct {
		name   string
		cands  []candidate
		leader string
		max    int
		want   []string
	}{
		{"three regions one each", []candidate{c("a1", "a", true, true), c("b1", "b", true, true), c("c1", "c", true, true)}, "a1", 5, []string{"a1", "b1", "c1"}},
		{"five nodes three regions 2/2/1", []candidate{
			c("a1", "a", true, true), c("b1", "b", true, true), c("c1", "c", true, true),
			c("a2", "a", false, true), c("b2", "b", false, true),
		}, "a1", 5, []string{"a1", "a2", "b1", "b2", "c1"}},
		{"even count rounds down to odd", []candidate{
			c("a1", "a", true, true), c("b1", "b", true, true), c("c1", "c", true, true), c("a2", "a", false, true),
		}, "a1", 5, []string{"a1", "b1", "c1"}},
		{"not caught up stays non-voter", []candidate{
			c("a1", "a", true, true), c("b1", "b", true, true), c("c1", "c", true, true),
			c("a2", "a", false, false), c("b2", "b", false, true),
		}, "a1", 5, []string{"a1", "b1", "c1"}},
		{"dead voter replaced in another region", []candidate{
			c("a1", "a", true, true), c("b1", "b", true, true), c("c1", "c", true, false), c("b2", "b", false, true),
		}, "a1", 5, []string{"a1", "b1", "b2"}},
		{"max voters three of six", []candidate{
			c("a1", "a", true, true), c("a2", "a", true, true), c("b1", "b", true, true),
			c("b2", "b", false, true), c("c1", "c", true, true), c("c2", "c", false, true),
		}, "a2", 3, []string{"a2", "b1", "c1"}},
		{"leader region first even if smaller", []candidate{
			c("a1", "a", true, true), c("b1", "b", true, true), c("b2", "b", true, true), c("c1", "c", false, true),
			c("d1", "d", false, true),
		}, "a1", 3, []string{"a1", "b1", "c1"}},
		{"single node", []candidate{c("a1", "a", true, true)}, "a1", 5, []string{"a1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := placeVoters(tt.cands, tt.leader, tt.max)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// With voters in three or more regions, no region may hold a quorum.
func TestPlaceVotersNoRegionQuorum(t *testing.T) {
	t.Parallel()
	regions := []string{"a", "b", "c"}
	for nodes := 3; nodes <= 9; nodes++ {
		var cands []candidate
		for i := 0; i < nodes; i++ {
			cands = append(cands, candidate{id: string(rune('a'+i%3)) + string(rune('0'+i)), region: regions[i%3], eligible: true, voter: i < 3})
		}
		got := placeVoters(cands, cands[0].id, 5)
		per := map[string]int{}
		for _, id := range got {
			for _, c := range cands {
				if c.id == id {
					per[c.region]++
				}
			}
		}
		for r, k := range per {
			if k >= len(got)/2+1 {
				t.Fatalf("%d nodes: region %s holds %d of %d voters", nodes, r, k, len(got))
			}
		}
	}
}
