// Package membership runs keyd's gossip layer: each node publishes a small,
// versioned [Meta] (id, region, addresses, seal state, voter flag, applied
// index, HSM health) over hashicorp/memberlist and learns everyone else's.
//
// It owns the gossip timing profiles, the Meta wire format and the view of
// members including recently dead and departed ones. It never decides
// anything (voter placement, removal): callers read [Gossip.Members] or
// follow [Config.OnChange]. Gossip is encrypted and authenticated with a
// cluster key; the key is never logged or put in an error.
package membership
