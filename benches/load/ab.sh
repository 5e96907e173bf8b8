#!/usr/bin/env bash
# A/B two smq-edge binaries (and nginx) in one interleaved run of the shared harness, to see what
# a change does before a full compare.sh:
#
#   benches/load/ab.sh OLD_BINARY NEW_BINARY            # env: SCENARIOS, DURATION, ROUNDS
#
# Starts the harness's backends and nginx, both binaries through smq-edge.sh on two ports (their
# process groups in the harness's pid directory, so cpu_us/req is measured), runs run.sh on
# nginx, a and b, and stops everything.
set -euo pipefail
old=${1:?old binary} new=${2:?new binary}
bench=$(cd "$(dirname "$0")/../../../shared/bench" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$bench/lib.sh"
mkdir -p "$BENCH_RUN/pids"
"$bench/servers.sh" up backend nginx >/dev/null
cleanup() {
  for t in a b; do
    [[ -s $BENCH_RUN/pids/$t.pid ]] && kill -- -"$(cat "$BENCH_RUN/pids/$t.pid")" 2>/dev/null || true
    rm -f "$BENCH_RUN/pids/$t.pid"
  done
  "$bench/servers.sh" down >/dev/null
}
trap cleanup EXIT
start() { # NAME BINARY PORT
  PROXY_PORT=$3 SMQ_EDGE_BIN=$2 BENCH_CERT=$BENCH_RUN/certs/ecdsa.crt BENCH_KEY=$BENCH_RUN/certs/ecdsa.key \
    BACKEND_H1=$BENCH_HOST:$BACKEND_H1_PORT BACKEND_GRPC=$BENCH_HOST:$GRPC_PORT \
    setsid "$here/smq-edge.sh" >"$BENCH_RUN/$1.log" 2>&1 &
  echo $! >"$BENCH_RUN/pids/$1.pid"
  wait_port "$3" 10
}
start a "$old" 18460
start b "$new" 18461
"$bench/run.sh" nginx a=https://$BENCH_HOST:18460 b=https://$BENCH_HOST:18461
