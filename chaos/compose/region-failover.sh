#!/usr/bin/env bash
# Region-failover drill against the local compose cluster
# (docker-compose.cluster.yml: n1, n2/r1; n3, n4/r2; n5/r3). Bounded: every wait is
# a loop capped in iterations and time, every command runs under `timeout`,
# and the whole drill re-executes itself under `timeout 300` (SIGTERM, then
# SIGKILL 15 s later), so it never runs longer than about five minutes.
#
#   setup  scripts/cluster-up.sh (idempotent: reuses a running cluster,
#          unseals sealed nodes), one key, N=50 payloads encrypted and their
#          ciphertexts saved.
#   A      SIGKILL the leader's container. Measure kill -> first committed
#          write on a survivor; check CLI writes and crypto on survivors;
#          docker start it, check it unseals itself by warm rejoin (its own
#          SoftHSM2 token and peers' node shares, no custodian), check it
#          catches up.
#   B1     Cut region r3 off with `docker network disconnect` (n5 loses its
#          only interface, published port included). The majority must
#          write; n5, reached through `docker exec` on its own loopback,
#          must refuse writes and still serve crypto. Reconnect with the
#          same fixed IP, check convergence.
#   B2     Cut r3 from its peers only, by iptables DROP rules in n5's
#          network namespace (nsenter from the host; the FROM-scratch image
#          has no iptables), so the host still reaches n5 on its published
#          port: same checks through the host CLI. Skipped without root,
#          nsenter or iptables on the host.
#   final  every saved ciphertext (setup and those acknowledged during the
#          faults) decrypts to its plaintext on every node.
#
# Prints PASS/FAIL per check, the timings and an overall verdict; exits 0
# only when every check passed. If the drill started the cluster it stops
# it at the end (cluster-down.sh) unless KEEP=1; a cluster it found running
# is left running (and never left partitioned or with a node stopped).
#
# Environment: N (payloads, default 50), KEEP=1, DRILL_TIMEOUT (seconds,
# default 300).
set -uo pipefail
export LC_ALL=C

if [ -z "${KEYD_DRILL_CHILD:-}" ]; then
  export KEYD_DRILL_CHILD=1
  exec timeout -k 15 "${DRILL_TIMEOUT:-300}" "$0" "$@"
fi

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
KEYD="$ROOT/bin/keyd"
COMPOSE=(docker-compose -f docker-compose.cluster.yml -p keydc)
NET=keydc_keyd
SECRETS="$ROOT/deploy/generated/secrets.env"
N=${N:-50}

NODES=(n1 n2 n3 n4 n5)
declare -A IP=([n1]=172.28.0.11 [n2]=172.28.0.12 [n3]=172.28.0.13 [n4]=172.28.0.14 [n5]=172.28.0.15)
declare -A PORT=([n1]=18210 [n2]=18220 [n3]=18230 [n4]=18240 [n5]=18250)
declare -A CID=()

RUN=$(date +%s)
TMP=$(mktemp -d /tmp/keydc-drill.XXXXXX)
chmod 0700 "$TMP"
T_START=${EPOCHREALTIME/./}

# --- bookkeeping -------------------------------------------------------------
declare -a RESULTS=() TIMINGS=() NOTES=()
FAILS=0
pass() { RESULTS+=("PASS  $*"); echo "  PASS  $*"; }
fail() { RESULTS+=("FAIL  $*"); echo "  FAIL  $*"; FAILS=$((FAILS + 1)); }
check() { # check "description" cmd...: PASS when cmd exits 0
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
timing() { TIMINGS+=("$(printf '%-66s %7s ms' "$1" "$2")"); echo "  time  $1: $2 ms"; }
note() { NOTES+=("$*"); echo "  note  $*"; }
phase() { echo; echo "=== $* (t+$(since "$T_START") ms)"; }
now() { echo "${EPOCHREALTIME/./}"; }                  # microseconds
since() { echo $((($(now) - $1) / 1000)); }            # ms since a now() value

# --- cleanup: never leave the cluster partitioned or a node stopped ----------
DISCONNECTED=""
IPT_PID=""
KILLED=""
BROUGHT_UP=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$IPT_PID" ]; then
    ipt_rules -D "$IPT_PID" 2>/dev/null || true
    IPT_PID=""
  fi
  if [ -n "$DISCONNECTED" ]; then
    timeout 20 docker network connect --ip "${IP[$DISCONNECTED]}" "$NET" "${CID[$DISCONNECTED]}" 2>/dev/null || true
  fi
  if [ -n "$KILLED" ]; then
    timeout 20 docker start "${CID[$KILLED]}" >/dev/null 2>&1 || true
    echo "cleanup: $KILLED restarted; it rejoins warm, or scripts/cluster-up.sh unseals it" >&2
  fi
  rm -rf "$TMP"
  if [ "$BROUGHT_UP" -eq 1 ] && [ "${KEEP:-0}" != 1 ]; then
    echo
    echo "=== cluster-down (the drill started the cluster; KEEP=1 keeps it)"
    timeout 60 "$ROOT/scripts/cluster-down.sh" 2>&1 | tail -n 3
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "drill: interrupted or out of time" >&2; exit 124' INT TERM

# --- helpers -----------------------------------------------------------------
# Inner timeouts run with --foreground so they stay in the drill's process
# group: the outer `timeout 300` then stops them too.
kd() { timeout --foreground "${KD_TIMEOUT:-20}" "$KEYD" "$@"; }
# q CMD...: run CMD quietly (stderr kept for the failure report).
q() { "$@" >/dev/null 2>>"$TMP/cli.err"; }

# status PORT: the node's own /v1/sys/status as JSON (empty if unreachable).
status() {
  curl -s --cacert "$KEYD_CACERT" --max-time 2 "https://127.0.0.1:$1/v1/sys/status" 2>/dev/null || true
}
# field FILTER < json: the value, or nothing for null/missing. (Not
# `// empty`: jq's alternative operator also drops false.)
field() { jq -r "$1 | select(. != null)" 2>/dev/null; }

# leader_of NODES...: the leader id the first answering node reports.
leader_of() {
  local n l
  for n in "$@"; do
    l=$(status "${PORT[$n]}" | field .leader_id)
    [ -n "$l" ] && { echo "$l"; return 0; }
  done
  return 1
}

# post_create PORT NAME: POST /v1/keys straight to one node, no client
# retries or forwarding to other nodes; prints the HTTP code and the
# error code ("200 -" on success).
post_create() {
  local body code
  body=$(curl -s --cacert "$KEYD_CACERT" --max-time 2 -H @"$TMP/auth.h" \
    -H 'Content-Type: application/json' -d "{\"name\":\"$2\"}" \
    -o - -w '\n%{http_code}' "https://127.0.0.1:$1/v1/keys" 2>/dev/null)
  code=${body##*$'\n'}
  printf '%s %s\n' "${code:-000}" "$(jq -r '.code // "-"' <<<"${body%$'\n'*}" 2>/dev/null || echo -)"
}

# probe_write LABEL T0 NODES...: POST a new key round-robin to NODES every
# 100 ms until one is committed (HTTP 200), at most 300 tries / 30 s.
# Prints "ms-since-T0 node" of the first success, or nothing.
probe_write() {
  local label=$1 t0=$2; shift 2
  local i=0 n code
  local deadline=$((SECONDS + 30))
  while [ $i -lt 300 ] && [ $SECONDS -lt $deadline ]; do
    n=${1}
    shift; set -- "$@" "$n" # rotate
    code=$(post_create "${PORT[$n]}" "probe-$label-$RUN-$i" | cut -d' ' -f1)
    if [ "$code" = 200 ] || [ "$code" = 201 ]; then
      echo "$(since "$t0") $n"
      return 0
    fi
    i=$((i + 1))
    sleep 0.1
  done
  return 1
}

# wait_until SECONDS CMD...: poll CMD every 200 ms, bounded; prints the
# wait in ms; fails when CMD never succeeded.
wait_until() {
  local limit=$1; shift
  local t0 i=0 deadline=$((SECONDS + limit))
  t0=$(now)
  while [ $i -lt $((limit * 5)) ] && [ $SECONDS -lt $deadline ]; do
    if "$@"; then since "$t0"; return 0; fi
    i=$((i + 1))
    sleep 0.2
  done
  return 1
}

is_unsealed() { [ "$(status "${PORT[$1]}" | field .sealed)" = false ]; }
answers() { [ -n "$(status "${PORT[$1]}" | field .node_id)" ]; }
has_leader_not() { # has_leader_not NODE OLD: NODE reports a leader other than OLD
  local l
  l=$(status "${PORT[$1]}" | field .leader_id)
  [ -n "$l" ] && [ "$l" != "$2" ]
}
caught_up() { # caught_up NODE INDEX: NODE unsealed, with a leader, applied >= INDEX
  local js
  js=$(status "${PORT[$1]}")
  [ "$(field .sealed <<<"$js")" = false ] && [ -n "$(field .leader_id <<<"$js")" ] &&
    [ "$(field .applied_index <<<"$js")" -ge "$2" ] 2>/dev/null
}
max_applied() {
  local n a m=0
  for n in "$@"; do
    a=$(status "${PORT[$n]}" | field .applied_index)
    [ -n "$a" ] && [ "$a" -gt "$m" ] && m=$a
  done
  echo "$m"
}

# unseal NODE: submit custodian shares 1-3 to NODE only.
unseal() {
  local i var
  for i in 1 2 3; do
    var="KEYD_SHARE_$i"
    printf '%s\n' "${!var}" | kd operator unseal -addr "127.0.0.1:${PORT[$1]}" >/dev/null 2>>"$TMP/cli.err" || return 1
  done
}

# encrypt_save NODE-ADDRS TAG: encrypt one fresh payload, append it to the
# saved set (ciphertexts that must decrypt everywhere at the end).
SAVED=0
encrypt_save() {
  local pt="payload-$2-$RUN-$SAVED-$RANDOM"
  if printf '%s' "$pt" | KEYD_ADDR=$1 kd key encrypt "$KEY" >"$TMP/ct.$SAVED" 2>>"$TMP/cli.err" &&
    [ -s "$TMP/ct.$SAVED" ]; then
    printf '%s' "$pt" >"$TMP/pt.$SAVED"
    SAVED=$((SAVED + 1))
    return 0
  fi
  rm -f "$TMP/ct.$SAVED"
  return 1
}

# decrypt_saved ADDR FIRST LAST: every saved ciphertext in [FIRST, LAST]
# decrypts to its plaintext at ADDR only; prints the failure count.
decrypt_saved() {
  local addr=$1 i bad=0 out
  for ((i = $2; i <= $3; i++)); do
    out=$(kd key decrypt "$KEY" -addr "$addr" <"$TMP/ct.$i" 2>>"$TMP/cli.err") || { bad=$((bad + 1)); continue; }
    [ "$out" = "$(cat "$TMP/pt.$i")" ] || bad=$((bad + 1))
  done
  echo "$bad"
}

# crypto_roundtrip ADDR: encrypt then decrypt a fresh payload at ADDR only.
crypto_roundtrip() {
  local pt="rt-$RANDOM$RANDOM" ct out
  ct=$(printf '%s' "$pt" | kd key encrypt "$KEY" -addr "$1" 2>>"$TMP/cli.err") || return 1
  out=$(printf '%s' "$ct" | kd key decrypt "$KEY" -addr "$1" 2>>"$TMP/cli.err") || return 1
  [ "$out" = "$pt" ]
}

# In-container CLI for a node whose published port is gone: the image's own
# keyd binary over the container's loopback (its cert has a 127.0.0.1 SAN).
# The token travels by name (-e KEYD_TOKEN), never on a command line.
kx() {
  local n=$1; shift
  timeout --foreground "${KD_TIMEOUT:-25}" docker exec -i -e KEYD_TOKEN -e KEYD_CACERT=/etc/keyd/ca.pem \
    -e KEYD_ADDR=127.0.0.1:8200 "${CID[$n]}" keyd "$@"
}
kx_status() { kx "$1" status -json -addr 127.0.0.1:8200 2>/dev/null | jq -c '.[] | select(.addr == "127.0.0.1:8200") | .status'; }

# ipt_rules -I|-D PID: DROP traffic between n2's namespace and its peers
# (n1, n3) both ways; the gateway (host CLI via the published port) stays.
ipt_rules() {
  local op=$1 pid=$2 peer
  for peer in "${IP[n1]}" "${IP[n2]}" "${IP[n3]}" "${IP[n4]}"; do
    timeout --foreground 10 nsenter -t "$pid" -n iptables "$op" INPUT -s "$peer" -j DROP || return 1
    timeout --foreground 10 nsenter -t "$pid" -n iptables "$op" OUTPUT -d "$peer" -j DROP || return 1
  done
}

addrs_of() { local n out=""; for n in "$@"; do out+="${out:+,}127.0.0.1:${PORT[$n]}"; done; echo "$out"; }
others() { local n; for n in "${NODES[@]}"; do [ "$n" = "$1" ] || echo "$n"; done; }

# --- preflight ---------------------------------------------------------------
for tool in docker docker-compose jq curl timeout; do
  command -v "$tool" >/dev/null || { echo "drill: $tool not found" >&2; exit 2; }
done

phase "setup: cluster-up (reuse if running)"
running=0
for n in "${NODES[@]}"; do
  c=$("${COMPOSE[@]}" ps -q "$n" 2>/dev/null)
  [ -n "$c" ] && [ "$(docker inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" = true ] && running=$((running + 1))
done
[ "$running" -eq 0 ] && BROUGHT_UP=1
if [ ! -x "$KEYD" ] || ! docker image inspect keyd:local >/dev/null 2>&1; then
  timeout --foreground 120 "$ROOT/scripts/cluster-image.sh" >/dev/null || { echo "drill: cluster-image.sh failed" >&2; exit 2; }
fi
t0=$(now)
if ! UP_TIMEOUT=60 timeout --foreground 120 "$ROOT/scripts/cluster-up.sh" >"$TMP/up.log" 2>&1; then
  cat "$TMP/up.log" >&2
  echo "drill: cluster-up.sh failed" >&2
  exit 2
fi
timing "cluster-up.sh ($([ $BROUGHT_UP = 1 ] && echo fresh || echo reused))" "$(since "$t0")"
set -a
# shellcheck disable=SC1090
. "$SECRETS"
set +a
for n in "${NODES[@]}"; do CID[$n]=$("${COMPOSE[@]}" ps -q "$n"); done
ALL=$(addrs_of "${NODES[@]}")
export KEYD_ADDR=$ALL
printf 'Authorization: Bearer %s\n' "$KEYD_TOKEN" >"$TMP/auth.h" # 0600 via the 0700 dir and umask
chmod 0600 "$TMP/auth.h"

KEY="drill-$RUN"
check "create key $KEY" q kd key create "$KEY" -addr "$ALL"
t0=$(now)
ok=0
for ((i = 0; i < N; i++)); do encrypt_save "$ALL" setup && ok=$((ok + 1)); done
timing "encrypt $N payloads via the CLI (one process each)" "$(since "$t0")"
check "encrypt $N payloads ($ok ok)" test "$ok" -eq "$N"

# --- A: kill the leader --------------------------------------------------------
phase "A: SIGKILL the leader"
L=$(leader_of "${NODES[@]}")
if [ -z "$L" ]; then
  fail "A: find the leader"
else
  mapfile -t S < <(others "$L")
  echo "  leader $L (container ${CID[$L]:0:12}); survivors ${S[*]}"
  idx_before=$(max_applied "${NODES[@]}")
  t_kill=$(now)
  KILLED=$L
  check "A: docker kill -s KILL $L" q timeout --foreground 20 docker kill -s KILL "${CID[$L]}"
  new_leader() { has_leader_not "${S[0]}" "$L" || has_leader_not "${S[1]}" "$L"; }
  if wait_until 30 new_leader >/dev/null; then
    timing "A: kill -> a survivor reports a new leader" "$(since "$t_kill")"
  else
    fail "A: survivors elected a new leader within 30 s"
  fi
  if r=$(probe_write a "$t_kill" "${S[@]}"); then
    timing "A: kill -> first committed write (raw POST, ${r#* })" "${r%% *}"
    pass "A: majority commits writes after the leader died"
  else
    fail "A: no write committed on survivors within 30 s"
  fi
  NL=$(leader_of "${S[@]}")
  check "A: new leader ($NL) is a survivor" test -n "$NL" -a "$NL" != "$L"
  SURV=$(addrs_of "${S[@]}")
  # The CLI after a write waits (settle, <= 5 s) for every node the status
  # lists, and the dead node's container IP does not answer ARP: time it.
  ok=0
  for i in 1 2 3; do
    t0=$(now)
    KEYD_ADDR=$SURV kd key create "a-$RUN-$i" >/dev/null 2>>"$TMP/cli.err" && ok=$((ok + 1))
    timing "A: CLI key create #$i via survivors while $L is down" "$(since "$t0")"
  done
  timing "A: kill -> 3 CLI key creates done" "$(since "$t_kill")"
  check "A: CLI writes continue on survivors (3/3: $ok)" test "$ok" -eq 3
  first_a=$SAVED
  ok=0
  for i in 1 2 3 4 5; do encrypt_save "$SURV" A && ok=$((ok + 1)); done
  check "A: encrypt on survivors during the outage (5/5: $ok)" test "$ok" -eq 5
  for n in "${S[@]}"; do
    check "A: crypto round trip on $n" crypto_roundtrip "127.0.0.1:${PORT[$n]}"
    check "A: setup ciphertexts 0-9 decrypt on $n" test "$(decrypt_saved "127.0.0.1:${PORT[$n]}" 0 9)" -eq 0
  done

  t_start=$(now)
  check "A: docker start $L" q timeout --foreground 30 docker start "${CID[$L]}"
  KILLED=""
  if w=$(wait_until 30 answers "$L"); then
    timing "A: docker start -> $L answers" "$(since "$t_start")"
    # Warm rejoin: the restarted node unwraps its own node share with its
    # SoftHSM2 token (its own volume) and gathers the rest from unsealed
    # peers; no custodian is involved.
    t0=$(now)
    if w=$(wait_until 20 is_unsealed "$L"); then
      pass "A: $L unsealed itself by warm rejoin (own SoftHSM2 token, no custodian)"
      timing "A: $L answers -> unsealed by warm rejoin" "$w"
    else
      fail "A: $L unsealed by warm rejoin within 20 s (seal_reason: $(status "${PORT[$L]}" | field .seal_reason))"
      t0=$(now)
      check "A: fallback: unseal $L with 3 custodian shares" unseal "$L"
      if w=$(wait_until 20 is_unsealed "$L"); then
        timing "A: unseal (3 shares) -> $L unsealed" "$(since "$t0")"
      else
        fail "A: $L unsealed within 20 s"
      fi
    fi
    target=$(max_applied "${S[@]}")
    if w=$(wait_until 30 caught_up "$L" "$target"); then
      pass "A: $L caught up to index $target (was $idx_before before the kill)"
      timing "A: $L catch-up after unseal" "$w"
      timing "A: docker start -> $L unsealed and caught up" "$(since "$t_start")"
    else
      fail "A: $L caught up to index $target within 30 s (has $(status "${PORT[$L]}" | field .applied_index))"
    fi
    check "A: $L decrypts what survivors encrypted during the outage" \
      test "$(decrypt_saved "127.0.0.1:${PORT[$L]}" "$first_a" $((SAVED - 1)))" -eq 0
    check "A: $L has the keys created during the outage" \
      q kd key read "a-$RUN-3" -addr "127.0.0.1:${PORT[$L]}"
  else
    fail "A: $L answers within 30 s of docker start"
  fi
fi

# --- B1: cut region r3 off with docker network disconnect ---------------------
phase "B1: docker network disconnect n5 (region r3)"
MAJ=(n1 n5 n3 n4)
MAJA=$(addrs_of "${MAJ[@]}")
LB=$(leader_of "${NODES[@]}")
echo "  leader before the cut: ${LB:-none}"
t_cut=$(now)
if timeout --foreground 20 docker network disconnect "$NET" "${CID[n5]}"; then
  DISCONNECTED=n5
  pass "B1: disconnect n5 from $NET"
else
  fail "B1: disconnect n5 from $NET"
fi
if r=$(probe_write b1 "$t_cut" "${MAJ[@]}"); then
  timing "B1: cut -> first committed write on n1-n4 (leader was ${LB:-?})" "${r%% *}"
  pass "B1: majority (n1-n4) commits writes"
else
  fail "B1: no write committed on n1-n4 within 30 s"
fi
# How long until n5 notices? If established TCP connections kept carrying
# Raft traffic, n5 would keep its leader; with its only interface gone
# nothing can flow, so it should lose the leader after the heartbeat
# timeout. Checked right after the majority probe, before the slower CLI steps.
lost_leader() {
  local js
  js=$(kx_status n5)
  [ -n "$js" ] && [ -z "$(field .leader_id <<<"$js")" ]
}
if w=$(wait_until 15 lost_leader); then
  timing "B1: cut -> n5 reports no leader (polled via docker exec)" "$(since "$t_cut")"
  note "B1: n5 after the cut: $(kx_status n5 | jq -c '{raft_state, leader_id, sealed, applied_index}')"
else
  fail "B1: n5 still reports leader $(kx_status n5 | field .leader_id) 15 s after disconnect"
fi
ok=0
t0=$(now)
for i in 1 2 3; do KEYD_ADDR=$MAJA kd key create "b1-$RUN-$i" >/dev/null 2>>"$TMP/cli.err" && ok=$((ok + 1)); done
timing "B1: 3 CLI key creates on the majority (KEYD_ADDR=n1-n4)" "$(since "$t0")"
check "B1: CLI writes on the majority (3/3: $ok)" test "$ok" -eq 3
first_b1=$SAVED
ok=0
for i in 1 2 3; do encrypt_save "$MAJA" B1 && ok=$((ok + 1)); done
check "B1: encrypt on the majority during the cut (3/3: $ok)" test "$ok" -eq 3
if [ -z "$(status "${PORT[n5]}")" ]; then
  note "B1: n5's published port 127.0.0.1:${PORT[n5]} is gone while disconnected (docker removes the mapping with the endpoint); n5 checked via docker exec on its loopback"
else
  note "B1: n5's published port still answers while disconnected"
fi
t0=$(now)
err=$(kx n5 key create "iso-b1-$RUN" 2>&1 >/dev/null)
rc=$?
if [ $rc -eq 0 ]; then
  fail "B1: isolated n5 refused a write (it accepted it)"
elif [ $rc -eq 124 ] || [[ $err == keyd:* ]]; then
  pass "B1: isolated n5 refused a write in $(since "$t0") ms: ${err:-<timed out>}"
else
  fail "B1: isolated n5 refused a write (docker exec failed, rc $rc: $err)"
fi
pt="iso-$RANDOM"
ct=$(printf '%s' "$pt" | kx n5 key encrypt "$KEY" 2>>"$TMP/cli.err")
check "B1: isolated n5 still encrypts" test -n "$ct"
check "B1: isolated n5 decrypts its own ciphertext" test "$(printf '%s' "$ct" | kx n5 key decrypt "$KEY" 2>>"$TMP/cli.err")" = "$pt"
bad=0
for i in 0 1 2 3 4; do
  out=$(kx n5 key decrypt "$KEY" <"$TMP/ct.$i" 2>>"$TMP/cli.err") && [ "$out" = "$(cat "$TMP/pt.$i")" ] || bad=$((bad + 1))
done
check "B1: isolated n5 decrypts saved ciphertexts 0-4 ($bad failed)" test "$bad" -eq 0

t_rec=$(now)
if timeout --foreground 20 docker network connect --ip "${IP[n5]}" "$NET" "${CID[n5]}"; then
  DISCONNECTED=""
  pass "B1: reconnect n5 with its fixed IP ${IP[n5]}"
else
  fail "B1: reconnect n5"
fi
target=$(max_applied "${MAJ[@]}")
if w=$(wait_until 30 caught_up n5 "$target"); then
  timing "B1: reconnect -> n5 follows a leader at index >= $target" "$(since "$t_rec")"
  pass "B1: n5 converged after reconnect (published port back)"
else
  fail "B1: n5 converged within 30 s of reconnect ($(status "${PORT[n5]}" | jq -c '{raft_state, leader_id, applied_index}' 2>/dev/null))"
fi
check "B1: n5 decrypts what the majority encrypted during the cut" \
  test "$(decrypt_saved "127.0.0.1:${PORT[n5]}" "$first_b1" $((SAVED - 1)))" -eq 0
check "B1: n5 has the keys created during the cut" \
  q kd key read "b1-$RUN-3" -addr "127.0.0.1:${PORT[n5]}"
if kd key read "iso-b1-$RUN" -addr "$ALL" >/dev/null 2>&1; then
  fail "B1: the write n5 refused while cut off does not exist after healing"
else
  pass "B1: the write n5 refused while cut off does not exist after healing"
fi

# --- B2: cut r2 from its peers only (iptables in n5's namespace) -------------
phase "B2: iptables DROP between n5 and its peers (host path kept)"
if [ "$(id -u)" -ne 0 ] || ! command -v nsenter >/dev/null || ! command -v iptables >/dev/null; then
  note "B2: skipped (needs root, nsenter and iptables on the host; the image has no iptables)"
else
  pid=$(docker inspect -f '{{.State.Pid}}' "${CID[n5]}")
  LB=$(leader_of "${NODES[@]}")
  t_cut=$(now)
  if ipt_rules -I "$pid"; then
    IPT_PID=$pid
    pass "B2: DROP rules in n5's netns (pid $pid) against ${IP[n1]}-${IP[n4]}"
  else
    ipt_rules -D "$pid" 2>/dev/null
    fail "B2: install DROP rules in n5's netns"
  fi
  if [ -n "$IPT_PID" ]; then
    if r=$(probe_write b2 "$t_cut" "${MAJ[@]}"); then
      timing "B2: cut -> first committed write on n1-n4 (leader was ${LB:-?})" "${r%% *}"
      pass "B2: majority (n1-n4) commits writes"
    else
      fail "B2: no write committed on n1-n4 within 30 s"
    fi
    no_leader_n2() { answers n5 && [ -z "$(status "${PORT[n5]}" | field .leader_id)" ]; }
    if w=$(wait_until 15 no_leader_n2); then
      timing "B2: cut -> n5 reports no leader (host, published port)" "$(since "$t_cut")"
      note "B2: n5 during the cut: $(status "${PORT[n5]}" | jq -c '{raft_state, leader_id, sealed, applied_index}')"
    else
      fail "B2: n5 lost its leader within 15 s ($(status "${PORT[n5]}" | jq -c '{raft_state, leader_id}' 2>/dev/null))"
    fi
    first_b2=$SAVED
    ok=0
    for i in 1 2 3; do encrypt_save "$MAJA" B2 && ok=$((ok + 1)); done
    check "B2: encrypt on the majority during the cut (3/3: $ok)" test "$ok" -eq 3
    # Straight at n5 (curl), because the Go client would learn n1-n4 from
    # n5's status and carry the write to them: that is the client working
    # as designed, not n5 accepting a write.
    t0=$(now)
    r=$(post_create "${PORT[n5]}" "iso-b2-$RUN")
    if [ "${r%% *}" = 200 ] || [ "${r%% *}" = 201 ]; then
      fail "B2: n5 refused a direct write (HTTP $r)"
    else
      pass "B2: n5 refused a direct write in $(since "$t0") ms (HTTP ${r% *}, code ${r#* })"
    fi
    check "B2: n5 crypto round trip from the host" crypto_roundtrip "127.0.0.1:${PORT[n5]}"
    check "B2: n5 decrypts saved ciphertexts 0-9 from the host" test "$(decrypt_saved "127.0.0.1:${PORT[n5]}" 0 9)" -eq 0
    t0=$(now)
    if KEYD_ADDR=$(addrs_of n5) kd key create "cli-b2-$RUN" >/dev/null 2>"$TMP/b2cli.err"; then
      note "B2: host CLI write with KEYD_ADDR=n5 only succeeded in $(since "$t0") ms: the client learned n1-n4 (container IPs, routable from this Linux host) from n5's status and used them"
    else
      note "B2: host CLI write with KEYD_ADDR=n5 only failed in $(since "$t0") ms: $(tail -n 1 "$TMP/b2cli.err")"
    fi
    t_rec=$(now)
    if ipt_rules -D "$IPT_PID"; then
      IPT_PID=""
      pass "B2: DROP rules removed"
    else
      fail "B2: remove DROP rules"
    fi
    target=$(max_applied "${MAJ[@]}")
    if w=$(wait_until 30 caught_up n5 "$target"); then
      timing "B2: heal -> n5 follows a leader at index >= $target" "$(since "$t_rec")"
      pass "B2: n5 converged after the rules were removed"
    else
      fail "B2: n5 converged within 30 s of healing"
    fi
    check "B2: n5 decrypts what the majority encrypted during the cut" \
      test "$(decrypt_saved "127.0.0.1:${PORT[n5]}" "$first_b2" $((SAVED - 1)))" -eq 0
    if kd key read "iso-b2-$RUN" -addr "$ALL" >/dev/null 2>&1; then
      fail "B2: the write n5 refused does not exist after healing"
    else
      pass "B2: the write n5 refused does not exist after healing"
    fi
  fi
fi

# --- final: every saved ciphertext on every node -------------------------------
phase "final: $SAVED saved ciphertexts on every node"
target=$(max_applied "${NODES[@]}")
for n in "${NODES[@]}"; do
  wait_until 20 caught_up "$n" "$target" >/dev/null || fail "final: $n unsealed and at index >= $target"
done
idx=$(for n in "${NODES[@]}"; do printf '%s=%s ' "$n" "$(status "${PORT[$n]}" | field .applied_index)"; done)
note "final: applied index $idx"
t0=$(now)
for n in "${NODES[@]}"; do
  bad=$(decrypt_saved "127.0.0.1:${PORT[$n]}" 0 $((SAVED - 1)))
  check "final: all $SAVED ciphertexts decrypt on $n ($bad failed)" test "$bad" -eq 0
done
timing "final: $((SAVED * 3)) CLI decrypts" "$(since "$t0")"

# --- summary -------------------------------------------------------------------
echo
echo "=================== region-failover drill summary ==================="
printf '%s\n' "${RESULTS[@]}"
echo "--- timings"
printf '%s\n' "${TIMINGS[@]}"
if [ ${#NOTES[@]} -gt 0 ]; then
  echo "--- observations"
  printf '%s\n' "${NOTES[@]}"
fi
echo "--- total $(since "$T_START") ms, ${#RESULTS[@]} checks, $FAILS failed"
if [ "$FAILS" -ne 0 ]; then
  echo "cli stderr (last 10 lines):"
  tail -n 10 "$TMP/cli.err" 2>/dev/null | sed 's/kd_[A-Za-z0-9_-]*/kd_<redacted>/g'
  for n in "${NODES[@]}"; do
    echo "--- $n log (last 8 lines)"
    timeout --foreground 10 docker logs --tail 8 "${CID[$n]}" 2>&1
  done
  echo "RESULT: FAIL"
  exit 1
fi
echo "RESULT: PASS"
exit 0
