#!/usr/bin/env bash
# make chaos: every drill of chaos/drill against a compose cluster of its
# own (project keydchaos, bridge 172.28.9.0/24, host ports 195x0, image
# keyd:chaos), so it never touches the make cluster-up cluster (keydc).
#
#   1. builds keyd:chaos from this checkout (scripts/cluster-image.sh);
#   2. go test -run TestComposeDrills ./chaos/compose with KEYD_COMPOSE=1:
#      cluster-up (5 nodes, 3 regions, a SoftHSM2 token each), then each
#      drill under a bounded workload; tables on stdout, each drill's
#      table and JSON report in bin/chaos/ (compose-<drill>.txt/.json,
#      compose-summary.txt/.json);
#   3. always (trap, also on Ctrl-C or timeout): scripts/cluster-down.sh
#      for keydchaos (containers, network, data and token volumes,
#      generated secrets) and the keyd:chaos image.
#
# Bounded: the test stops starting drills after 40 minutes
# (KEYD_CHAOS_TIMEOUT), go test has 44 and runs under timeout 45m
# (CHAOS_TIMEOUT); the image build under 10m; the cleanup under 2m. Needs root
# on the docker host (iptables in the containers' namespaces, the token
# volumes). Environment: see TestComposeDrills (KEYD_DRILLS, KEYD_CHAOS_*);
# KEEP_IMAGE=1 keeps keyd:chaos.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export KEYD_PROJECT=keydchaos KEYD_NET_PREFIX=172.28.9 KEYD_PORT_PREFIX=195
export KEYD_IMAGE=keyd:chaos IMAGE=keyd:chaos
export KEYD_GEN="$ROOT/deploy/generated-keydchaos"
GO=${GO:-go}

# The cleanup runs in this shell, outside the bounded steps below, so a
# timeout or Ctrl-C that stops them never stops the cleanup itself.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  echo "==> chaos cleanup: cluster-down ($KEYD_PROJECT)"
  # Undo HSM faults a killed test left (mode 000 token directories), so
  # nothing is left unreadable; down -v removes the volumes anyway.
  for v in $(docker volume ls -q --filter "name=^${KEYD_PROJECT}_" 2>/dev/null); do
    mp=$(docker volume inspect -f '{{.Mountpoint}}' "$v" 2>/dev/null) && [ -d "$mp" ] && chmod u+rwx "$mp" 2>/dev/null
  done
  timeout 120 "$ROOT/scripts/cluster-down.sh" 2>&1 | tail -n 1
  if [ "${KEEP_IMAGE:-0}" != 1 ]; then
    docker image rm "$KEYD_IMAGE" >/dev/null 2>&1 && echo "==> removed image $KEYD_IMAGE"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "chaos: interrupted" >&2; exit 130' INT TERM

echo "==> building $KEYD_IMAGE"
timeout 600 "$ROOT/scripts/cluster-image.sh" | tail -n 1 || exit 2
echo "==> drills against compose (project $KEYD_PROJECT)"
# --foreground: Ctrl-C reaches go test too; -k: a test that ignores the
# TERM at the deadline is killed 30 s later.
KEYD_COMPOSE=1 timeout --foreground -k 30 "${CHAOS_TIMEOUT:-45m}" \
  "$GO" test -count=1 -timeout 44m -v -run '^TestComposeDrills$' ./chaos/compose/ 2>&1 |
  grep --line-buffered -v '^=== \(RUN\|PAUSE\|CONT\)'
exit "${PIPESTATUS[0]}"
