#!/usr/bin/env bash
# Render one compose node's keyd.yaml from deploy/keyd.yaml.tmpl on stdout.
#
#   scripts/cluster-node-config.sh ID REGION IP PEERS
#
# PEERS is the YAML list of initial members ("  - {id: n1, ...}" lines),
# the same for every initial member. An ID outside it (the churn drill's
# spares n6, n7) gets no peers, bootstrap false and retry_join on the
# initial members' gossip addresses: it joins the running cluster through
# gossip and the leader adds it.
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 ID REGION IP PEERS" >&2; exit 2; }
id=$1 region=$2 ip=$3 peers=${4%$'\n'}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if grep -q "id: $id," <<<"$peers"; then
  bootstrap=true
  members="peers:"$'\n'"$peers"
else
  bootstrap=false
  seeds=$(sed -n 's/.*raft_addr: \([0-9.]*\):8201.*/\1:8202/p' <<<"$peers" | paste -sd, -)
  members="retry_join: [${seeds//,/, }]"
fi
sed -e "s/@@NODE_ID@@/$id/g" -e "s/@@REGION@@/$region/g" -e "s/@@IP@@/$ip/g" -e "s/@@BOOTSTRAP@@/$bootstrap/g" \
  "$ROOT/deploy/keyd.yaml.tmpl" | awk -v m="$members" '{ if ($0 == "@@MEMBERS@@") print m; else print }'
