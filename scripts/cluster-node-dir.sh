#!/usr/bin/env bash
# Prepare compose node ID's config directory KEYD_GEN/ID (mounted read-only
# at /etc/keyd): its certificate and key from the cluster CA in KEYD_GEN/ca
# (created on first use, with the gossip key), ca.pem, gossip.key,
# keyd.yaml (scripts/cluster-node-config.sh), softhsm2.conf and a random
# HSM PIN (kept across reruns, like the certificate).
#
#   scripts/cluster-node-dir.sh ID REGION
#
# The initial members are n1-n5 (r1, r1, r2, r2, r3); any other ID is a
# spare that joins through gossip. Environment: KEYD_GEN, KEYD_NET_PREFIX
# (172.28.0).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 ID REGION" >&2; exit 2; }
n=$1 region=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GEN=${KEYD_GEN:-$ROOT/deploy/generated}
NET=${KEYD_NET_PREFIX:-172.28.0}
KEYD="$ROOT/bin/keyd"
RUNTIME_UID=10001
[[ $n =~ ^n[1-9]$ ]] || { echo "cluster-node-dir: node id must be n1..n9, got $n" >&2; exit 2; }
ip="$NET.1${n#n}"
umask 077
mkdir -p "$GEN/ca"
declare -A R=([n1]=r1 [n2]=r1 [n3]=r2 [n4]=r2 [n5]=r3)
peers=""
for p in n1 n2 n3 n4 n5; do
  peers+="  - {id: $p, raft_addr: $NET.1${p#n}:8201, api_addr: $NET.1${p#n}:8200, region: ${R[$p]}}"$'\n'
done
dir="$GEN/$n"
mkdir -p "$dir"
if [ ! -s "$dir/node-$n.pem" ] || [ ! -s "$dir/node-$n-key.pem" ]; then
  # SANs: the bridge IP (peers and the advertised api_addr), 127.0.0.1
  # (the host CLI through the published port, and `docker exec` inside
  # the container), and the service name.
  "$KEYD" certs -ca-dir "$GEN/ca" -node "$n" -hosts "$ip,127.0.0.1,localhost,$n" -out "$dir" >/dev/null
  echo "[cluster-node-dir] issued certificate for $n (SANs $ip, 127.0.0.1, localhost, $n)" >&2
fi
cp "$GEN/ca/ca.pem" "$dir/ca.pem"
cp "$GEN/ca/gossip.key" "$dir/gossip.key"
"$ROOT/scripts/cluster-node-config.sh" "$n" "$region" "$ip" "$peers" >"$dir/keyd.yaml"
# SoftHSM2: the token lives in the node's <id>-hsm volume; the PIN is
# random per node, read by keyd from pin_file (never argv or env).
printf '# keyd compose node %s\ndirectories.tokendir = /var/lib/softhsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$n" >"$dir/softhsm2.conf"
[ -s "$dir/hsm.pin" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/hsm.pin"
# The container runs as uid 10001 and must read its key (0600) through
# the read-only bind mount. As root, hand it the files; otherwise the
# key has to be world-readable (acceptable only for this dev cluster).
chmod 0644 "$dir/keyd.yaml" "$dir/ca.pem" "$dir/node-$n.pem" "$dir/softhsm2.conf"
chmod 0755 "$dir"
if [ "$(id -u)" -eq 0 ]; then
  chown -R "$RUNTIME_UID:$RUNTIME_UID" "$dir"
else
  echo "[cluster-node-dir] not root: making $n's private key, gossip key and HSM PIN world-readable so uid $RUNTIME_UID can read them (dev cluster only)" >&2
  chmod 0644 "$dir/node-$n-key.pem" "$dir/gossip.key" "$dir/hsm.pin"
fi
chmod 0700 "$GEN" # CA key and secrets.env live here; containers mount only <id>/
