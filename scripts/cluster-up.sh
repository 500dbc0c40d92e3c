#!/usr/bin/env bash
# Start the local 3-node, 3-region keyd cluster (docker-compose.cluster.yml)
# and initialise and unseal it.
#
#   1. certificates and node configs into deploy/generated/ (gitignored):
#      ca/ holds the CA and its key (never mounted), <id>/ holds what node
#      <id> mounts read-only at /etc/keyd: keyd.yaml, its cert and key, ca.pem;
#   2. docker-compose -p keydc up -d (builds keyd:local first when missing);
#   3. waits, bounded, for the nodes to answer and elect a leader;
#   4. operator init -custodians 5 -threshold 3, saving the shares and the
#      admin token in deploy/generated/secrets.env (mode 0600);
#   5. unseals with three shares and prints export lines for the host CLI.
#
# secrets.env is for this dev/drill cluster only: a real deployment never
# writes custodian shares to disk; each custodian keeps one and types it
# into `keyd operator unseal`. Rerunning the script on an initialised
# cluster skips init and only unseals sealed nodes with the saved shares.
#
# Environment: UP_TIMEOUT seconds to wait for the cluster (default 60).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMPOSE=(docker-compose -f docker-compose.cluster.yml -p keydc)
GEN="$ROOT/deploy/generated"
SECRETS="$GEN/secrets.env"
KEYD="$ROOT/bin/keyd"
RUNTIME_UID=10001
UP_TIMEOUT=${UP_TIMEOUT:-60}

NODES=(n1 n2 n3)
declare -A REGION=([n1]=r1 [n2]=r2 [n3]=r3)
declare -A IP=([n1]=172.28.0.11 [n2]=172.28.0.12 [n3]=172.28.0.13)
declare -A HOSTPORT=([n1]=18210 [n2]=18220 [n3]=18230)

export KEYD_ADDR="127.0.0.1:18210,127.0.0.1:18220,127.0.0.1:18230"
export KEYD_CACERT="$GEN/ca/ca.pem"

log() { printf '[cluster-up %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

if ! docker image inspect keyd:local >/dev/null 2>&1 || [ ! -x "$KEYD" ]; then
  log "keyd:local or bin/keyd missing: running scripts/cluster-image.sh"
  "$ROOT/scripts/cluster-image.sh"
fi

# --- 1. certificates and configs ------------------------------------------
umask 077
mkdir -p "$GEN/ca"
peers=""
for n in "${NODES[@]}"; do
  peers+="  - {id: $n, raft_addr: ${IP[$n]}:8201, api_addr: ${IP[$n]}:8200, region: ${REGION[$n]}}"$'\n'
done
for n in "${NODES[@]}"; do
  dir="$GEN/$n"
  mkdir -p "$dir"
  if [ ! -s "$dir/node-$n.pem" ] || [ ! -s "$dir/node-$n-key.pem" ]; then
    # SANs: the bridge IP (peers and the advertised api_addr), 127.0.0.1
    # (the host CLI through the published port, and `docker exec` inside
    # the container), and the service name.
    "$KEYD" certs -ca-dir "$GEN/ca" -node "$n" -hosts "${IP[$n]},127.0.0.1,localhost,$n" -out "$dir" >/dev/null
    log "issued certificate for $n (SANs ${IP[$n]}, 127.0.0.1, localhost, $n)"
  fi
  cp "$GEN/ca/ca.pem" "$dir/ca.pem"
  sed -e "s/@@NODE_ID@@/$n/g" -e "s/@@REGION@@/${REGION[$n]}/g" -e "s/@@IP@@/${IP[$n]}/g" \
    deploy/keyd.yaml.tmpl | awk -v peers="${peers%$'\n'}" '{ if ($0 == "@@PEERS@@") print peers; else print }' >"$dir/keyd.yaml"
  # The container runs as uid 10001 and must read its key (0600) through
  # the read-only bind mount. As root, hand it the files; otherwise the
  # key has to be world-readable (acceptable only for this dev cluster).
  chmod 0644 "$dir/keyd.yaml" "$dir/ca.pem" "$dir/node-$n.pem"
  chmod 0755 "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown -R "$RUNTIME_UID:$RUNTIME_UID" "$dir"
  else
    log "not root: making $n's private key world-readable so uid $RUNTIME_UID can read it (dev cluster only)"
    chmod 0644 "$dir/node-$n-key.pem"
  fi
done
chmod 0700 "$GEN" # CA key and secrets.env live here; containers mount only <id>/

# --- 2. containers ---------------------------------------------------------
log "docker-compose up -d"
"${COMPOSE[@]}" up -d --no-build 2>&1 | sed 's/^/    /' >&2

# --- 3. wait for every node and a leader ----------------------------------
# status -json prints one row per node; a row without "status" is a node
# that did not answer.
status_json() { timeout 10 "$KEYD" status -json 2>/dev/null || true; }
deadline=$((SECONDS + UP_TIMEOUT))
while :; do
  js=$(status_json)
  answered=$(jq -r '[.[] | select(.status != null and (.addr | startswith("127.0.0.1:")))] | length' <<<"${js:-[]}" 2>/dev/null || echo 0)
  leader=$(jq -r '[.[] | .status.leader_id // empty] | first // empty' <<<"${js:-[]}" 2>/dev/null || true)
  if [ "$answered" -eq 3 ] && [ -n "$leader" ]; then
    log "all 3 nodes answer; leader $leader"
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
until [ "$(unsealed_count)" -eq 3 ]; do
  [ $SECONDS -lt $deadline ] || { timeout 10 "$KEYD" status >&2 || true; die "not every node unsealed within 30s"; }
  sleep 0.5
done
timeout 10 "$KEYD" status >&2
log "cluster up and unsealed. For the host CLI:"
echo "export KEYD_ADDR=$KEYD_ADDR"
echo "export KEYD_CACERT=$KEYD_CACERT"
echo "export KEYD_TOKEN=\$(sed -n 's/^KEYD_TOKEN=//p' $SECRETS)"
