#!/usr/bin/env bash
# Stop the local keyd compose cluster and delete everything it made:
# containers (the churn spares n6/n7 included), the network, the named data
# and SoftHSM2 token volumes (down -v) and the dev/drill secrets (custodian
# shares, admin token, HSM PINs) in deploy/generated/. Certificates and
# configs are removed too, so the next cluster-up starts from a fresh CA.
# The keyd:local image is kept (rebuild: cluster-image.sh).
#
# Environment: KEYD_PROJECT (keydc) and KEYD_GEN (deploy/generated) select
# another instance (make chaos uses keydchaos).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export KEYD_PROJECT=${KEYD_PROJECT:-keydc}
export KEYD_GEN=${KEYD_GEN:-$ROOT/deploy/generated}
# KEYD_GEN is deleted below: only a directory named generated* is.
case "$(basename "$KEYD_GEN")" in
  generated*) ;;
  *) echo "cluster-down: refusing to delete KEYD_GEN=$KEYD_GEN (its name must start with generated)" >&2; exit 2 ;;
esac
docker-compose -f docker-compose.cluster.yml -p "$KEYD_PROJECT" --profile churn down -v --remove-orphans --timeout 10
rm -f "$KEYD_GEN/secrets.env" "$KEYD_GEN/secrets.env.tmp"
rm -rf "$KEYD_GEN"
echo "cluster-down: $KEYD_PROJECT containers, network, volumes and $KEYD_GEN removed"
