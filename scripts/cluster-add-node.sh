#!/usr/bin/env bash
# Start a spare node (n6 or n7, compose profile "churn") in REGION next to a
# running compose cluster: its config directory, its own SoftHSM2 token,
# then the container. It has no peers list: it joins through gossip
# (retry_join on n1-n5), the leader adds it as a non-voter and promotes it
# when placement wants it, and deals it a node share.
#
#   scripts/cluster-add-node.sh ID REGION
#
# Environment: as scripts/cluster-up.sh (KEYD_PROJECT, KEYD_NET_PREFIX,
# KEYD_PORT_PREFIX, KEYD_IMAGE, KEYD_GEN).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 ID REGION" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export KEYD_PROJECT=${KEYD_PROJECT:-keydc}
export KEYD_GEN=${KEYD_GEN:-$ROOT/deploy/generated}
COMPOSE=(docker-compose -f docker-compose.cluster.yml -p "$KEYD_PROJECT" --profile churn)
"$ROOT/scripts/cluster-node-dir.sh" "$1" "$2"
"${COMPOSE[@]}" up --no-start --no-build "$1" 2>&1 | sed 's/^/    /' >&2
"$ROOT/scripts/cluster-hsm-token.sh" "$1"
"${COMPOSE[@]}" up -d --no-build --no-deps "$1" 2>&1 | sed 's/^/    /' >&2
