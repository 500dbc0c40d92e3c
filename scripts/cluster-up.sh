#!/usr/bin/env bash
# Start the local 5-node, 3-region keyd cluster (docker-compose.cluster.yml:
# n1, n2 in r1; n3, n4 in r2; n5 in r3) and initialise and unseal it.
#
#   1. certificates, the gossip key and node configs into deploy/generated/
#      (gitignored): ca/ holds the CA and its key (never mounted), <id>/
#      holds what node <id> mounts read-only at /etc/keyd: keyd.yaml, its
#      cert and key, ca.pem, gossip.key, softhsm2.conf and hsm.pin;
#   2. docker-compose -p keydc up --no-start, then each node's SoftHSM2
#      token is initialised once (label keyd-<id>) in a throwaway container
#      on the node's token volume; then up -d;
#   3. waits, bounded, for the nodes to answer and elect a leader;
#   4. operator init -custodians 5 -threshold 3, saving the shares and the
#      admin token in deploy/generated/secrets.env (mode 0600);
#   5. unseals with three shares, waits for node shares (warm rejoin) to
#      be dealt to every node's HSM, and prints export lines for the host CLI.
#
# secrets.env is for this dev/drill cluster only: a real deployment never
# writes custodian shares to disk; each custodian keeps one and types it
# into `keyd operator unseal`. Rerunning the script on an initialised
# cluster skips init and only unseals sealed nodes with the saved shares.
#
# Environment: UP_TIMEOUT seconds to wait for the cluster (default 60);
# KEYD_PROJECT (default keydc), KEYD_NET_PREFIX (172.28.0),
# KEYD_PORT_PREFIX (182), KEYD_IMAGE (keyd:local) and KEYD_GEN
# (deploy/generated) select another
# instance of the same compose file (make chaos uses keydchaos);
# KEYD_NODES (default "n1 n2 n3 n4 n5") the nodes to start.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export KEYD_PROJECT=${KEYD_PROJECT:-keydc}
export KEYD_NET_PREFIX=${KEYD_NET_PREFIX:-172.28.0}
export KEYD_PORT_PREFIX=${KEYD_PORT_PREFIX:-182}
export KEYD_GEN=${KEYD_GEN:-$ROOT/deploy/generated}
COMPOSE=(docker-compose -f docker-compose.cluster.yml -p "$KEYD_PROJECT")
GEN="$KEYD_GEN"
SECRETS="$GEN/secrets.env"
KEYD="$ROOT/bin/keyd"
umask 077 # init output, secrets.env: never readable by others
UP_TIMEOUT=${UP_TIMEOUT:-60}

read -r -a NODES <<<"${KEYD_NODES:-n1 n2 n3 n4 n5}"
declare -A REGION=([n1]=r1 [n2]=r1 [n3]=r2 [n4]=r2 [n5]=r3 [n6]=r4 [n7]=r4)
declare -A IP=() HOSTPORT=()
for i in 1 2 3 4 5 6 7; do
  IP[n$i]=$KEYD_NET_PREFIX.1$i
  HOSTPORT[n$i]=${KEYD_PORT_PREFIX}${i}0
done
ADDRS=""
for n in "${NODES[@]}"; do ADDRS+="${ADDRS:+,}127.0.0.1:${HOSTPORT[$n]}"; done

export KEYD_ADDR="$ADDRS"
export KEYD_CACERT="$GEN/ca/ca.pem"

log() { printf '[cluster-up %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

export KEYD_IMAGE=${KEYD_IMAGE:-keyd:local}
if ! docker image inspect "$KEYD_IMAGE" >/dev/null 2>&1 || [ ! -x "$KEYD" ]; then
  log "$KEYD_IMAGE or bin/keyd missing: running scripts/cluster-image.sh"
  IMAGE=$KEYD_IMAGE "$ROOT/scripts/cluster-image.sh"
fi

# --- 1. certificates and configs ------------------------------------------
for n in "${NODES[@]}"; do
  "$ROOT/scripts/cluster-node-dir.sh" "$n" "${REGION[$n]}"
done

# --- 2. containers and HSM tokens -----------------------------------------
log "docker-compose -p $KEYD_PROJECT up --no-start ${NODES[*]}"
"${COMPOSE[@]}" up --no-start --no-build "${NODES[@]}" 2>&1 | sed 's/^/    /' >&2
for n in "${NODES[@]}"; do
  "$ROOT/scripts/cluster-hsm-token.sh" "$n"
done
log "docker-compose -p $KEYD_PROJECT up -d ${NODES[*]}"
"${COMPOSE[@]}" up -d --no-build "${NODES[@]}" 2>&1 | sed 's/^/    /' >&2

# --- 3. wait for every node and a leader ----------------------------------
# status -json prints one row per node; a row without "status" is a node
# that did not answer.
status_json() { timeout 10 "$KEYD" status -json 2>/dev/null || true; }
deadline=$((SECONDS + UP_TIMEOUT))
while :; do
  js=$(status_json)
  answered=$(jq -r '[.[] | select(.status != null and (.addr | startswith("127.0.0.1:")))] | length' <<<"${js:-[]}" 2>/dev/null || echo 0)
  leader=$(jq -r '[.[] | .status.leader_id // empty] | first // empty' <<<"${js:-[]}" 2>/dev/null || true)
  if [ "$answered" -eq ${#NODES[@]} ] && [ -n "$leader" ]; then
    log "all ${#NODES[@]} nodes answer; leader $leader"
    break
  fi
  if [ $SECONDS -ge $deadline ]; then
    "${COMPOSE[@]}" ps >&2
    for n in "${NODES[@]}"; do "${COMPOSE[@]}" logs --tail 20 "$n" >&2 || true; done
    die "cluster not healthy within ${UP_TIMEOUT}s (answered=$answered leader=${leader:-none})"
  fi
  sleep 1
done

# --- 4. init (once) --------------------------------------------------------
initialized=$(jq -r '[.[] | select(.status.initialized == true)] | length' <<<"$js")
if [ "$initialized" -eq 0 ]; then
  log "operator init -custodians 5 -threshold 3"
  out="$GEN/.init.out"
  # Straight into a 0600 file: the shares never pass through argv.
  # -plaintext-shares: this drill cluster keeps its shares on purpose.
  timeout 30 "$KEYD" operator init -plaintext-shares -custodians 5 -threshold 3 >"$out" 2>"$GEN/.init.err" ||
    { cat "$GEN/.init.err" >&2; rm -f "$out"; die "operator init failed"; }
  {
    echo "# keyd local compose cluster: DEV/DRILL ONLY. Custodian shares and the admin"
    echo "# token are written here so scripts can unseal restarted nodes; a real"
    echo "# deployment never stores shares. Removed by scripts/cluster-down.sh."
    echo "KEYD_ADDR=$KEYD_ADDR"
    echo "KEYD_CACERT=$KEYD_CACERT"
    sed -n 's/^Admin token: \(.*\)$/KEYD_TOKEN=\1/p' "$out"
    sed -n 's/^Share \([0-9]*\): \(.*\)$/KEYD_SHARE_\1=\2/p' "$out"
  } >"$SECRETS.tmp"
  rm -f "$out" "$GEN/.init.err"
  grep -q '^KEYD_TOKEN=.' "$SECRETS.tmp" && [ "$(grep -c '^KEYD_SHARE_' "$SECRETS.tmp")" -eq 5 ] ||
    { rm -f "$SECRETS.tmp"; die "operator init output had no token or not 5 shares"; }
  chmod 0600 "$SECRETS.tmp"
  mv "$SECRETS.tmp" "$SECRETS"
  log "shares and admin token saved to $SECRETS (0600, dev/drill only)"
elif [ ! -s "$SECRETS" ]; then
  die "cluster is initialised but $SECRETS is missing: run scripts/cluster-down.sh (wipes the volumes) and start again"
fi
# shellcheck disable=SC1090
. "$SECRETS"
export KEYD_TOKEN

# --- 5. unseal every sealed node ------------------------------------------
# A share submitted to one node is verified there and relayed to every
# reachable peer, so three shares to any node unseal all; a node that was
# unreachable (or restarted) gets its own three.
unsealed_count() {
  jq -r '[.[] | select(.addr | startswith("127.0.0.1:")) | select(.status.initialized == true and .status.sealed == false)] | length' <<<"$(status_json)" 2>/dev/null || echo 0
}
for n in "${NODES[@]}"; do
  addr="127.0.0.1:${HOSTPORT[$n]}"
  sealed=$(timeout 10 "$KEYD" status -json -addr "$addr" 2>/dev/null |
    jq -r --arg a "$addr" '.[] | select(.addr == $a) | .status.sealed' 2>/dev/null || echo unknown)
  [ "$sealed" = "true" ] || continue
  log "unsealing $n with shares 1-3"
  for i in 1 2 3; do
    var="KEYD_SHARE_$i"
    printf '%s\n' "${!var}" | timeout 20 "$KEYD" operator unseal -addr "$addr" >/dev/null 2>&1 || true
  done
done
deadline=$((SECONDS + 30))
until [ "$(unsealed_count)" -eq ${#NODES[@]} ]; do
  [ $SECONDS -lt $deadline ] || { timeout 10 "$KEYD" status >&2 || true; die "not every node unsealed within 30s"; }
  sleep 0.5
done
# Node shares: the leader deals one to every voter's HSM after the unseal;
# until then a restarted node needs custodians. Wait (bounded) for "on".
shares_on() {
  jq -r '[.[] | select(.status.leader_id != null and .status.leader_id == .status.node_id) | .status.node_shares] | first // empty' <<<"$(status_json)" 2>/dev/null
}
deadline=$((SECONDS + 30))
until [ "$(shares_on)" = on ]; do
  [ $SECONDS -lt $deadline ] || { log "warning: node shares not on within 30s ($(shares_on)); restarted nodes will need custodians"; break; }
  sleep 0.5
done
timeout 10 "$KEYD" status >&2
log "cluster up and unsealed. For the host CLI:"
echo "export KEYD_ADDR=$KEYD_ADDR"
echo "export KEYD_CACERT=$KEYD_CACERT"
echo "export KEYD_TOKEN=\$(sed -n 's/^KEYD_TOKEN=//p' $SECRETS)"
