#!/usr/bin/env bash
# Initialise compose node ID's SoftHSM2 token (label keyd-ID) in its token
# volume, once: a throwaway container from keyd:local (no network, the
# runtime uid, read-only root) runs softhsm2-util on the volume with the
# node's softhsm2.conf. A token that already has the label is kept, so
# reruns and restarts never wipe a node's wrapping key.
#
#   scripts/cluster-hsm-token.sh ID
#
# The volume must exist (docker-compose up --no-start creates it). The user
# PIN is KEYD_GEN/ID/hsm.pin; the SO PIN is random and discarded (nobody
# re-initialises these tokens; a new token is a new volume). softhsm2-util
# takes PINs on its command line, visible to root on this host while it
# runs: acceptable for this dev/drill cluster only.
#
# Environment: KEYD_PROJECT (keydc), KEYD_GEN (deploy/generated),
# KEYD_IMAGE (keyd:local).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 ID" >&2; exit 2; }
id=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROJECT=${KEYD_PROJECT:-keydc}
GEN=${KEYD_GEN:-$ROOT/deploy/generated}
vol="${PROJECT}_$id-hsm"
docker volume inspect "$vol" >/dev/null 2>&1 || { echo "cluster-hsm-token: volume $vol missing (run docker-compose up --no-start first)" >&2; exit 1; }
util=(timeout 60 docker run --rm --network none --user 10001:10001 --read-only --cap-drop ALL
  --security-opt no-new-privileges:true -e SOFTHSM2_CONF=/etc/keyd/softhsm2.conf
  -v "$vol:/var/lib/softhsm/tokens" -v "$GEN/$id:/etc/keyd:ro"
  --entrypoint /usr/bin/softhsm2-util "${KEYD_IMAGE:-keyd:local}" --module /usr/lib/softhsm/libsofthsm2.so)
# Fast path (root on the docker host): the volume's directory already holds
# a token (SoftHSM2 keeps one directory per token, with token.object).
mp=$(docker volume inspect -f '{{.Mountpoint}}' "$vol" 2>/dev/null || true)
if [ -n "$mp" ] && [ -r "$mp" ] && compgen -G "$mp/*/token.object" >/dev/null; then
  echo "[cluster-hsm-token] $id: a token exists in $vol" >&2
  exit 0
fi
if "${util[@]}" --show-slots 2>/dev/null | grep -Eq "Label:[[:space:]]+keyd-$id[[:space:]]*$"; then
  echo "[cluster-hsm-token] $id: token keyd-$id exists in $vol" >&2
  exit 0
fi
pin=$(cat "$GEN/$id/hsm.pin")
so=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
"${util[@]}" --init-token --free --label "keyd-$id" --pin "$pin" --so-pin "$so" >/dev/null
echo "[cluster-hsm-token] $id: initialised token keyd-$id in $vol" >&2
