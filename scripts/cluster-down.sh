#!/usr/bin/env bash
# Stop the local keyd compose cluster and delete everything it made:
# containers, the network, the named data volumes (down -v) and the
# dev/drill secrets (custodian shares, admin token) in deploy/generated/.
# Certificates and configs are removed too, so the next cluster-up starts
# from a fresh CA. The keyd:local image is kept (rebuild: cluster-image.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
docker-compose -f docker-compose.cluster.yml -p keydc down -v --remove-orphans --timeout 10
rm -f deploy/generated/secrets.env deploy/generated/secrets.env.tmp
rm -rf deploy/generated
echo "cluster-down: containers, network, volumes and deploy/generated/ removed"
